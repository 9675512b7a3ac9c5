//! Shared by the attach tests (each includes it with `#[path]`): the helper
//! programs of this directory compiled into a rootfs, detached isles that
//! run them, a pty harness that runs `islander attach` on a real terminal,
//! and readers of the isle's json log and of /proc.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use islander_tests::{busybox_rootfs, cache_dir, Islander, OutputExt};

/// Generous bounds for a small, busy machine; only a hang trips them.
pub const WAIT: Duration = Duration::from_secs(20);
pub const CTRL_P_CTRL_Q: &[u8] = b"\x10\x11";

const ISLE_HELPERS: [&str; 2] = ["counter", "blocker"];

fn sources_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helpers/attach")
}

fn fnv(data: &[u8], mut hash: u64) -> u64 {
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

fn sources_hash() -> u64 {
    let mut names: Vec<PathBuf> = fs::read_dir(sources_dir())
        .expect("list tests/helpers/attach")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    names.sort();
    let mut hash = fnv(
        &fs::read(cache_dir().join("busybox.stamp")).unwrap_or_default(),
        0xcbf2_9ce4_8422_2325,
    );
    for n in names {
        hash = fnv(n.file_name().unwrap().as_encoded_bytes(), hash);
        hash = fnv(&fs::read(&n).expect("read helper source"), hash);
    }
    hash
}

/// flock on a file of the cache, held while the value lives.
struct Lock(File);

impl Lock {
    fn take(path: &Path) -> Lock {
        let f =
            File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        // SAFETY: flock on a descriptor we own.
        while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {}
        Lock(f)
    }
}

fn gcc(src: &Path, out: &Path) {
    let cc = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(out)
        .arg(src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run gcc ({e}); the attach tests need gcc and libc6-dev")
        });
    assert!(
        cc.status.success(),
        "gcc -static {}: {}",
        src.display(),
        String::from_utf8_lossy(&cc.stderr)
    );
}

/// The busybox rootfs plus `/attach/counter` and `/attach/blocker`, built
/// once per machine and source version, read-only for the tests.
pub fn attach_rootfs() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let busybox = busybox_rootfs();
        let base = cache_dir();
        let name = format!("attach-rootfs-{:016x}", sources_hash());
        let dir = base.join(&name);
        let _lock = Lock::take(&base.join("attach-rootfs.lock"));
        if dir.join("attach/.complete").is_file() {
            return dir;
        }
        for entry in fs::read_dir(&base).expect("list cache dir").flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.starts_with("attach-rootfs-") && n != name {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let tmp = base.join(format!("{name}.building-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let cp = Command::new("cp")
            .arg("-a")
            .arg(&busybox)
            .arg(&tmp)
            .output()
            .expect("run cp");
        assert!(cp.status.success(), "cp -a {}: {cp:?}", busybox.display());
        fs::create_dir(tmp.join("attach")).expect("mkdir attach");
        for h in ISLE_HELPERS {
            gcc(
                &sources_dir().join(format!("{h}.c")),
                &tmp.join("attach").join(h),
            );
        }
        fs::write(tmp.join("attach/.complete"), "").expect("mark complete");
        fs::rename(&tmp, &dir).unwrap_or_else(|e| panic!("rename to {}: {e}", dir.display()));
        dir
    })
    .clone()
}

/// `hostwrap`, compiled for the host (see hostwrap.c).
pub fn hostwrap() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let base = cache_dir();
        let out = base.join(format!("attach-hostwrap-{:016x}", sources_hash()));
        let _lock = Lock::take(&base.join("attach-rootfs.lock"));
        if !out.is_file() {
            let tmp = out.with_extension(format!("tmp{}", std::process::id()));
            gcc(&sources_dir().join("hostwrap.c"), &tmp);
            fs::rename(&tmp, &out).expect("rename hostwrap");
        }
        out
    })
    .clone()
}

/// One line of the isle's json log.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub stream: String,
    pub text: String,
}

