//! The exec counter sees exactly the execs made inside a registered cgroup2
//! directory. Needs root: it loads eBPF programs and creates a cgroup.

mod ebpf_support;

use std::{io, os::unix::process::CommandExt as _, path::Path, process::Command};

use ebpf_support::{observer, TestCgroup, CGROUP2_ROOT};
use islander::ebpf::cgroup2_id;

const EXECS: u64 = 20;

/// Runs /bin/true `times` times, each in a fresh child that first moves
/// itself into `cgroup` when one is given. A child makes exactly one exec,
/// so the count to expect is `times`.
fn run_true(times: u64, cgroup: Option<&TestCgroup>) {
    let procs = cgroup.map(|c| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(c.path.join("cgroup.procs"))
            .expect("opening cgroup.procs")
    });
    for _ in 0..times {
        let mut command = Command::new("/bin/true");
        if let Some(procs) = &procs {
            let fd = std::os::fd::AsRawFd::as_raw_fd(procs);
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
    let observer = observer();
    let cgroup = TestCgroup::unified("exec");
    let id = cgroup.id();
    observer.register(id).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        observer.isle(id).unwrap().execs,
        0,
        "a new cgroup has no execs"
    );

    // Execs elsewhere must not land in this cgroup's count.
    run_true(3, None);
    assert_eq!(
        observer.isle(id).unwrap().execs,
        0,
        "execs outside cgroup {id} were counted for it"
    );

    run_true(EXECS, Some(&cgroup));
    assert_eq!(
        observer.isle(id).unwrap().execs,
        EXECS,
        "execs counted for cgroup {id} ({})",
        cgroup.path.display()
    );
    observer.forget(id);
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
