//! What the eBPF tests share: cgroups that clean up after themselves, and
//! children that do a known amount of work from inside one.
//!
//! Children are forked, not exec'd: between fork and _exit they only make
//! raw syscalls (async-signal-safe, no allocation), so what the programs see
//! from them is exactly what the test asked for.
#![allow(dead_code)]

use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::Duration,
};

use islander::ebpf::{cgroup2_id, Observer};

pub const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";
pub const MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

pub fn require_root() {
    // SAFETY: geteuid cannot fail and touches no memory.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF programs and creates cgroups: run it as root"
    );
}

pub fn observer() -> Observer {
    require_root();
    Observer::attach().unwrap_or_else(|err| panic!("{err}"))
}

/// A cgroup directory (cgroup2 or a v1 controller's) removed when the test
/// ends, however it ends. Each has a name unique to this process and test.
pub struct TestCgroup {
    pub path: PathBuf,
    /// cgroup.procs, opened before any fork so a child can join by writing
    /// "0" without allocating.
    procs: fs::File,
}

impl TestCgroup {
    pub fn new(root: &str, what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(root).join(format!("islander-test-{}-{what}-{n}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|err| panic!("creating {}: {err}", path.display()));
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))
            .unwrap_or_else(|err| panic!("opening {}/cgroup.procs: {err}", path.display()));
        Self { path, procs }
    }

    pub fn unified(what: &str) -> Self {
        Self::new(CGROUP2_ROOT, what)
    }

    pub fn id(&self) -> u64 {
        cgroup2_id(&self.path).unwrap_or_else(|err| panic!("{err}"))
    }

    pub fn write(&self, file: &str, value: &str) {
        let path = self.path.join(file);
        fs::write(&path, value)
            .unwrap_or_else(|err| panic!("writing {value} to {}: {err}", path.display()));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Every child has been waited for, but the kernel may take a moment
        // to let go of the last exited task.
        for _ in 0..100 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                    thread::sleep(Duration::from_millis(20))
                }
                Err(err) => {
                    eprintln!("removing {}: {err}", self.path.display());
                    return;
                }
            }
        }
        eprintln!("removing {}: still busy after 2 s", self.path.display());
    }
}

/// How a forked child ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Killed(i32),
}

/// Forks a child that joins `cgroups` (in order) and then runs `work`,
/// exiting with what it returns; waits for it. `work` must only make raw
/// syscalls: the parent may have other threads, so the child must not
/// allocate or take locks.
pub fn run_in(cgroups: &[&TestCgroup], work: impl FnOnce() -> i32) -> Ended {
    let fds: Vec<i32> = cgroups
        .iter()
        .map(|c| std::os::fd::AsRawFd::as_raw_fd(&c.procs))
        .collect();
    // SAFETY: the child only calls write, `work` (raw syscalls) and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        for &fd in &fds {
            // SAFETY: writing from a valid buffer to an fd we own.
            if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
                // SAFETY: ends the child without running the parent's atexit.
                unsafe { libc::_exit(101) };
            }
        }
        let code = work();
        // SAFETY: as above.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child into a local.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        Ended::Exited(libc::WEXITSTATUS(status))
    } else {
        Ended::Killed(libc::WTERMSIG(status))
    }
}

/// Makes exactly `n` getpid syscalls (libc::syscall, as glibc's getpid()
/// wrapper may not enter the kernel every time).
pub fn getpids(n: u64) -> i32 {
    for _ in 0..n {
        // SAFETY: getpid takes no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_getpid) };
    }
    0
}

pub fn syscall_count(counters: &islander::ebpf::IsleCounters, nr: i64) -> u64 {
    counters
        .syscalls
        .iter()
        .find(|&&(n, _)| i64::from(n) == nr)
        .map_or(0, |&(_, count)| count)
}

pub fn cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).expect("a path without NUL")
}

/// Asserts `actual` is within `percent` of `expected`.
pub fn assert_near(what: &str, actual: u64, expected: u64, percent: f64) {
    let off = (actual as f64 - expected as f64).abs() / expected as f64 * 100.0;
    assert!(
        off <= percent,
        "{what}: counted {actual}, expected {expected} within {percent}% (off by {off:.2}%)"
    );
}
