//! Shared by the `lifecycle_*` tests: a rootfs with the `lc` helper in it,
//! detached isles that are removed (`rm -f`) when the test lets go of them,
//! and bounded waits on `islander ps`.

#![allow(dead_code)] // each test file uses its own part of this

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use islander_tests::{busybox_rootfs, cache_dir, Islander, OutputExt, RUN_TIMEOUT};
use serde_json::Value;

/// Between two looks at `islander ps` while waiting.
const POLL: Duration = Duration::from_millis(50);

/// The `lc` helper (tests/helpers/lifecycle/lc.c), compiled statically and
/// cached by the hash of its source. Built to a unique name and renamed into
/// place, so test processes building it at once never run half a binary.
pub fn helper() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("helpers/lifecycle/lc.c");
        let text = fs::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        let dir = cache_dir().join("lifecycle-helper");
        let bin = dir.join(format!("lc-{:016x}", h.finish()));
        if bin.is_file() {
            return bin;
        }
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let tmp = dir.join(format!(".lc-{}.building", std::process::id()));
        let status = Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run gcc (apt-get install gcc libc6-dev): {e}"));
        assert!(
            status.success(),
            "gcc -static {} failed ({status})",
            src.display()
        );
        fs::rename(&tmp, &bin)
            .unwrap_or_else(|e| panic!("cannot rename {} into place: {e}", tmp.display()));
        bin
    })
    .clone()
}

/// A private copy of the busybox rootfs with `/bin/lc`, under the test's
/// root (removed with it).
pub fn rootfs(isl: &Islander) -> PathBuf {
    let dir = isl.root().join("rootfs");
    if !dir.join("bin/lc").exists() {
        let status = Command::new("cp")
            .arg("-a")
            .arg(busybox_rootfs())
            .arg(&dir)
            .status()
            .expect("run cp");
        assert!(status.success(), "cp -a of the busybox rootfs failed");
        let lc = dir.join("bin/lc");
        fs::copy(helper(), &lc).expect("copy lc into the rootfs");
        fs::set_permissions(&lc, fs::Permissions::from_mode(0o755)).expect("chmod lc");
    }
    dir
}

/// A detached isle; dropping it runs `islander rm -f` on it.
pub struct Isle<'a> {
    pub isl: &'a Islander,
    pub id: String,
}

impl Isle<'_> {
    pub fn short(&self) -> &str {
        &self.id[..12]
    }
}

impl Drop for Isle<'_> {
    fn drop(&mut self) {
        let out = self.isl.run(&["rm", "-f", &self.id]);
        let gone = !self.isl.isles_run_dir().join(&self.id).exists();
        if !out.status.success() && !gone && !thread::panicking() {
            panic!("cleaning up isle {}: {}", self.id, out.describe());
        }
    }
}

/// `islander run -d --rootfs <rootfs with lc> OPTS CMD...`; the id it printed.
pub fn start<'a>(isl: &'a Islander, opts: &[&str], cmd: &[&str]) -> Isle<'a> {
    let rootfs = rootfs(isl);
    let mut args = vec![
        "run",
        "-d",
        "--rootfs",
        rootfs.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(opts);
    args.extend_from_slice(cmd);
    let out = isl.run(&args);
    out.assert_success(&format!("islander {}", args.join(" ")));
    let id = out.stdout_str().trim().to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "run -d printed '{id}', not a 64-hex id: {}",
        out.describe()
    );
    Isle { isl, id }
}

/// The pid of isle `id`'s supervisor (its logger, once the isle runs), from
/// its record.
pub fn supervisor_pid(isl: &Islander, id: &str) -> i32 {
    let record: Value = serde_json::from_slice(
        &fs::read(isl.isles_run_dir().join(id).join("state.json")).expect("the isle's record"),
    )
    .expect("a JSON record");
    record["supervisor"]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no supervisor pid: {record:#}")) as i32
}

/// `islander ps -a --format json`, parsed.
pub fn ps_all(isl: &Islander) -> Vec<Value> {
    let out = isl.run(&["ps", "-a", "--format", "json"]);
    out.assert_success("islander ps -a --format json");
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(rows)) => rows,
        _ => panic!(
            "ps --format json did not print a JSON array: {}",
            out.describe()
        ),
    }
}

