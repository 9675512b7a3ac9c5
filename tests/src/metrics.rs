//! Support for the metrics and stats tests: the helper programs of
//! `tests/helpers` in a rootfs, `/metrics` scraping and parsing, a real
//! Prometheus started for a test, and the Grafana dashboards' queries.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{random_hex, RunningIsle};
use crate::lock::FileLock;
use crate::rootfs::{busybox_rootfs, cache_dir};

pub const MIB: u64 = 1024 * 1024;

/// The helper programs, compiled into `/helpers` of the rootfs.
const HELPERS: [&str; 4] = ["getpid_n", "writer", "netsend", "alloc"];

/// Every metric family issue 2 names; the dashboards may use only these.
pub const FAMILIES: &[&str] = &[
    "islander_isle_syscalls_total",
    "islander_isle_block_read_bytes_total",
    "islander_isle_block_write_bytes_total",
    "islander_isle_block_reads_total",
    "islander_isle_block_writes_total",
    "islander_isle_network_receive_bytes_total",
    "islander_isle_network_transmit_bytes_total",
    "islander_isle_network_receive_packets_total",
    "islander_isle_network_transmit_packets_total",
    "islander_isle_cpu_usage_seconds_total",
    "islander_isle_cpu_cfs_periods_total",
    "islander_isle_cpu_cfs_throttled_periods_total",
    "islander_isle_cpu_cfs_throttled_seconds_total",
    "islander_isle_memory_usage_bytes",
    "islander_isle_memory_max_usage_bytes",
    "islander_isle_oom_kills_total",
    "islander_isle_memory_limit_bytes",
    "islander_isle_cpu_shares",
    "islander_isle_cpu_quota_seconds",
    "islander_isle_cpu_period_seconds",
    "islander_isle_device_read_limit_bytes_per_second",
    "islander_isle_device_write_limit_bytes_per_second",
    "islander_isles",
    "islander_ebpf_program_runs_total",
    "islander_ebpf_program_run_seconds_total",
    "islander_build_info",
];

fn helpers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helpers")
}

/// FNV-1a: enough to tell one set of helper sources from another.
fn fnv(data: &[u8], mut hash: u64) -> u64 {
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

/// The busybox rootfs plus `/helpers/<name>` for each helper program,
/// compiled with `gcc -static`. Built once per machine and source version
/// (the name carries a hash of the sources and of the busybox rootfs
/// stamp), under a lock; read-only for the tests, like the busybox one.
pub fn helpers_rootfs() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(build_helpers_rootfs).clone()
}

fn build_helpers_rootfs() -> PathBuf {
    let busybox = busybox_rootfs();
    let base = cache_dir();
    let mut hash = fnv(
        &fs::read(base.join("busybox.stamp")).unwrap_or_default(),
        0xcbf2_9ce4_8422_2325,
    );
    let mut sources: Vec<PathBuf> = fs::read_dir(helpers_dir())
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", helpers_dir().display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c" || x == "h"))
        .collect();
    sources.sort();
    for src in &sources {
        hash = fnv(src.file_name().unwrap().as_encoded_bytes(), hash);
        hash = fnv(&fs::read(src).expect("read helper source"), hash);
    }
    let name = format!("helpers-rootfs-{hash:016x}");
    let dir = base.join(&name);
    let _lock = FileLock::exclusive(&base.join("helpers-rootfs.lock"));
    if dir.join("helpers/.complete").is_file() {
        return dir;
    }
    // Older versions and half-built ones go: the lock is held, so no build
    // is running, and a test of another checkout using an old one is
    // unlikely enough on a test machine.
    for entry in fs::read_dir(&base).expect("list cache dir").flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with("helpers-rootfs-") && n != name {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let tmp = base.join(format!("{name}.building-{}", random_hex(4)));
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&busybox)
        .arg(&tmp)
        .output()
        .expect("run cp");
    assert!(
        cp.status.success(),
        "cp -a {} {}: {cp:?}",
        busybox.display(),
        tmp.display()
    );
    let out = tmp.join("helpers");
    fs::create_dir(&out).expect("mkdir helpers");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o755)).expect("chmod helpers");
    for helper in HELPERS {
        let src = helpers_dir().join(format!("{helper}.c"));
        let cc = Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(out.join(helper))
            .arg(&src)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run gcc ({e}); the metrics tests need gcc and libc6-dev")
            });
        assert!(
            cc.status.success(),
            "gcc -static {}: {}",
            src.display(),
            String::from_utf8_lossy(&cc.stderr)
        );
    }
    fs::write(out.join(".complete"), "").expect("mark helpers complete");
    fs::rename(&tmp, &dir).unwrap_or_else(|e| panic!("rename to {}: {e}", dir.display()));
    dir
}

