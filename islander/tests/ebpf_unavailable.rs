//! Without the privilege to use eBPF, attaching fails with one clear line
//! instead of a raw errno. Needs root (to drop it in a child).

mod ebpf_support;

use std::{os::unix::process::CommandExt as _, process::Command};

use ebpf_support::require_root;
use islander::ebpf::{EbpfError, Observer};

/// Set for the copy of this test binary that runs unprivileged.
const UNPRIVILEGED: &str = "ISLANDER_TEST_UNPRIVILEGED";
const NOBODY: u32 = 65534;

#[test]
fn attaching_as_an_ordinary_user_says_what_is_missing() {
    require_root();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "unprivileged_attach", "--ignored", "--nocapture"])
        .env(UNPRIVILEGED, "1")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("running this test binary as nobody");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "eBPF is unavailable: islander runs as uid {NOBODY}, not root (needs root and a kernel with BTF)"
        )),
        "{stdout}"
    );
}

/// Not a test of its own: the unprivileged half of the test above.
#[test]
#[ignore = "run by attaching_as_an_ordinary_user_says_what_is_missing"]
fn unprivileged_attach() {
    if std::env::var_os(UNPRIVILEGED).is_none() {
        return;
    }
    match Observer::attach() {
        Err(err @ EbpfError::Unavailable { .. }) => println!("{err}"),
        Err(err) => panic!("expected Unavailable, got: {err}"),
        Ok(_) => panic!("attached without root"),
    }
}
