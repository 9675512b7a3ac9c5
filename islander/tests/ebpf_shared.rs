//! Several islanders share one set of programs and counters: however many
//! Observers attach and register an isle, in one process or several, each
//! syscall is counted once and each isle's network programs attached once.
//! Needs root.

mod ebpf_support;

use std::process::Command;

use ebpf_support::{getpids, observer, run_in, syscall_count, Ended, TestCgroup};
use islander::ebpf::EbpfError;

const N: u64 = 50_000;
/// Set for the copy of this test binary that plays a second islander.
const SECOND_ISLANDER: &str = "ISLANDER_TEST_REGISTER_CGROUP";

#[test]
fn observers_share_counters_without_double_counting() {
    let first = observer();
    let cgroup = TestCgroup::unified("shared");
    let id = cgroup.id();
    first.register(id).unwrap_or_else(|err| panic!("{err}"));

    // Another process attaches and registers the same isle...
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "second_islander", "--ignored", "--nocapture"])
        .env(SECOND_ISLANDER, id.to_string())
        .output()
        .expect("running a second copy of this test");
    assert!(
        output.status.success(),
        "the second islander failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // ...and so does a second Observer in this one.
    let second = observer();
    second.register(id).unwrap_or_else(|err| panic!("{err}"));

    assert_eq!(run_in(&[&cgroup], || getpids(N)), Ended::Exited(0));
    for (who, observer) in [("first", &first), ("second", &second)] {
        let counted = syscall_count(&observer.isle(id).unwrap(), libc::SYS_getpid);
        assert_eq!(counted, N, "the {who} Observer's count of {N} getpid calls");
    }

    let links: Vec<String> = std::fs::read_dir("/sys/fs/bpf/islander")
        .unwrap()
        .flatten()
        .flat_map(|dir| {
            std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|pin| pin.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&format!("net_{id}_")))
        .collect();
    assert_eq!(
        links.len(),
        2,
        "one ingress and one egress link for the isle: {links:?}"
    );

    // Forgetting through one is seen through the other.
    second.forget(id);
    assert!(matches!(first.isle(id), Err(EbpfError::NotRegistered(_))));
}

/// Not a test of its own: the second islander process of the test above.
#[test]
#[ignore = "run by observers_share_counters_without_double_counting"]
fn second_islander() {
    let Ok(id) = std::env::var(SECOND_ISLANDER) else {
        return;
    };
    let observer = observer();
    observer
        .register(id.parse().expect("a cgroup id"))
        .unwrap_or_else(|err| panic!("{err}"));
}