/// The `ps -a` row of isle `id`.
pub fn row(isl: &Islander, id: &str) -> Value {
    ps_all(isl)
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("isle {id} is not in ps -a"))
}

/// Waits until every isle of `ids` has left `running`; their rows.
pub fn wait_exited(isl: &Islander, ids: &[&str], timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = ps_all(isl);
        let mine: Vec<Value> = ids
            .iter()
            .map(|id| {
                rows.iter()
                    .find(|r| r["id"] == *id)
                    .cloned()
                    .unwrap_or_else(|| panic!("isle {id} vanished from ps -a"))
            })
            .collect();
        if mine.iter().all(|r| r["state"] == "exited") {
            return mine;
        }
        if Instant::now() >= deadline {
            let running: Vec<&Value> = mine.iter().filter(|r| r["state"] != "exited").collect();
            panic!("isles still not exited after {timeout:?}: {running:#?}");
        }
        thread::sleep(POLL);
    }
}

pub fn wait_one(isl: &Islander, id: &str) -> Value {
    wait_exited(isl, &[id], RUN_TIMEOUT).remove(0)
}

/// Waits until isle `id` is running (its PID 1 started) in `ps`.
pub fn wait_running(isl: &Islander, id: &str) -> Value {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let r = row(isl, id);
        if r["state"] == "running" && r["pid"].is_i64() {
            return r;
        }
        assert!(Instant::now() < deadline, "isle {id} is not running: {r:#}");
        thread::sleep(POLL);
    }
}

/// The isle's record and its supervisor's own log, for failure messages.
pub fn describe(isl: &Islander, id: &str) -> String {
    let read =
        |p: PathBuf| fs::read_to_string(&p).unwrap_or_else(|e| format!("({}: {e})", p.display()));
    format!(
        "record: {}\nsupervisor log: {}",
        read(isl.isles_run_dir().join(id).join("state.json")),
        read(isl.isles_lib_dir().join(id).join("supervisor.log"))
    )
}

/// Waits until `islander logs ID` shows `line` on stdout: the isle got
/// that far (a script that sets traps says so before it is signalled, as
/// PID 1 ignores signals it has no handler for).
pub fn wait_for_line(isl: &Islander, id: &str, line: &str) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let out = isl.run(&["logs", id]);
        if out.status.success() && out.stdout_str().lines().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "isle {id} never printed {line:?}: {}",
            out.describe()
        );
        thread::sleep(POLL);
    }
}

/// `out 0\nout 1\n...` (or `err ...`): what `lc seq N` writes to one stream.
pub fn seq_text(stream: &str, n: usize) -> String {
    let mut s = String::with_capacity(n * 12);
    for i in 0..n {
        s.push_str(stream);
        s.push(' ');
        s.push_str(&i.to_string());
        s.push('\n');
    }
    s
}

/// An error as islander reports bad input: status 125 and exactly one
/// `islander: ...` line containing `want`.
pub fn assert_one_line_error(out: &Output, want: &str, what: &str) {
    out.assert_code(125, what);
    let err = out.stderr_str();
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("islander: ") && lines[0].contains(want),
        "{what}: expected one 'islander: ...{want}...' line, got {}",
        out.describe()
    );
    assert!(
        out.stdout.is_empty(),
        "{what}: printed something on stdout: {}",
        out.describe()
    );
}

/// Everything under the root's `run/isles` and `lib/isles`, with the
/// content of each record and spec: equal before and after a command that
/// must change nothing. The layers' `merged` dirs are mount points inside
/// the isles, empty on the host; log files are listed with their sizes.
pub fn state_snapshot(isl: &Islander) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for top in [isl.isles_run_dir(), isl.isles_lib_dir()] {
        walk(&top, 3, &mut out);
    }
    out.sort();
    out
}

fn walk(dir: &Path, depth: u32, out: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let meta = match path.symlink_metadata() {
            Ok(m) => m,
            Err(_) => continue,
        };
        let name = e.file_name().to_string_lossy().into_owned();
        if meta.is_dir() {
            out.push((path.clone(), "dir".into()));
            if depth > 0 && name != "upper" && name != "work" && name != "merged" {
                walk(&path, depth - 1, out);
            }
        } else if name.ends_with(".json") {
            out.push((path.clone(), fs::read_to_string(&path).unwrap_or_default()));
        } else {
            out.push((path.clone(), format!("{} bytes", meta.len())));
        }
    }
}
