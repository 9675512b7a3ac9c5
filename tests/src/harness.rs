//! Running islander: a private state root per test, bounded waits, and a
//! handle on a running isle that the host can inspect before letting it go.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::host::{
    cgroup_mounts, cgroup_procs, host_mounts, innermost_pid, islander_cgroup_entries, isle_cgroup,
};
use crate::lock::FileLock;
use crate::rootfs::{busybox_rootfs, busybox_tar, cache_dir};

/// Upper bound for one islander command; far above what any should take, so
/// only a hang trips it, even on two busy cores.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound for an isle to come up and report its cgroups.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a pipe may stay open after islander exited. Longer means some
/// process of the isle outlived islander while holding its stdout.
const PIPE_GRACE: Duration = Duration::from_secs(10);

const MARK_CGROUP: &str = "@@islander-tests: cgroup@@";
const MARK_READY: &str = "@@islander-tests: ready@@";

/// The binary under test: `$ISLANDER_BIN`, else `<workspace>/target/debug/islander`.
pub fn islander_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let path = match std::env::var_os("ISLANDER_BIN") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("tests/ has a parent")
                .join("target/debug/islander"),
        };
        assert!(
            path.is_file(),
            "islander binary not found at {}: build it first (cargo build -p islander) \
             or point ISLANDER_BIN at one",
            path.display()
        );
        path
    })
    .clone()
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "the end-to-end tests run islander for real and must run as root (euid is {euid})"
    );
}

/// `bytes` random bytes as hex, from the kernel's generator.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The isle id found in `/proc/self/cgroup` text printed inside an isle:
/// the path of the memory line, `N:memory:/islander/<id>`.
pub fn parse_isle_id(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.trim().splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if !controllers.split(',').any(|c| c == "memory") {
            return None;
        }
        Some(path.strip_prefix("/islander/")?.to_string())
    })
}

fn check_isle_id(id: &str, context: &str) {
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "isle id '{id}' (from /proc/self/cgroup) is not 64 hex chars; {context}"
    );
}

/// Readable views of a finished command.
pub trait OutputExt {
    fn code(&self) -> Option<i32>;
    fn stdout_str(&self) -> String;
    fn stderr_str(&self) -> String;
    /// Status, stdout and stderr, for assertion messages.
    fn describe(&self) -> String;
    fn assert_success(&self, what: &str) -> &Self;
    fn assert_code(&self, code: i32, what: &str) -> &Self;
    /// The isle id the isle printed with `cat /proc/self/cgroup`.
    fn isle_id(&self) -> String;
}

impl OutputExt for Output {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}--------------",
            describe_status(self.status),
            self.stdout_str(),
            self.stderr_str()
        )
    }

    fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what}: expected success, got {}",
            self.describe()
        );
        self
    }

    fn assert_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "{what}: expected exit status {code}, got {}",
            self.describe()
        );
        self
    }

    fn isle_id(&self) -> String {
        let id = parse_isle_id(&self.stdout_str()).unwrap_or_else(|| {
            panic!(
                "no ':memory:/islander/<id>' line in the isle's output: {}",
                self.describe()
            )
        });
        check_isle_id(&id, "from a finished isle");
        id
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("islander exited with status {code}"),
        (None, Some(sig)) => format!("islander was killed by signal {sig}"),
        _ => format!("islander ended with {status:?}"),
    }
}

/// Collects a pipe on a thread; `finish` bounds how long it may stay open.
struct PipeReader {
    data: Arc<Mutex<Vec<u8>>>,
    done: Receiver<()>,
}

impl PipeReader {
    fn start(mut pipe: impl Read + Send + 'static) -> Self {
        let data = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = Arc::clone(&data);
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(());
        });
        PipeReader { data, done }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    /// Everything the pipe carried, once its writers closed it. Returns what
    /// was read so far and `false` if it is still open after the grace time.
    fn finish(&self, grace: Duration) -> (Vec<u8>, bool) {
        let closed = !matches!(
            self.done.recv_timeout(grace),
            Err(RecvTimeoutError::Timeout)
        );
        (self.snapshot(), closed)
    }
}

