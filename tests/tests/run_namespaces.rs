//! `islander run` puts the command in its own pid, uts, ipc, mount and net
//! namespaces (and a user namespace with `--userns`).

use islander_tests::host::{self, ns_link, parse_mountinfo};
use islander_tests::{Islander, OutputExt};

#[test]
fn command_is_pid_1() {
    let isl = Islander::new("pid1");
    let out = isl.run_isle(&[], &["sh", "-c", "echo $$"]);
    out.assert_success("sh -c 'echo $$'");
    assert_eq!(
        out.stdout_str().trim(),
        "1",
        "the isle's command is not PID 1: {}",
        out.describe()
    );
}

#[test]
fn ps_lists_only_the_isles_processes() {
    let isl = Islander::new("ps");
    // The trailing `true` keeps sh from exec'ing ps, so the isle has exactly
    // two processes: sh as PID 1 and ps. (comm, not args: busybox runs ps
    // in a fork of sh without exec, so its args are still sh's.)
    let out = isl.run_isle(&[], &["sh", "-c", "ps -o pid,comm; true"]);
    out.assert_success("ps in the isle");
    let text = out.stdout_str();
    let rows: Vec<(u32, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (pid, args) = l.trim().split_once(char::is_whitespace)?;
            Some((pid.parse().ok()?, args.trim().to_string()))
        })
        .collect();
    assert_eq!(
        rows.len(),
        2,
        "ps in the isle should see sh and ps only, saw:\n{text}"
    );
    assert!(
        rows.iter().any(|(pid, comm)| *pid == 1 && comm == "sh"),
        "PID 1 in the isle is not the command sh:\n{text}"
    );
    assert!(
        rows.iter().any(|(pid, comm)| *pid != 1 && comm == "ps"),
        "ps does not see itself:\n{text}"
    );
}

#[test]
fn default_hostname_is_the_short_id() {
    let isl = Islander::new("hostname-default");
    let host_before = host::hostname();
    let out = isl.run_isle(
        &[],
        &[
            "sh",
            "-c",
            "hostname; echo \"$HOSTNAME\"; cat /proc/self/cgroup",
        ],
    );
    out.assert_success("hostname in the isle");
    let id = out.isle_id();
    let text = out.stdout_str();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(&id[..12]),
        "hostname in the isle is not the short id of {id}:\n{text}"
    );
    assert_eq!(
        lines.next(),
        Some(&id[..12]),
        "$HOSTNAME in the isle is not the short id of {id}:\n{text}"
    );
    assert_eq!(host::hostname(), host_before, "the host's hostname changed");
}

#[test]
fn hostname_option_names_the_isle() {
    let isl = Islander::new("hostname-option");
    let host_before = host::hostname();
    let out = isl.run_isle(
        &["--hostname", "isle-foo"],
        &["sh", "-c", "hostname; echo \"$HOSTNAME\""],
    );
    out.assert_success("--hostname isle-foo");
    assert_eq!(
        out.stdout_str(),
        "isle-foo\nisle-foo\n",
        "{}",
        out.describe()
    );
    assert_eq!(host::hostname(), host_before, "the host's hostname changed");
}

#[test]
fn hostname_set_inside_stays_inside() {
    let isl = Islander::new("hostname-inside");
    let host_before = host::hostname();
    // Docker's default capabilities lack CAP_SYS_ADMIN, so this needs --privileged.
    let out = isl.run_isle(
        &["--privileged"],
        &["sh", "-c", "hostname renamed-inside && hostname"],
    );
    out.assert_success("hostname renamed-inside");
    assert_eq!(out.stdout_str().trim(), "renamed-inside");
    assert_eq!(
        host::hostname(),
        host_before,
        "renaming the isle renamed the host"
    );
}