/// `127.0.0.1:PORT` with a port nobody listens on right now. The kernel
/// picks it; the small window until islander binds it is acceptable for
/// tests (ports are handed out at random, so a clash is unlikely).
pub fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").to_string()
}

/// A bounded HTTP/1.1 GET; returns the status and body.
pub fn http_get(addr: &str, target: &str) -> Result<(u16, String), String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
    stream.set_write_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{addr}{target}: no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{addr}{target}: bad status line in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| format!("{addr}{target}: bad chunked body"))?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// One sample of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// GET `http://ADDR/metrics`, which must answer 200.
    pub fn fetch(addr: &str) -> Result<Scrape, String> {
        let (status, body) = http_get(addr, "/metrics")?;
        if status != 200 {
            return Err(format!(
                "GET http://{addr}/metrics: status {status}: {body}"
            ));
        }
        Scrape::parse(&body).map(|samples| Scrape {
            text: body,
            samples,
        })
    }

    pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).ok_or_else(|| format!("cannot parse sample line {l:?}")))
            .collect()
    }

    /// Samples of family `name` whose labels include all of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The sum over `find`, or `None` when no sample matched.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        (!found.is_empty()).then(|| found.iter().map(|s| s.value).sum())
    }

    /// Every line of family `name` (for assertion messages).
    pub fn lines_of(&self, name: &str) -> String {
        self.text
            .lines()
            .filter(|l| l.starts_with(name))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut it = body.chars();
        loop {
            let first = loop {
                match it.next()? {
                    ',' | ' ' => continue,
                    c => break c,
                }
            };
            if first == '}' {
                break;
            }
            let mut key = first.to_string();
            loop {
                match it.next()? {
                    '=' => break,
                    c => key.push(c),
                }
            }
            if it.next()? != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match it.next()? {
                    '"' => break,
                    '\\' => match it.next()? {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.insert(key.trim().to_string(), value);
        }
        rest = it.as_str();
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Calls `f` every 100 ms until it returns `Ok`, or panics after `timeout`
/// with `what` and the last error.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("{what}: not within {timeout:?}; last: {e}")
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Reads the isle's output until a line starting with `prefix`, which it
/// returns; other lines are kept for the message if it never comes.
pub fn expect_line(isle: &mut RunningIsle, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no line starting with {prefix:?} from isle {} within {timeout:?}; saw {seen:?}; stderr: {}",
            isle.short_id(),
            isle.stderr_so_far()
        );
        let (_, line) = isle.next_line(left);
        if line.starts_with(prefix) {
            return line;
        }
        seen.push(line);
    }
}

/// A Prometheus server scraping given targets every second, for one test:
/// its own config, data directory and port, all removed (and the process
/// killed) on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub addr: String,
}

