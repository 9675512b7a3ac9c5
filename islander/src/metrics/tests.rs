//! Unit tests: a fake state root and a fake cgroup tree in a temporary
//! directory (mountinfo points the hierarchies there), read through the
//! real snapshot, collector, encoder and server.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, Registry, TextEncoder};

use super::collector::{self, family_names, IsleCollector};
use super::server::{parse_addr, MetricsServer};
use super::snapshot::{self, ScrapeFs};
use super::MetricsError;
use crate::ebpf::{self, BlockCounters, IsleCounters, NetCounters, ProgramStats};
use crate::isle::record::{ProcessId, Record, Status};
use crate::limits::{self, LimitArgs};
use crate::paths::StateRoot;
use crate::spec::{self, RunOptions};

const DISK: (u64, u64) = (254, 0);

/// A temporary directory with a state root and a cgroup tree, removed on drop.
struct Fake {
    dir: PathBuf,
    root: StateRoot,
    fs: Arc<ScrapeFs>,
}

impl Fake {
    fn new() -> Fake {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "islander-metrics-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let cg = dir.join("cgroup");
        let mut mountinfo = String::new();
        for (i, (mount, fstype, options)) in [
            ("memory", "cgroup", "rw,memory"),
            ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
            ("blkio", "cgroup", "rw,blkio"),
            ("pids", "cgroup", "rw,pids"),
            ("unified", "cgroup2", "rw"),
        ]
        .into_iter()
        .enumerate()
        {
            fs::create_dir_all(cg.join(mount).join("islander")).unwrap();
            mountinfo.push_str(&format!(
                "{} 25 0:{} / {} rw,nosuid,nodev,noexec - {fstype} {fstype} {options}\n",
                30 + i,
                40 + i,
                cg.join(mount).display()
            ));
        }
        let root = StateRoot::under(&dir.join("state"));
        fs::create_dir_all(root.isles_run_dir()).unwrap();
        Fake {
            fs: ScrapeFs::with_mountinfo(mountinfo),
            root,
            dir,
        }
    }

    fn cgroup(&self, mount: &str, id: &str) -> PathBuf {
        self.dir
            .join("cgroup")
            .join(mount)
            .join("islander")
            .join(id)
    }

