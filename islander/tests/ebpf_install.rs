//! An install that never finished (an islander killed while loading) is
//! recognised by its missing `ready` marker and redone. Needs root.
//!
//! The only test in its binary: it pulls the pins out from under any other
//! Observer, which a test running beside it would not survive.

mod ebpf_support;

use std::{fs, path::PathBuf};

use ebpf_support::{getpids, observer, run_in, syscall_count, Ended, TestCgroup};

fn ready_markers() -> Vec<PathBuf> {
    fs::read_dir("/sys/fs/bpf/islander")
        .unwrap()
        .flatten()
        .map(|dir| dir.path().join("ready"))
        .filter(|ready| ready.is_dir())
        .collect()
}

#[test]
fn redoes_a_half_made_install() {
    drop(observer());
    let ready = ready_markers();
    assert_eq!(ready.len(), 1, "one install after attaching: {ready:?}");
    fs::remove_dir(&ready[0]).unwrap();

    let observer = observer();
    assert_eq!(
        ready_markers(),
        ready,
        "attaching again should have reinstalled"
    );

    let cgroup = TestCgroup::unified("reinstall");
    observer
        .register(cgroup.id())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(run_in(&[&cgroup], || getpids(1000)), Ended::Exited(0));
    let counted = observer.isle(cgroup.id()).unwrap();
    assert_eq!(
        syscall_count(&counted, libc::SYS_getpid),
        1000,
        "{counted:?}"
    );
    observer.forget(cgroup.id());
}