/// A detached isle (removed with `rm -f` on drop) and its PID 1.
pub struct Detached<'a> {
    pub isl: &'a Islander,
    pub id: String,
    pub pid: i32,
}

impl<'a> Detached<'a> {
    /// `islander run -d OPTS --rootfs <attach rootfs> CMD...`
    pub fn start(isl: &'a Islander, opts: &[&str], cmd: &[&str]) -> Detached<'a> {
        let rootfs = attach_rootfs();
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["--rootfs", rootfs.to_str().unwrap()]);
        args.extend_from_slice(cmd);
        let out = isl.run(&args);
        out.assert_success("islander run -d");
        let id = out.stdout_str().trim().to_string();
        assert_eq!(id.len(), 64, "run -d prints the id: {}", out.describe());
        let state = isl.isles_run_dir().join(&id).join("state.json");
        let deadline = Instant::now() + WAIT;
        let pid = loop {
            let v: serde_json::Value =
                serde_json::from_slice(&fs::read(&state).unwrap_or_default()).unwrap_or_default();
            if let Some(p) = v["pid"]["pid"].as_i64() {
                break p as i32;
            }
            assert!(
                Instant::now() < deadline,
                "isle {id} never recorded its pid: {v}"
            );
            thread::sleep(Duration::from_millis(10));
        };
        Detached { isl, id, pid }
    }

    pub fn short(&self) -> &str {
        &self.id[..12]
    }

    pub fn log_path(&self) -> PathBuf {
        self.isl.isles_lib_dir().join(&self.id).join("log/isle.log")
    }

    pub fn log(&self) -> Vec<LogLine> {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| LogLine {
                stream: v["stream"].as_str().unwrap_or_default().to_string(),
                text: v["log"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// Waits until `pred` holds for the log.
    pub fn wait_log(&self, what: &str, pred: impl Fn(&[LogLine]) -> bool) -> Vec<LogLine> {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if pred(&log) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not in the log of isle {} within {WAIT:?}; log: {log:?}",
                self.short()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `count N` values of the log's stdout, in order.
    pub fn logged_counts(&self) -> Vec<u64> {
        counts(
            self.log()
                .iter()
                .filter(|l| l.stream == "stdout")
                .map(|l| l.text.as_str()),
        )
    }

    pub fn assert_alive(&self, context: &str) {
        let st = fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let state = field(&st, "State");
        assert!(
            !state.is_empty() && !state.starts_with('Z'),
            "{context}: the isle's PID 1 ({}) is gone: state '{state}'",
            self.pid
        );
        assert_eq!(
            field(&st, "TracerPid"),
            "0",
            "{context}: the isle's PID 1 is still traced"
        );
        assert!(
            !state.starts_with('t'),
            "{context}: the isle's PID 1 is left in a trace stop"
        );
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let _ = self.isl.run(&["rm", "-f", &self.id]);
    }
}

pub fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

pub fn status_of(pid: i32, key: &str) -> String {
    field(
        &fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default(),
        key,
    )
}

/// The numbers of `count N` lines in `lines`.
pub fn counts<'l>(lines: impl Iterator<Item = &'l str>) -> Vec<u64> {
    lines
        .flat_map(|l| l.split(['\n', '\r']))
        .filter_map(|l| l.trim().strip_prefix("count ")?.parse().ok())
        .collect()
}

/// Panics unless `values` go up by exactly one each.
pub fn assert_consecutive(values: &[u64], what: &str) {
    assert!(!values.is_empty(), "{what}: no values");
    for w in values.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "{what}: {} is followed by {} (values {:?}..{:?})",
            w[0],
            w[1],
            values.first(),
            values.last()
        );
    }
}

/// `/proc/PID/fd`: each descriptor's number and what it links to.
pub fn fd_table(pid: i32) -> BTreeMap<String, String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .flatten()
        .map(|e| {
            let link = fs::read_link(e.path())
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), link)
        })
        .collect()
}

