//! The syscall counter sees exactly the syscalls made inside a registered
//! cgroup, and nothing from anywhere else. Needs root.

mod ebpf_support;

use std::thread;

use ebpf_support::{assert_near, getpids, observer, run_in, syscall_count, Ended, TestCgroup};
use islander::ebpf::{syscall_name, EbpfError};

const N: u64 = 200_000;

#[test]
fn counts_exactly_the_getpids_of_one_cgroup() {
    let observer = observer();
    let first = TestCgroup::unified("getpid");
    let second = TestCgroup::unified("busy");
    observer
        .register(first.id())
        .unwrap_or_else(|err| panic!("{err}"));
    observer
        .register(second.id())
        .unwrap_or_else(|err| panic!("{err}"));

    // The second cgroup, and a process outside both, make the same calls
    // (and others) at the same time; none of it may land on the first.
    thread::scope(|scope| {
        scope.spawn(|| {
            let ended = run_in(&[&second], || {
                getpids(N / 2);
                for _ in 0..1000 {
                    // SAFETY: getppid takes no arguments and cannot fail.
                    unsafe { libc::syscall(libc::SYS_getppid) };
                }
                0
            });
            assert_eq!(ended, Ended::Exited(0));
        });
        scope.spawn(|| getpids(N));
        assert_eq!(run_in(&[&first], || getpids(N)), Ended::Exited(0));
    });

    let counted = observer
        .isle(first.id())
        .unwrap_or_else(|err| panic!("{err}"));
    let getpid = syscall_count(&counted, libc::SYS_getpid);
    assert_near("getpid calls in the first cgroup", getpid, N, 1.0);
    assert_eq!(
        syscall_count(&counted, libc::SYS_getppid),
        0,
        "the second cgroup's getppid calls were counted for the first: {counted:?}"
    );
    let busy = observer
        .isle(second.id())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_near(
        "getpid calls in the second cgroup",
        syscall_count(&busy, libc::SYS_getpid),
        N / 2,
        1.0,
    );
    assert_eq!(syscall_count(&busy, libc::SYS_getppid), 1000, "{busy:?}");
    // Only syscalls that were made are listed, each by a number with a name.
    for &(nr, count) in &counted.syscalls {
        assert!(count > 0);
        assert!(syscall_name(nr).is_some(), "syscall {nr} has no name");
    }

    observer.forget(first.id());
    observer.forget(second.id());
    assert!(matches!(
        observer.isle(first.id()),
        Err(EbpfError::NotRegistered(_))
    ));
}

#[test]
fn an_unregistered_cgroup_is_not_counted() {
    let observer = observer();
    let cgroup = TestCgroup::unified("unregistered");
    assert_eq!(run_in(&[&cgroup], || getpids(1000)), Ended::Exited(0));
    match observer.isle(cgroup.id()) {
        Err(EbpfError::NotRegistered(id)) => assert_eq!(id, cgroup.id()),
        other => panic!("expected NotRegistered, got {other:?}"),
    }
}

#[test]
fn register_rejects_what_is_no_isle() {
    let observer = observer();
    let err = observer
        .register(1)
        .expect_err("the root cgroup is no isle");
    assert!(err.to_string().contains("invalid cgroup2 id 1"), "{err}");
    let err = observer.register(u64::MAX - 7).expect_err("no such cgroup");
    assert!(
        err.to_string().contains("no cgroup2 directory has id"),
        "{err}"
    );
}

#[test]
fn reports_the_programs_run_statistics() {
    let observer = observer();
    let before = observer.programs();
    assert_eq!(before.len(), 7, "{before:?}");
    let cgroup = TestCgroup::unified("stats");
    observer
        .register(cgroup.id())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(run_in(&[&cgroup], || getpids(1000)), Ended::Exited(0));
    let after = observer.programs();
    let runs = |stats: &[islander::ebpf::ProgramStats]| {
        stats
            .iter()
            .find(|p| p.name == "syscalls")
            .map(|p| p.run_count)
            .expect("a syscalls program")
    };
    assert!(
        runs(&after) >= runs(&before) + 1000,
        "{before:?} then {after:?}"
    );
    observer.forget(cgroup.id());
}