#[test]
fn namespaces_differ_from_the_hosts() {
    let isl = Islander::new("ns-links");
    let out = isl.run_isle(
        &[],
        &["sh", "-c", "for n in ipc mnt net pid uts user cgroup; do echo $n $(readlink /proc/self/ns/$n); done"],
    );
    out.assert_success("readlink /proc/self/ns/*");
    let text = out.stdout_str();
    let inside = |ns: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{ns} ")))
            .unwrap_or_else(|| panic!("no '{ns}' line in:\n{text}"))
            .to_string()
    };
    for ns in ["ipc", "mnt", "net", "pid", "uts"] {
        let host = ns_link("self", ns);
        assert_ne!(
            inside(ns),
            host,
            "the isle shares the host's {ns} namespace ({host})"
        );
        assert!(
            inside(ns).starts_with(&format!("{ns}:[")),
            "odd {ns} link: {}",
            inside(ns)
        );
    }
    // No user namespace without --userns, and no cgroup namespace at all
    // (tests and tools learn the isle id from /proc/self/cgroup).
    for ns in ["user", "cgroup"] {
        assert_eq!(
            inside(ns),
            ns_link("self", ns),
            "the isle has its own {ns} namespace"
        );
    }
}

#[test]
fn network_has_only_loopback_and_it_is_up() {
    let isl = Islander::new("net");
    let out = isl.run_isle(
        &[],
        &[
            "sh",
            "-c",
            "cat /proc/net/dev; echo @@; ip link; echo @@; ip addr show lo",
        ],
    );
    out.assert_success("network listing");
    let text = out.stdout_str();
    let parts: Vec<&str> = text.split("@@\n").collect();
    assert_eq!(parts.len(), 3, "unexpected output:\n{text}");

    // /proc/net/dev: two header lines, then `name: counters`.
    let devs: Vec<&str> = parts[0]
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, _)| n.trim())
        .collect();
    assert_eq!(
        devs,
        ["lo"],
        "interfaces in the isle (/proc/net/dev):\n{}",
        parts[0]
    );

    // `ip link`: `N: name: <FLAGS> ...` per interface.
    let links: Vec<(&str, &str)> = parts[1]
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| {
            let mut f = l.splitn(3, ": ");
            let (_, name, rest) = (f.next()?, f.next()?, f.next()?);
            Some((name, rest.strip_prefix('<')?.split('>').next()?))
        })
        .collect();
    assert_eq!(links.len(), 1, "ip link in the isle:\n{}", parts[1]);
    assert_eq!(links[0].0, "lo", "ip link in the isle:\n{}", parts[1]);
    assert!(
        links[0].1.split(',').any(|f| f == "UP"),
        "lo is not up in the isle:\n{}",
        parts[1]
    );
    assert!(
        parts[2].contains("127.0.0.1"),
        "lo has no 127.0.0.1 in the isle:\n{}",
        parts[2]
    );
}

#[test]
fn isle_mounts_stay_out_of_the_hosts_table() {
    let isl = Islander::new("mounts-hidden");
    let isle = isl.spawn(&[], "", "");
    let root = isl.root().to_string_lossy().into_owned();
    let leaks: Vec<String> = host::host_mounts()
        .into_iter()
        .filter(|m| m.raw.contains(isle.id()) || m.raw.contains(&root))
        .map(|m| m.raw)
        .collect();
    assert!(
        leaks.is_empty(),
        "while isle {} runs the host sees its mounts:\n{}",
        isle.id(),
        leaks.join("\n")
    );
    let id = isle.id().to_string();
    isle.finish().assert_success("the waiting isle");
    isl.assert_no_leftovers(&id);
}

#[test]
fn privileged_mount_inside_stays_inside() {
    let isl = Islander::new("mount-inside");
    let tag = format!("islander-tests-tmpfs-{}", std::process::id());
    let isle = isl.spawn(
        &["--privileged"],
        &format!("mount -t tmpfs -o size=1m {tag} /mnt && grep -c {tag} /proc/self/mountinfo"),
        "",
    );
    assert_eq!(
        isle.before_lines(),
        ["1"],
        "the tmpfs mounted in the isle does not show in the isle's own mountinfo"
    );
    let leaks: Vec<String> = host::host_mounts()
        .into_iter()
        .filter(|m| m.raw.contains(&tag))
        .map(|m| m.raw)
        .collect();
    assert!(
        leaks.is_empty(),
        "a mount made in the isle shows on the host:\n{}",
        leaks.join("\n")
    );
    let id = isle.id().to_string();
    isle.finish().assert_success("the waiting isle");
    isl.assert_no_leftovers(&id);
}

