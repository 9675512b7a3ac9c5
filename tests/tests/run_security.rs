//! Capabilities and privileges of the isle's processes.

use islander_tests::host::status_field;
use islander_tests::{read_isle_cgroup, Islander, OutputExt};

/// Docker's 14 default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL
/// SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD
/// AUDIT_WRITE SETFCAP, as the bit mask /proc/<pid>/status prints.
const DOCKER_DEFAULT_CAPS: &str = "00000000a80425fb";

fn status_of_isle(isl: &Islander, opts: &[&str]) -> String {
    let out = isl.run_isle(opts, &["cat", "/proc/self/status"]);
    out.assert_success("cat /proc/self/status");
    out.stdout_str()
}

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in the isle's /proc/self/status:\n{status}"))
        .trim()
        .to_string()
}

#[test]
fn isle_gets_the_default_capabilities_and_no_new_privs() {
    let isl = Islander::new("caps");
    let status = status_of_isle(&isl, &[]);
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(
            field(&status, set),
            DOCKER_DEFAULT_CAPS,
            "{set} of the isle's command"
        );
    }
    assert_eq!(
        field(&status, "CapAmb"),
        "0000000000000000",
        "ambient capabilities in the isle"
    );
    assert_eq!(
        field(&status, "NoNewPrivs"),
        "1",
        "no_new_privs is not set in the isle"
    );
}

#[test]
fn privileged_isle_keeps_every_capability_and_device() {
    let isl = Islander::new("privileged");
    let status = status_of_isle(&isl, &["--privileged"]);
    let host = status_field("self", "CapBnd");
    assert_eq!(
        field(&status, "CapEff"),
        host,
        "CapEff of a --privileged isle vs the host's bounding set"
    );
    assert_eq!(
        field(&status, "CapBnd"),
        host,
        "CapBnd of a --privileged isle"
    );

    let isle = isl.spawn(&["--privileged"], "", "");
    let devices = read_isle_cgroup("devices", isle.id(), "devices.list");
    assert_eq!(devices, "a *:* rwm", "devices.list of a --privileged isle");
    let id = isle.id().to_string();
    isle.finish()
        .assert_success("the waiting --privileged isle");
    isl.assert_no_leftovers(&id);
}