/// The system call the task is blocked in (first field of /proc/PID/syscall).
pub fn syscall_of(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/syscall"))
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// islander attach processes (and their guards) of this test's root.
pub fn attach_processes(isl: &Islander) -> Vec<i32> {
    let root = isl.root().to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&root)
                && cmd.contains(" attach ")
                && !status_of(*pid, "State").starts_with('Z')
        })
        .collect()
}

/// Waits until no attach process of the test's root is left.
pub fn assert_no_attach_left(isl: &Islander) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = attach_processes(isl);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "islander attach processes left behind: {left:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A command run on a new pty as its controlling terminal (a session of
/// its own), as a terminal emulator runs a shell; the test holds the master.
pub struct Pty {
    master: Arc<File>,
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

fn set_size(fd: i32, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

impl Pty {
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Pty {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills two descriptors.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two new descriptors that we own.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        set_size(master.as_raw_fd(), rows, cols);
        for fd in [&master, &slave] {
            // SAFETY: F_SETFD on our own descriptors.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let stdio = |f: &OwnedFd| Stdio::from(f.try_clone().expect("dup the pty slave"));
        cmd.stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        drop(slave);
        let master = Arc::new(File::from(master));
        let out = Arc::new(Mutex::new(Vec::new()));
        let (m, o) = (Arc::clone(&master), Arc::clone(&out));
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // EIO once the child and everything it started closed the slave.
            while let Ok(n @ 1..) = (&*m).read(&mut buf) {
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty { master, child, out }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    pub fn len(&self) -> usize {
        self.out.lock().unwrap().len()
    }

    /// Text that arrived after byte `from`.
    pub fn text_since(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()[from..]).into_owned()
    }

    /// Waits until the output after byte `from` holds `needle`.
    pub fn wait_for(&self, from: usize, needle: &str) -> String {
        self.wait_until(from, needle, |t| t.contains(needle))
    }

    pub fn wait_until(&self, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = self.text_since(from);
            if pred(&t) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "'{what}' did not show on the terminal within {WAIT:?}; it shows:\n{t}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn send(&self, bytes: &[u8]) {
        (&*self.master).write_all(bytes).expect("write to the pty");
    }

    pub fn resize(&self, rows: u16, cols: u16) {
        set_size(self.master.as_raw_fd(), rows, cols);
    }

    /// The terminal's settings, as the program on it sees them.
    pub fn termios(&self) -> libc::termios {
        // SAFETY: tcgetattr fills a termios; on a master it reads the slave's.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.master.as_raw_fd(), &mut t), 0);
            t
        }
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "the command on the pty did not exit within {WAIT:?}; the terminal shows:\n{}",
                    self.text()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `islander attach ARGS` with its stdin, stdout and stderr piped.
pub struct Piped {
    pub child: Child,
    pub stdin: Option<std::process::ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = Arc::clone(&buf);
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = r.read(&mut chunk) {
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

impl Piped {
    pub fn spawn(isl: &Islander, args: &[&str]) -> Piped {
        let mut child = isl
            .cmd()
            .arg("attach")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn islander attach");
        let stdin = child.stdin.take();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Piped {
            child,
            stdin,
            out,
            err,
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let s = self.stdin.as_mut().expect("stdin open");
        s.write_all(bytes)
            .and_then(|_| s.flush())
            .expect("write to islander attach");
    }

    pub fn wait_stdout(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = self.stdout();
            if pred(&t) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "'{what}' not on attach's stdout within {WAIT:?}; stdout:\n{t}\nstderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "islander attach did not exit within {WAIT:?}; stdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Detaches with ctrl-p ctrl-q and checks for a clean exit.
    pub fn detach(&mut self) {
        self.send(CTRL_P_CTRL_Q);
        let st = self.wait();
        assert!(
            st.success(),
            "islander attach after ctrl-p ctrl-q: {st}; stderr:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