/// Polls `child` until it exits or `timeout` passes.
fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait on islander") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn kill_hard(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for a spawned islander with piped stdout/stderr and collects both.
fn collect(mut child: Child, timeout: Duration, what: &str) -> Output {
    let out = PipeReader::start(child.stdout.take().expect("stdout is piped"));
    let err = PipeReader::start(child.stderr.take().expect("stderr is piped"));
    let status = match wait_deadline(&mut child, timeout) {
        Some(status) => status,
        None => {
            kill_hard(&mut child);
            panic!(
                "{what}: still running after {timeout:?}, killed it\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&out.snapshot()),
                String::from_utf8_lossy(&err.snapshot())
            );
        }
    };
    let (stdout, out_closed) = out.finish(PIPE_GRACE);
    let (stderr, err_closed) = err.finish(PIPE_GRACE);
    let output = Output {
        status,
        stdout,
        stderr,
    };
    assert!(
        out_closed && err_closed,
        "{what}: islander exited but its stdout/stderr stayed open for {PIPE_GRACE:?}: \
         a process of the isle outlived it. {}",
        output.describe()
    );
    output
}

/// One test's islander: a fresh `--root` (removed on drop) and helpers to
/// run it. Holds the machine-wide isle lock shared, so that a test taking it
/// exclusively (`Islander::exclusive`) sees no other test's isles.
pub struct Islander {
    root: PathBuf,
    _lock: FileLock,
}

impl Islander {
    /// A harness for the test `test` (used in the root's name).
    pub fn new(test: &str) -> Self {
        Self::with_lock(test, FileLock::shared(&cache_dir().join("isles.lock")))
    }

    /// Like `new`, but no other test runs isles meanwhile, so every new
    /// `islander/*` cgroup on the machine belongs to this test.
    pub fn exclusive(test: &str) -> Self {
        Self::with_lock(test, FileLock::exclusive(&cache_dir().join("isles.lock")))
    }