impl Prometheus {
    pub fn start(targets: &[&str]) -> Prometheus {
        let bin = which("prometheus").unwrap_or_else(|| {
            panic!("no prometheus on PATH; the metrics tests need Debian's prometheus package")
        });
        let dir = cache_dir().join(format!("prometheus-{}", random_hex(6)));
        fs::create_dir_all(dir.join("data")).expect("create prometheus dir");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: islander\n    static_configs:\n      - targets: [{list}]\n"
        );
        fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let addr = free_addr();
        let log = fs::File::create(dir.join("prometheus.log")).expect("create log");
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prom = Prometheus { child, dir, addr };
        poll(
            Duration::from_secs(60),
            "prometheus to become ready",
            || {
                let (status, body) = http_get(&prom.addr, "/-/ready")?;
                (status == 200)
                    .then_some(())
                    .ok_or(format!("status {status}: {body}; log:\n{}", prom.log()))
            },
        );
        prom
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The result list of an instant query (one entry per series), or the
    /// error Prometheus gave.
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let target = format!("/api/v1/query?query={}", url_encode(expr));
        let (status, body) = http_get(&self.addr, &target)?;
        let json: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("status {status}, not JSON ({e}): {body}"))?;
        if json["status"] != "success" {
            return Err(format!("status {status}: {}", json));
        }
        match &json["data"]["result"] {
            serde_json::Value::Array(list) if json["data"]["resultType"] != "scalar" => {
                Ok(list.clone())
            }
            // A scalar or string result is one value, not a list of series.
            other => Ok(vec![other.clone()]),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool check metrics` on `text` (its stdin).
pub fn promtool_check_metrics(text: &str) -> Output {
    let bin = which("promtool").unwrap_or_else(|| {
        panic!("no promtool on PATH; it comes with Debian's prometheus package")
    });
    let mut child = Command::new(bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_string();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for promtool");
    let _ = writer.join();
    out
}

/// `grafana/dashboards/*.json`, sorted.
pub fn dashboard_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana/dashboards");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

pub fn load_dashboard(path: &Path) -> serde_json::Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// One PromQL expression of a dashboard and where it is.
#[derive(Debug, Clone)]
pub struct DashboardQuery {
    /// `panel title` or `variable NAME`.
    pub origin: String,
    pub expr: String,
}

/// Every panel target's `expr` (panels nested in rows included) and every
/// query variable's query, `label_values(EXPR, LABEL)` reduced to `EXPR`:
/// that is the part Prometheus evaluates for it.
pub fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<DashboardQuery> {
    let mut out = Vec::new();
    collect_panels(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let query = match &var["query"] {
            serde_json::Value::String(s) => s.clone(),
            other => other["query"].as_str().unwrap_or_default().to_string(),
        };
        let expr = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .map(|(expr, _label)| expr.trim().to_string())
            .unwrap_or(query);
        out.push(DashboardQuery {
            origin: format!("variable {}", var["name"].as_str().unwrap_or("?")),
            expr,
        });
    }
    out
}

fn collect_panels(panels: &serde_json::Value, out: &mut Vec<DashboardQuery>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(DashboardQuery {
                    origin: format!("panel '{title}'"),
                    expr: expr.to_string(),
                });
            }
        }
        collect_panels(&panel["panels"], out);
    }
}

/// `expr` with Grafana's variables replaced: `$isle`/`${isle}` by `isle`,
/// the interval variables by fixed windows that hold several 1 s scrapes.
pub fn substitute(expr: &str, isle: &str) -> String {
    let mut out = expr.to_string();
    for (var, value) in [
        ("${isle}", isle),
        ("$isle", isle),
        ("$__rate_interval", "10s"),
        ("${__rate_interval}", "10s"),
        ("$__interval", "2s"),
        ("${__interval}", "2s"),
        ("$__range", "1m"),
        ("${__range}", "1m"),
    ] {
        out = out.replace(var, value);
    }
    out
}

/// The `islander_*` metric names an expression refers to.
pub fn families_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("islander_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.push(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposition_lines() {
        let text = "# HELP x y\n# TYPE a counter\n\
                    islander_isle_syscalls_total{isle=\"abc\",name=\"\",syscall=\"getpid\"} 1000\n\
                    islander_isles 2\n\
                    weird{a=\"q\\\"x\", b=\"2\"} 1.5e3 1700000000\n";
        let samples = Scrape::parse(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].labels["syscall"], "getpid");
        assert_eq!(samples[0].labels["name"], "");
        assert_eq!(samples[0].value, 1000.0);
        assert_eq!(samples[1].name, "islander_isles");
        assert!(samples[1].labels.is_empty());
        assert_eq!(samples[2].labels["a"], "q\"x");
        assert_eq!(samples[2].value, 1500.0);
    }

    #[test]
    fn decodes_chunked_bodies() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert_eq!(dechunk(b"5\r\nab"), None);
    }

    #[test]
    fn finds_families_and_substitutes_variables() {
        let expr = "sum(rate(islander_isle_cpu_usage_seconds_total{isle=\"$isle\"}[$__rate_interval])) / islander_isle_cpu_quota_seconds";
        assert_eq!(
            families_in(expr),
            vec![
                "islander_isle_cpu_usage_seconds_total",
                "islander_isle_cpu_quota_seconds"
            ]
        );
        assert_eq!(
            substitute(expr, "abc"),
            "sum(rate(islander_isle_cpu_usage_seconds_total{isle=\"abc\"}[10s])) / islander_isle_cpu_quota_seconds"
        );
        assert_eq!(url_encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
    }

    #[test]
    fn reads_queries_from_panels_rows_and_variables() {
        let dash = serde_json::json!({
            "panels": [
                {"title": "A", "targets": [{"expr": "x"}, {"expr": "y"}]},
                {"title": "row", "type": "row", "panels": [{"title": "B", "targets": [{"expr": "z"}]}]}
            ],
            "templating": {"list": [
                {"type": "query", "name": "isle", "query": {"query": "label_values(islander_isles, isle)"}},
                {"type": "custom", "name": "other", "query": "a,b"}
            ]}
        });
        let exprs: Vec<String> = dashboard_queries(&dash)
            .into_iter()
            .map(|q| q.expr)
            .collect();
        assert_eq!(exprs, ["x", "y", "z", "islander_isles"]);
    }
}