#[test]
fn mount_is_refused_without_privileged() {
    let isl = Islander::new("mount-refused");
    let out = isl.run_isle(&[], &["mount", "-t", "tmpfs", "none", "/mnt"]);
    assert_ne!(
        out.code(),
        Some(0),
        "mount succeeded in an unprivileged isle: {}",
        out.describe()
    );
}

#[test]
fn isle_sees_only_its_own_mounts() {
    let isl = Islander::new("mounts-inside");
    let out = isl.run_isle(&[], &["cat", "/proc/self/mountinfo"]);
    out.assert_success("cat /proc/self/mountinfo");
    let text = out.stdout_str();
    let mounts = parse_mountinfo(&text);
    let find = |point: &str| {
        mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == point)
            .unwrap_or_else(|| panic!("nothing is mounted at {point} in the isle:\n{text}"))
    };
    assert_eq!(
        find("/").fstype,
        "overlay",
        "the isle's / is not an overlay:\n{text}"
    );
    assert_eq!(find("/proc").fstype, "proc");
    assert_eq!(find("/sys").fstype, "sysfs");
    assert!(
        find("/sys").options.split(',').any(|o| o == "ro"),
        "/sys is writable in the isle:\n{text}"
    );
    assert_eq!(find("/dev").fstype, "tmpfs");
    assert_eq!(find("/dev/pts").fstype, "devpts");
    assert_eq!(find("/dev/shm").fstype, "tmpfs");
    // After pivot_root the host's mounts must be gone, not just hidden.
    let foreign: Vec<&str> = mounts
        .iter()
        .map(|m| m.mount_point.as_str())
        .filter(|p| {
            *p != "/"
                && !["/proc", "/sys", "/dev"]
                    .iter()
                    .any(|d| p == d || p.starts_with(&format!("{d}/")))
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "the isle sees mounts outside its own: {foreign:?}\n{text}"
    );
}

#[test]
fn userns_maps_root_to_100000() {
    let isl = Islander::new("userns-map");
    let out = isl.run_isle(
        &["--userns"],
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; readlink /proc/self/ns/user; id -u; id -g",
        ],
    );
    out.assert_success("--userns");
    let text = out.stdout_str();
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 5, "unexpected output:\n{text}");
    assert_eq!(
        lines[0],
        ["0", "100000", "65536"],
        "uid_map in the isle:\n{text}"
    );
    assert_eq!(
        lines[1],
        ["0", "100000", "65536"],
        "gid_map in the isle:\n{text}"
    );
    assert_ne!(
        lines[2],
        [ns_link("self", "user").as_str()],
        "--userns isle shares the host's user namespace"
    );
    assert_eq!(lines[3], ["0"], "not root in the isle:\n{text}");
    assert_eq!(lines[4], ["0"], "not group root in the isle:\n{text}");
}

#[test]
fn userns_files_belong_to_100000_on_the_host() {
    use std::os::unix::fs::MetadataExt;
    let isl = Islander::new("userns-owner");
    let isle = isl.spawn(
        &["--userns"],
        "echo x > /tmp/made-in-isle && echo wrote",
        "",
    );
    assert_eq!(
        isle.before_lines(),
        ["wrote"],
        "root in a --userns isle cannot write to /tmp; stderr: {}",
        isle.stderr_so_far()
    );
    let file = isl
        .isles_lib_dir()
        .join(isle.id())
        .join("upper/tmp/made-in-isle");
    let meta = std::fs::metadata(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; the contract puts the isle's upper layer at <lib>/isles/<id>/upper",
            file.display()
        )
    });
    assert_eq!(
        (meta.uid(), meta.gid()),
        (100000, 100000),
        "owner on the host of a file root made in the isle"
    );
    let id = isle.id().to_string();
    isle.finish().assert_success("the waiting --userns isle");
    isl.assert_no_leftovers(&id);
}
