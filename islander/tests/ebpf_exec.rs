//! The exec counter sees exactly the execs made inside a cgroup2 directory.
//! Needs root: it loads an eBPF program and creates a cgroup.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use islander::ebpf::{cgroup2_id, ExecCounter};

const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";
const EXECS: u64 = 20;

/// A cgroup2 directory that is removed when the test ends, however it ends.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn create() -> Self {
        let path = Path::new(CGROUP2_ROOT).join(format!("islander-test-{}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|err| panic!("creating {}: {err}", path.display()));
        Self(path)
    }

    fn procs(&self) -> File {
        let path = self.0.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_or_else(|err| panic!("opening {}: {err}", path.display()))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Every child has been waited for, but the kernel may take a moment
        // to let go of the last exited task.
        for _ in 0..50 {
            match fs::remove_dir(&self.0) {
                Ok(()) => return,
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                    thread::sleep(Duration::from_millis(20))
                }
                Err(err) => {
                    eprintln!("removing {}: {err}", self.0.display());
                    return;
                }
            }
        }
        eprintln!("removing {}: still busy after 1 s", self.0.display());
    }
}

/// Runs /bin/true `times` times, each in a fresh child that first moves
/// itself into the cgroup behind `procs` when one is given. A child makes
/// exactly one exec, so the count to expect is `times`.
fn run_true(times: u64, procs: Option<&File>) {
    for _ in 0..times {
        let mut command = Command::new("/bin/true");
        if let Some(procs) = procs {
            let fd = procs.as_raw_fd();
            // SAFETY: between fork and exec the child only calls write(2),
            // which is async-signal-safe, and allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    // Writing "0" to cgroup.procs moves the writing process.
                    if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        }
        let status = command.status().expect("running /bin/true");
        assert!(status.success(), "/bin/true exited with {status}");
    }
}

#[test]
fn counts_execs_in_a_cgroup() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads an eBPF program and creates a cgroup: run it as root"
    );

    let counter = ExecCounter::load().unwrap_or_else(|err| panic!("{err}"));
    let cgroup = TestCgroup::create();
    let id = cgroup2_id(&cgroup.0).unwrap_or_else(|err| panic!("{err}"));
    let procs = cgroup.procs();

    assert_eq!(
        counter.execs(id).expect("reading the count"),
        0,
        "a new cgroup has no execs"
    );

    // Execs elsewhere must not land in this cgroup's count.
    run_true(3, None);
    assert_eq!(
        counter.execs(id).expect("reading the count"),
        0,
        "execs outside cgroup {id} were counted for it"
    );

    run_true(EXECS, Some(&procs));
    assert_eq!(
        counter.execs(id).expect("reading the count"),
        EXECS,
        "execs counted for cgroup {id} ({})",
        cgroup.0.display()
    );
}

#[test]
fn cgroup2_id_rejects_a_v1_directory() {
    let err = cgroup2_id(Path::new("/sys/fs/cgroup/memory"))
        .expect_err("a cgroup v1 directory has no cgroup2 id");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    // The root of the cgroup2 tree always has id 1.
    assert_eq!(
        cgroup2_id(Path::new(CGROUP2_ROOT)).expect("reading the cgroup2 root's id"),
        1
    );
}