    fn with_lock(test: &str, lock: FileLock) -> Self {
        require_root();
        islander_bin();
        let roots = cache_dir().join("roots");
        fs::create_dir_all(&roots)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", roots.display()));
        let root = roots.join(format!("{test}-{}", random_hex(6)));
        fs::create_dir(&root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
        Islander { root, _lock: lock }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/lib`: images and per-isle layers.
    pub fn lib_dir(&self) -> PathBuf {
        self.root.join("lib")
    }

    /// `<root>/lib/isles`: one directory per live isle's layers.
    pub fn isles_lib_dir(&self) -> PathBuf {
        self.lib_dir().join("isles")
    }

    /// `<root>/run/isles`: one directory per live isle's runtime state.
    pub fn isles_run_dir(&self) -> PathBuf {
        self.root.join("run").join("isles")
    }

    /// `<root>/lib/images/<name>`.
    pub fn image_dir(&self, name: &str) -> PathBuf {
        self.lib_dir().join("images").join(name)
    }

    /// `islander --root <root>`, ready for more arguments.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(islander_bin());
        cmd.env_remove("ISLANDER_ROOT")
            .arg("--root")
            .arg(&self.root);
        cmd
    }

    /// Runs `islander --root <root> ARGS` with stdin from /dev/null.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_timeout(args, RUN_TIMEOUT)
    }

    pub fn run_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        let child = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", islander_bin().display()));
        collect(child, timeout, &format!("islander {}", args.join(" ")))
    }

    /// Runs `islander --root <root> ARGS` with `input` on its stdin (then EOF).
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", islander_bin().display()));
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = input.to_vec();
        // A writer thread, so an islander that never reads cannot block us;
        // a closed pipe (EPIPE) just means it did not want the input.
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        collect(child, RUN_TIMEOUT, &format!("islander {}", args.join(" ")))
    }

    /// `islander run [--rootfs <busybox>] OPTS CMD...`; the busybox rootfs is
    /// added unless OPTS already names `--image` or `--rootfs`.
    pub fn run_isle(&self, opts: &[&str], cmd: &[&str]) -> Output {
        let args = isle_args(opts, cmd);
        self.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The arguments `run_isle` passes, for callers that need another way
    /// to run them (`run_with_stdin`).
    pub fn isle_args(&self, opts: &[&str], cmd: &[&str]) -> Vec<String> {
        isle_args(opts, cmd)
    }

    /// Imports the busybox tarball as image `name`.
    pub fn import_busybox(&self, name: &str) {
        let tar = busybox_tar();
        let tar = tar.to_str().expect("UTF-8 cache path");
        self.run(&["image", "import", tar, name])
            .assert_success(&format!("islander image import {tar} {name}"));
    }

    /// Starts an isle that runs `sh -c` on: BEFORE, then a report of its
    /// cgroups, then AFTER (default `read x`: it waits for a line on stdin).
    /// Returns once the report arrived, so the isle is up and known by id.
    pub fn spawn(&self, opts: &[&str], before: &str, after: &str) -> RunningIsle {
        let after = if after.is_empty() { "read x" } else { after };
        let script = format!(
            "{before}\necho '{MARK_CGROUP}'\ncat /proc/self/cgroup\necho '{MARK_READY}'\n{after}\n"
        );
        let mut all_opts = vec!["-i"];
        all_opts.extend_from_slice(opts);
        let args = isle_args(&all_opts, &["sh", "-c", &script]);
        let what = format!("islander run {} sh -c ...", all_opts.join(" "));
        let mut child = self
            .cmd()
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", islander_bin().display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = PipeReader::start(child.stderr.take().expect("stderr is piped"));
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let mut isle = RunningIsle {
            child: Some(child),
            stdin,
            lines,
            stderr,
            id: String::new(),
            before: Vec::new(),
            what,
        };
        isle.await_report();
        isle
    }

    /// Panics unless the isle `id` left nothing: no cgroup directory in any
    /// hierarchy, no host mount mentioning it or this root, no state dirs.
    pub fn assert_no_leftovers(&self, id: &str) {
        let mut problems = Vec::new();
        let mut hierarchies: BTreeSet<PathBuf> = cgroup_mounts()
            .into_iter()
            .map(|m| PathBuf::from(m.mount_point))
            .collect();
        if let Ok(dir) = fs::read_dir("/sys/fs/cgroup") {
            hierarchies.extend(dir.filter_map(|e| e.ok()).map(|e| e.path()));
        }
        for hierarchy in hierarchies {
            let dir = hierarchy.join("islander").join(id);
            if dir.exists() {
                problems.push(format!("cgroup directory {} remains", dir.display()));
            }
        }
        problems.extend(self.mount_problems(Some(id)));
        for dir in [self.isles_lib_dir().join(id), self.isles_run_dir().join(id)] {
            if dir.symlink_metadata().is_ok() {
                problems.push(format!("{} remains", dir.display()));
            }
        }
        assert!(
            problems.is_empty(),
            "isle {id} left things behind:\n  {}",
            problems.join("\n  ")
        );
    }

    /// For runs whose id is unknown (they failed, or were many): panics if
    /// any `islander/*` cgroup appeared since `before` (take it with
    /// `islander_cgroup_entries()` while holding `Islander::exclusive`), or
    /// if this root has isle state or mounts.
    pub fn assert_nothing_left(&self, before: &BTreeSet<PathBuf>) {
        let mut problems: Vec<String> = leaked_cgroups(before)
            .iter()
            .map(|p| format!("cgroup directory {} appeared and stays empty", p.display()))
            .collect();
        problems.extend(self.mount_problems(None));
        for dir in [self.isles_lib_dir(), self.isles_run_dir()] {
            if let Ok(entries) = fs::read_dir(&dir) {
                for entry in entries.filter_map(|e| e.ok()) {
                    problems.push(format!("{} remains", entry.path().display()));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "islander left things behind:\n  {}",
            problems.join("\n  ")
        );
    }

    fn mount_problems(&self, id: Option<&str>) -> Vec<String> {
        let root = self.root.to_string_lossy().into_owned();
        host_mounts()
            .into_iter()
            .filter(|m| m.raw.contains(&root) || id.is_some_and(|id| m.raw.contains(id)))
            .map(|m| format!("host mount remains: {}", m.raw))
            .collect()
    }
}

impl Drop for Islander {
    fn drop(&mut self) {
        // A mount under the root is an engine bug that assert_no_leftovers
        // reports; detach it anyway so removing the root can never reach
        // into a mounted layer.
        let root = self.root.to_string_lossy().into_owned();
        let mut stuck: Vec<String> = host_mounts()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(&root))
            .collect();
        stuck.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in stuck {
            eprintln!("islander-tests: detaching leftover mount {point}");
            let c = std::ffi::CString::new(point).expect("mount point without NUL");
            // SAFETY: a valid C string; MNT_DETACH only affects that mount.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        if let Err(e) = fs::remove_dir_all(&self.root) {
            eprintln!("islander-tests: cannot remove {}: {e}", self.root.display());
        }
    }
}

/// `islander/*` cgroups that appeared since `before` and look leaked.
///
/// The exclusive lock keeps other tests away, not people running islander
/// by hand on the same machine. So a new directory that holds processes is
/// a live isle of someone else (ours have exited: `collect` checked that
/// none holds our pipes), and one that vanishes soon was someone else's
/// isle starting or ending. What remains, empty, for seconds is a leak.
fn leaked_cgroups(before: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let suspects: Vec<PathBuf> = islander_cgroup_entries()
            .difference(before)
            .filter(|dir| cgroup_procs_lenient(dir).is_empty())
            .cloned()
            .collect();
        if suspects.is_empty() || Instant::now() >= deadline {
            return suspects;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Members of a cgroup; none if it vanished meanwhile.
fn cgroup_procs_lenient(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

fn isle_args(opts: &[&str], cmd: &[&str]) -> Vec<String> {
    let mut args = vec!["run".to_string()];
    if !opts.iter().any(|o| {
        *o == "--image"
            || *o == "--rootfs"
            || o.starts_with("--image=")
            || o.starts_with("--rootfs=")
    }) {
        args.push("--rootfs".into());
        args.push(busybox_rootfs().to_str().expect("UTF-8 cache path").into());
    }
    args.extend(opts.iter().map(|s| s.to_string()));
    args.extend(cmd.iter().map(|s| s.to_string()));
    args
}

/// An isle started by `Islander::spawn`, up and waiting.
///
/// Dropping it closes the isle's stdin (ending a `read x`), waits a while,
/// and kills islander if it is still there.
pub struct RunningIsle {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<(Instant, String)>,
    stderr: PipeReader,
    id: String,
    before: Vec<String>,
    what: String,
}

impl RunningIsle {
    fn await_report(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut in_cgroup = false;
        let mut cgroup = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((_, line)) if line == MARK_CGROUP => in_cgroup = true,
                Ok((_, line)) if line == MARK_READY => break,
                Ok((_, line)) if in_cgroup => {
                    cgroup.push_str(&line);
                    cgroup.push('\n');
                }
                Ok((_, line)) => self.before.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("the isle did not report within {READY_TIMEOUT:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail("islander closed its stdout before the isle reported")
                }
            }
        }
        self.id = parse_isle_id(&cgroup).unwrap_or_else(|| {
            self.fail(&format!(
                "no ':memory:/islander/<id>' line in the isle's /proc/self/cgroup:\n{cgroup}"
            ))
        });
        check_isle_id(&self.id, &self.what);
    }

    /// Stops islander and panics with everything known about it.
    fn fail(&mut self, why: &str) -> ! {
        let status = self.child.as_mut().map(|c| {
            let status = wait_deadline(c, Duration::from_secs(5));
            if status.is_none() {
                kill_hard(c);
            }
            status
        });
        self.child = None;
        let mut stdout = self.before.join("\n");
        while let Ok((_, line)) = self.lines.try_recv() {
            stdout.push('\n');
            stdout.push_str(&line);
        }
        let status = match status.flatten() {
            Some(s) => describe_status(s),
            None => "islander was still running (killed it)".into(),
        };
        panic!(
            "{}: {why}\n{status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            self.what,
            String::from_utf8_lossy(&self.stderr.snapshot())
        );
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// What islander and the isle wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.snapshot()).into_owned()
    }

    /// Lines the BEFORE part of the script printed.
    pub fn before_lines(&self) -> &[String] {
        &self.before
    }

    pub fn islander_pid(&self) -> i32 {
        self.child.as_ref().expect("islander is running").id() as i32
    }

    /// Host pid of the isle's PID 1: the member of its memory cgroup whose
    /// innermost pid is 1.
    pub fn pid1(&self) -> i32 {
        let dir = isle_cgroup("memory", &self.id);
        let procs = cgroup_procs(&dir);
        procs
            .iter()
            .copied()
            .find(|&p| innermost_pid(p) == Some(1))
            .unwrap_or_else(|| {
                panic!(
                    "no process of {} is PID 1 of its namespace (members: {procs:?})",
                    dir.display()
                )
            })
    }

    /// Sends `sig` to the islander process (not to the isle).
    pub fn signal_islander(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.islander_pid(), sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.islander_pid(),
            std::io::Error::last_os_error()
        );
    }

    /// The next line the isle prints, with when it arrived.
    pub fn next_line(&mut self, timeout: Duration) -> (Instant, String) {
        match self.lines.recv_timeout(timeout) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => {
                self.fail(&format!("no line from the isle within {timeout:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.fail("the isle's stdout closed while a line was awaited")
            }
        }
    }

    /// Writes `line` and a newline to the isle's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        if let Err(e) = stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
        {
            self.fail(&format!("cannot write to the isle's stdin: {e}"));
        }
    }

    /// Lets the isle's `read x` return, then waits for islander to exit.
    pub fn finish(mut self) -> Output {
        self.send_line("");
        self.wait()
    }

    /// Closes stdin and waits (up to `RUN_TIMEOUT`) for islander to exit.
    /// stdout holds the lines after the report that were not read yet.
    pub fn wait(mut self) -> Output {
        self.stdin = None;
        let mut child = self.child.take().expect("islander is running");
        let status = match wait_deadline(&mut child, RUN_TIMEOUT) {
            Some(s) => s,
            None => {
                self.child = Some(child);
                self.fail(&format!("islander did not exit within {RUN_TIMEOUT:?}"));
            }
        };
        let mut stdout = Vec::new();
        let deadline = Instant::now() + PIPE_GRACE;
        let closed = loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok((_, line)) => {
                    stdout.extend_from_slice(line.as_bytes());
                    stdout.push(b'\n');
                }
                Err(RecvTimeoutError::Disconnected) => break true,
                Err(RecvTimeoutError::Timeout) => break false,
            }
        };
        let (stderr, err_closed) = self.stderr.finish(PIPE_GRACE);
        let output = Output {
            status,
            stdout,
            stderr,
        };
        assert!(
            closed && err_closed,
            "{}: islander exited but its stdout/stderr stayed open for {PIPE_GRACE:?}: \
             a process of the isle outlived it. {}",
            self.what,
            output.describe()
        );
        output
    }
}

impl Drop for RunningIsle {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(child) = self.child.as_mut() {
            if wait_deadline(child, Duration::from_secs(30)).is_none() {
                eprintln!(
                    "islander-tests: killing islander {} left running",
                    child.id()
                );
                kill_hard(child);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_id_on_the_memory_line() {
        let id = "ab".repeat(32);
        let text =
            format!("12:pids:/islander/{id}\n4:cpu,cpuacct:/x\n7:memory:/islander/{id}\n0::/\n");
        assert_eq!(parse_isle_id(&text), Some(id));
        assert_eq!(parse_isle_id("7:memory:/\n"), None);
    }
}