    /// An isle with a record, a spec made from `limits` and cgroup files.
    fn isle(
        &self,
        id: &str,
        name: Option<&str>,
        status: Status,
        supervisor: ProcessId,
        limits: &LimitArgs,
    ) {
        let run = self.root.isle_run(id);
        fs::create_dir_all(&run).unwrap();
        // Written as JSON, not as a `Record` literal, so the fields records
        // gain over time (with serde defaults) need no change here.
        let record = serde_json::json!({
            "id": id,
            "status": status,
            "created_unix": 1_700_000_000u64,
            "supervisor": supervisor,
            "pid": ProcessId::current(),
            "image": name.map(|_| "busybox"),
            "name": name,
            "rootfs": "/r",
            "layers": "/l",
        });
        let record: Record =
            serde_json::from_value(record).expect("a record of the fields metrics read");
        record.save(&run).unwrap();
        let opts = RunOptions {
            args: vec!["/bin/true".into()],
            env: vec![],
            cwd: "/".into(),
            hostname: "h".into(),
            tty: false,
            userns: false,
            privileged: false,
            resources: limits::resources(limits, DISK).unwrap(),
        };
        let spec = spec::build(&opts, "/merged".into()).unwrap();
        fs::write(
            run.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();

        let write = |mount: &str, file: &str, text: &str| {
            let dir = self.cgroup(mount, id);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(file), text).unwrap();
        };
        write("cpu,cpuacct", "cpuacct.usage", "1500000000\n");
        write(
            "cpu,cpuacct",
            "cpu.stat",
            "nr_periods 40\nnr_throttled 3\nthrottled_time 250000000\nnr_bursts 0\nburst_time 0\n",
        );
        write("memory", "memory.usage_in_bytes", "8388608\n");
        write("memory", "memory.max_usage_in_bytes", "16777216\n");
        write(
            "memory",
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        fs::create_dir_all(self.cgroup("unified", id)).unwrap();
    }

    fn running(&self, id: &str, name: Option<&str>) {
        self.isle(
            id,
            name,
            Status::Running,
            ProcessId::current(),
            &LimitArgs::default(),
        );
    }

    fn registry(&self) -> Registry {
        let registry = Registry::new();
        let collector =
            IsleCollector::build(self.root.clone(), None, Some(self.fs.clone())).unwrap();
        registry.register(Box::new(collector)).unwrap();
        registry
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn id(c: char) -> String {
    c.to_string().repeat(64)
}

fn dead_supervisor() -> ProcessId {
    let mut me = ProcessId::current();
    me.start_time += 1;
    me
}

/// `promtool check metrics` on `text`, when promtool is installed (it is,
/// after `cargo xtask setup`); panics with its complaints.
fn promtool_check(text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("promtool is not installed; skipping its check (apt-get install prometheus)");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n---\n{text}"
    );
}

fn render(registry: &Registry) -> String {
    String::from_utf8(collector::render(registry).unwrap()).unwrap()
}

#[test]
fn only_running_isles_with_a_live_supervisor_and_cgroups_count() {
    let fake = Fake::new();
    fake.running(&id('a'), Some("web"));
    fake.running(&id('b'), None);
    fake.isle(
        &id('c'),
        None,
        Status::Creating,
        ProcessId::current(),
        &LimitArgs::default(),
    );
    fake.isle(
        &id('d'),
        None,
        Status::Running,
        dead_supervisor(),
        &LimitArgs::default(),
    );
    fake.running(&id('e'), None);
    fs::remove_dir_all(fake.cgroup("cpu,cpuacct", &id('e'))).unwrap();
    // Not an isle at all.
    fs::write(fake.root.isles_run_dir().join(".names.lock"), "").unwrap();

    let isles = snapshot::collect_with(&fake.root, None, fake.fs.clone(), None);
    let ids: Vec<&str> = isles.iter().map(|s| s.short_id.as_str()).collect();
    assert_eq!(ids, ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]);

    let web = &isles[0];
    assert_eq!(web.name.as_deref(), Some("web"));
    assert_eq!(web.image.as_deref(), Some("busybox"));
    assert_eq!(web.created_unix, 1_700_000_000);
    assert_eq!(web.cpu_usage_ns, 1_500_000_000);
    assert_eq!(
        (
            web.cfs_periods,
            web.cfs_throttled_periods,
            web.cfs_throttled_ns
        ),
        (40, 3, 250_000_000)
    );
    assert_eq!(
        (web.memory_usage_bytes, web.memory_max_usage_bytes),
        (8 << 20, 16 << 20)
    );
    assert_eq!(web.oom_kills, 2);
    assert!(web.ebpf.is_none());

    let disk = ebpf::device_name(DISK.0 as u32, DISK.1 as u32);
    let l = &web.limits;
    assert_eq!(l.memory_bytes, Some(500 << 20));
    assert_eq!(
        (l.cpu_shares, l.cpu_quota_us, l.cpu_period_us),
        (Some(100), 1_000_000, Some(100_000))
    );
    assert_eq!(l.read_bps, [(disk.clone(), 500 << 20)]);
    assert_eq!(l.write_bps, [(disk, 100 << 20)]);
}

#[test]
fn no_quota_reads_as_minus_one_and_a_missing_spec_as_no_limits() {
    let fake = Fake::new();
    let limits = LimitArgs {
        cpu_quota: Some("-1".into()),
        ..LimitArgs::default()
    };
    fake.isle(
        &id('a'),
        None,
        Status::Running,
        ProcessId::current(),
        &limits,
    );
    fake.running(&id('b'), None);
    fs::remove_file(fake.root.isle_run(&id('b')).join("config.json")).unwrap();
    let isles = snapshot::collect_with(&fake.root, None, fake.fs.clone(), None);
    assert_eq!(isles[0].limits.cpu_quota_us, -1);
    assert_eq!(isles[1].limits, snapshot::Limits::none());

    let text = render(&fake.registry());
    assert!(
        !text.contains("islander_isle_cpu_quota_seconds{"),
        "no quota, no series:\n{text}"
    );
    assert!(
        text.contains("islander_isle_cpu_period_seconds{isle=\"aaaaaaaaaaaa\",name=\"\"} 0.1"),
        "{text}"
    );
}

#[test]
fn a_cache_parses_each_spec_once_and_forgets_ended_isles() {
    let fake = Fake::new();
    fake.running(&id('a'), None);
    let cache = snapshot::LimitsCache::default();
    let first = snapshot::collect_with(&fake.root, None, fake.fs.clone(), Some(&cache));
    assert_eq!(first[0].limits.memory_bytes, Some(500 << 20));
    // Specs do not change while an isle runs; a cached reader does not look again.
    let config = fake.root.isle_run(&id('a')).join("config.json");
    fs::write(&config, "{}").unwrap();
    let again = snapshot::collect_with(&fake.root, None, fake.fs.clone(), Some(&cache));
    assert_eq!(again[0].limits, first[0].limits);
    let uncached = snapshot::collect_with(&fake.root, None, fake.fs.clone(), None);
    assert_eq!(uncached[0].limits, snapshot::Limits::none());
    // Once the isle is gone, so is its entry: a new spec under the id is read.
    fs::remove_dir_all(fake.cgroup("cpu,cpuacct", &id('a'))).unwrap();
    assert!(snapshot::collect_with(&fake.root, None, fake.fs.clone(), Some(&cache)).is_empty());
    fake.running(&id('a'), None);
    fs::write(&config, "{}").unwrap();
    let fresh = snapshot::collect_with(&fake.root, None, fake.fs.clone(), Some(&cache));
    assert_eq!(fresh[0].limits, snapshot::Limits::none());
}

#[test]
fn exposition_without_observer_has_the_cgroup_families_and_passes_promtool() {
    let fake = Fake::new();
    fake.running(&id('a'), Some("web"));
    fake.running(&id('b'), None);
    let text = render(&fake.registry());

    let disk = ebpf::device_name(DISK.0 as u32, DISK.1 as u32);
    for line in [
        "islander_isles 2".to_string(),
        format!("islander_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        "islander_isle_info{isle=\"aaaaaaaaaaaa\",name=\"web\",image=\"busybox\"} 1".into(),
        "islander_isle_info{isle=\"bbbbbbbbbbbb\",name=\"\",image=\"\"} 1".into(),
        "islander_isle_start_time_seconds{isle=\"aaaaaaaaaaaa\",name=\"web\"} 1700000000".into(),
        "islander_isle_cpu_usage_seconds_total{isle=\"aaaaaaaaaaaa\",name=\"web\"} 1.5".into(),
        "islander_isle_cpu_cfs_periods_total{isle=\"aaaaaaaaaaaa\",name=\"web\"} 40".into(),
        "islander_isle_cpu_cfs_throttled_periods_total{isle=\"aaaaaaaaaaaa\",name=\"web\"} 3".into(),
        "islander_isle_cpu_cfs_throttled_seconds_total{isle=\"aaaaaaaaaaaa\",name=\"web\"} 0.25".into(),
        "islander_isle_memory_usage_bytes{isle=\"aaaaaaaaaaaa\",name=\"web\"} 8388608".into(),
        "islander_isle_memory_max_usage_bytes{isle=\"aaaaaaaaaaaa\",name=\"web\"} 16777216".into(),
        "islander_isle_oom_kills_total{isle=\"aaaaaaaaaaaa\",name=\"web\"} 2".into(),
        "islander_isle_memory_limit_bytes{isle=\"aaaaaaaaaaaa\",name=\"web\"} 524288000".into(),
        "islander_isle_cpu_shares{isle=\"aaaaaaaaaaaa\",name=\"web\"} 100".into(),
        "islander_isle_cpu_quota_seconds{isle=\"aaaaaaaaaaaa\",name=\"web\"} 1".into(),
        "islander_isle_cpu_period_seconds{isle=\"aaaaaaaaaaaa\",name=\"web\"} 0.1".into(),
        format!("islander_isle_device_read_limit_bytes_per_second{{isle=\"aaaaaaaaaaaa\",name=\"web\",device=\"{disk}\"}} 524288000"),
        format!("islander_isle_device_write_limit_bytes_per_second{{isle=\"aaaaaaaaaaaa\",name=\"web\",device=\"{disk}\"}} 104857600"),
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    for family in [
        "islander_isle_syscalls_total",
        "islander_isle_network_",
        "islander_ebpf_",
        "islander_isle_block_",
    ] {
        assert!(
            !text.contains(family),
            "{family} without an observer:\n{text}"
        );
    }
    // HELP and TYPE once per family.
    for name in text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
    {
        assert_eq!(
            text.matches(&format!("# HELP {name} ")).count(),
            1,
            "{name}"
        );
    }
    promtool_check(&text);
}

#[test]
fn no_isles_still_reports_the_count_and_build() {
    let fake = Fake::new();
    let text = render(&fake.registry());
    assert!(text.lines().any(|l| l == "islander_isles 0"), "{text}");
    assert!(text.contains("islander_build_info{"), "{text}");
    promtool_check(&text);
}

#[test]
fn ebpf_families_carry_syscall_device_and_program_labels() {
    let fake = Fake::new();
    fake.running(&id('a'), Some("web"));
    fake.running(&id('b'), None);
    let mut isles = snapshot::collect_with(&fake.root, None, fake.fs.clone(), None);
    isles[0].ebpf = Some(IsleCounters {
        syscalls: vec![(39, 1000), (0, 7), (100_000, 1)],
        block: vec![BlockCounters {
            major: DISK.0 as u32,
            minor: DISK.1 as u32,
            read_bytes: 4096,
            write_bytes: 134_217_728,
            reads: 1,
            writes: 32,
        }],
        net: NetCounters {
            rx_bytes: 10,
            tx_bytes: 10_485_760,
            rx_packets: 1,
            tx_packets: 200,
        },
        oom_kills: 1,
        execs: 3,
    });
    // isles[1]: the observer does not know it, so it has no eBPF series.
    let programs = [
        ProgramStats {
            name: "sys_enter".into(),
            run_count: 5000,
            run_time_ns: 250_000,
        },
        ProgramStats {
            name: "skb_egress".into(),
            run_count: 200,
            run_time_ns: 10_000,
        },
    ];
    let families = collector::families(&isles, Some(&programs));
    let mut buf = Vec::new();
    TextEncoder::new().encode(&families, &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();

    let disk = ebpf::device_name(DISK.0 as u32, DISK.1 as u32);
    let a = "isle=\"aaaaaaaaaaaa\",name=\"web\"";
    for line in [
        format!("islander_isle_syscalls_total{{{a},syscall=\"getpid\"}} 1000"),
        format!("islander_isle_syscalls_total{{{a},syscall=\"read\"}} 7"),
        format!("islander_isle_syscalls_total{{{a},syscall=\"unknown_100000\"}} 1"),
        format!("islander_isle_block_read_bytes_total{{{a},device=\"{disk}\"}} 4096"),
        format!("islander_isle_block_write_bytes_total{{{a},device=\"{disk}\"}} 134217728"),
        format!("islander_isle_block_reads_total{{{a},device=\"{disk}\"}} 1"),
        format!("islander_isle_block_writes_total{{{a},device=\"{disk}\"}} 32"),
        format!("islander_isle_network_receive_bytes_total{{{a}}} 10"),
        format!("islander_isle_network_transmit_bytes_total{{{a}}} 10485760"),
        format!("islander_isle_network_receive_packets_total{{{a}}} 1"),
        format!("islander_isle_network_transmit_packets_total{{{a}}} 200"),
        format!("islander_isle_execs_total{{{a}}} 3"),
        "islander_ebpf_program_runs_total{program=\"sys_enter\"} 5000".into(),
        "islander_ebpf_program_run_seconds_total{program=\"sys_enter\"} 0.00025".into(),
        "islander_ebpf_program_runs_total{program=\"skb_egress\"} 200".into(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    assert!(
        !text.contains("islander_isle_network_transmit_bytes_total{isle=\"bbbbbbbbbbbb\""),
        "{text}"
    );
    assert!(
        text.contains("islander_isle_cpu_usage_seconds_total{isle=\"bbbbbbbbbbbb\""),
        "{text}"
    );
    // With every counter in place, every family islander knows is present.
    for name in family_names() {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "family {name} missing:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "HELP of {name} missing"
        );
    }
    promtool_check(&text);
}

#[test]
fn address_forms() {
    let one = |s: &str| parse_addr(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(
        one(":9100"),
        [
            "[::]:9100".parse().unwrap(),
            "0.0.0.0:9100".parse().unwrap()
        ]
    );
    assert_eq!(one("127.0.0.1:9100"), ["127.0.0.1:9100".parse().unwrap()]);
    assert_eq!(one("[::1]:9100"), ["[::1]:9100".parse().unwrap()]);
    assert_eq!(one("localhost:0"), ["127.0.0.1:0".parse().unwrap()]);
    for bad in [
        "9100",
        "",
        ":",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "127.0.0.1:-1",
        "::1:9100",
        "example.com:9100",
        "[::1:9100",
        "1.2.3:80",
    ] {
        let err = parse_addr(bad).expect_err(bad).to_string();
        assert!(err.contains(&format!("'{bad}'")), "{err}");
        assert!(err.contains("accepted: ':PORT'"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn a_busy_or_foreign_address_is_refused_clearly() {
    let first = MetricsServer::bind("127.0.0.1:0").unwrap();
    let taken = first.local_addr().to_string();
    match MetricsServer::bind(&taken) {
        Err(e @ MetricsError::InUse { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&taken) && msg.contains("already in use"),
                "{msg}"
            );
        }
        other => panic!("binding {taken} twice: {other:?}"),
    }
    // TEST-NET-1 (RFC 5737) is never an address of this host.
    match MetricsServer::bind("192.0.2.1:9100") {
        Err(e @ MetricsError::NotLocal { .. }) => {
            assert!(e.to_string().contains("192.0.2.1:9100"), "{e}")
        }
        other => panic!("binding a foreign address: {other:?}"),
    }
}

#[test]
fn all_interfaces_means_ipv4_too() {
    let fake = Fake::new();
    let server = MetricsServer::bind(":0").unwrap();
    let port = server.local_addr().port();
    assert!(
        server.local_addr().ip().is_unspecified(),
        "{}",
        server.local_addr()
    );
    let _thread = server.serve(fake.root.clone(), None);
    let (head, _) = http(([127, 0, 0, 1], port).into(), "GET", "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// One HTTP/1.1 request; returns the status line, headers and body.
fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[test]
fn the_server_answers_get_metrics_only() {
    let fake = Fake::new();
    let server = MetricsServer::bind("localhost:0").unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let _thread = server.serve(fake.root.clone(), None);

    let (head, body) = http(addr, "GET", "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.lines().any(|l| l == "islander_isles 0"), "{body}");
    promtool_check(&body);

    let (head, _) = http(addr, "GET", "/metrics?x=1");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (head, body) = http(addr, "HEAD", "/metrics");
    assert!(
        head.starts_with("HTTP/1.1 200") && body.is_empty(),
        "{head}"
    );
    let (head, _) = http(addr, "GET", "/");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = http(addr, "POST", "/metrics");
    assert!(
        head.starts_with("HTTP/1.1 405") && head.contains("GET, HEAD"),
        "{head}"
    );

    // The serving thread never takes a signal meant for islander's signalfd.
    let sigblk: Vec<u64> = fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "islander-metric")
        })
        .filter_map(|t| {
            let status = fs::read_to_string(t.path().join("status")).ok()?;
            let mask = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .collect();
    assert!(!sigblk.is_empty(), "no islander-metrics thread found");
    let term = 1u64 << (libc::SIGTERM - 1);
    assert!(
        sigblk.iter().all(|m| m & term != 0),
        "SIGTERM not blocked: {sigblk:x?}"
    );
}

#[test]
fn fifty_isles_collect_quickly() {
    let fake = Fake::new();
    for i in 0..50 {
        fake.running(&format!("{i:064x}"), Some(&format!("isle-{i}")));
    }
    let registry = fake.registry();
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let begin = std::time::Instant::now();
            let text = render(&registry);
            assert!(text.lines().any(|l| l == "islander_isles 50"));
            begin.elapsed()
        })
        .collect();
    times.sort();
    // A loose bound for debug builds on a loaded machine; the release
    // figure against real isles is `cargo xtask bench scrape`.
    assert!(
        times[10] < Duration::from_millis(250),
        "median {:?}",
        times[10]
    );
}
