//! Bad input to `islander run`: status 125 (126/127 for a command that
//! cannot run), exactly one `islander: ` line on stderr naming the bad
//! value, and nothing left behind.
//!
//! Each test holds the isle lock exclusively, so any cgroup directory that
//! appears meanwhile is this run's.

use islander_tests::{busybox_rootfs, islander_cgroup_entries, Islander, OutputExt};

/// Runs `islander ARGS` and checks the refusal. `needle` must appear in the
/// error line; with `accepted`, the line must also say what is accepted.
fn refused(test: &str, args: &[&str], code: i32, needle: &str, accepted: bool) {
    let isl = Islander::exclusive(test);
    let before = islander_cgroup_entries();
    let out = isl.run(args);
    let what = format!("islander {}", args.join(" "));
    out.assert_code(code, &what);
    let stderr = out.stderr_str();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one stderr line, got {}",
        out.describe()
    );
    let line = lines[0];
    assert!(
        line.starts_with("islander: "),
        "{what}: the error line does not start with 'islander: ': {line}"
    );
    assert!(
        line.contains(needle),
        "{what}: the error line does not name {needle}: {line}"
    );
    if accepted {
        assert!(
            line.contains("accepted"),
            "{what}: the error line does not say what is accepted: {line}"
        );
    }
    assert_eq!(out.stdout_str(), "", "{what}: wrote to stdout");
    isl.assert_nothing_left(&before);
}

/// `run --rootfs <busybox> OPTS /bin/true` is refused with 125.
fn bad_option(test: &str, opts: &[&str], needle: &str) {
    let rootfs = busybox_rootfs();
    let mut args = vec!["run", "--rootfs", rootfs.to_str().unwrap()];
    args.extend_from_slice(opts);
    args.push("/bin/true");
    refused(test, &args, 125, needle, true);
}

#[test]
fn memory_below_minimum() {
    bad_option("memory-3m", &["--memory-in-bytes", "3M"], "'3M'");
}

#[test]
fn memory_negative() {
    bad_option("memory-neg", &["--memory-in-bytes=-1"], "'-1'");
}

#[test]
fn memory_unknown_unit() {
    bad_option("memory-unit", &["--memory-in-bytes", "10x"], "'10x'");
}

#[test]
fn memory_empty() {
    bad_option("memory-empty", &["--memory-in-bytes", ""], "''");
}

#[test]
fn memory_overflow() {
    bad_option(
        "memory-overflow",
        &["--memory-in-bytes", "99999999999g"],
        "'99999999999g'",
    );
}

#[test]
fn memory_fraction() {
    bad_option("memory-fraction", &["--memory-in-bytes", "1.5g"], "'1.5g'");
}

#[test]
fn cpu_shares_below_minimum() {
    bad_option("shares-1", &["--cpu-shares", "1"], "'1'");
}

#[test]
fn cpu_shares_negative() {
    bad_option("shares-neg", &["--cpu-shares", "-5"], "'-5'");
}

#[test]
fn cpu_shares_not_a_number() {
    bad_option("shares-nan", &["--cpu-shares", "lots"], "'lots'");
}

#[test]
fn cpu_period_too_small() {
    bad_option("period-999", &["--cpu-period", "999"], "'999'");
}

#[test]
fn cpu_period_too_large() {
    bad_option("period-big", &["--cpu-period", "1000001"], "'1000001'");
}

#[test]
fn cpu_quota_too_small() {
    bad_option("quota-999", &["--cpu-quota", "999"], "'999'");
}

#[test]
fn cpu_quota_negative_other_than_minus_one() {
    bad_option("quota-neg", &["--cpu-quota", "-2"], "'-2'");
}

#[test]
fn device_write_bps_unknown_unit() {
    bad_option("wbps-unit", &["--device-write-bps", "10x"], "'10x'");
}

#[test]
fn device_read_bps_empty() {
    bad_option("rbps-empty", &["--device-read-bps", ""], "''");
}

#[test]
fn device_bps_for_a_missing_device() {
    bad_option(
        "bps-nodev",
        &["--device-read-bps", "/dev/islander-no-such-disk:10M"],
        "/dev/islander-no-such-disk",
    );
}

#[test]
fn net_cls_classid_not_a_number() {
    bad_option("classid-nan", &["--net-cls-classid", "zz"], "'zz'");
}

#[test]
fn hostname_too_long() {
    // The kernel takes at most 64 bytes. What is accepted is worded freely
    // here, so only the value is looked for.
    let name = "h".repeat(65);
    let rootfs = busybox_rootfs();
    refused(
        "hostname-long",
        &[
            "run",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--hostname",
            &name,
            "/bin/true",
        ],
        125,
        &format!("'{name}'"),
        false,
    );
}

#[test]
fn unknown_option() {
    let rootfs = busybox_rootfs();
    refused(
        "unknown-opt",
        &[
            "run",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--no-such-option",
            "/bin/true",
        ],
        125,
        "--no-such-option",
        false,
    );
}

#[test]
fn option_without_its_value() {
    let rootfs = busybox_rootfs();
    refused(
        "missing-value",
        &["run", "--rootfs", rootfs.to_str().unwrap(), "--cpu-shares"],
        125,
        "--cpu-shares",
        false,
    );
}

#[test]
fn rootfs_and_image_together() {
    let rootfs = busybox_rootfs();
    refused(
        "rootfs-image",
        &[
            "run",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--image",
            "busybox",
            "/bin/true",
        ],
        125,
        "--image",
        false,
    );
}

#[test]
fn missing_image() {
    refused(
        "missing-image",
        &["run", "--image", "nope", "/bin/true"],
        125,
        "'nope'",
        false,
    );
}

#[test]
fn missing_rootfs() {
    refused(
        "missing-rootfs",
        &[
            "run",
            "--rootfs",
            "/nonexistent/islander-tests",
            "/bin/true",
        ],
        125,
        "'/nonexistent/islander-tests'",
        false,
    );
}

#[test]
fn rootfs_that_is_a_file() {
    refused(
        "rootfs-file",
        &["run", "--rootfs", "/etc/passwd", "/bin/true"],
        125,
        "'/etc/passwd'",
        false,
    );
}

#[test]
fn command_not_in_the_isle() {
    let rootfs = busybox_rootfs();
    refused(
        "cmd-missing",
        &[
            "run",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "no-such-command",
        ],
        127,
        "'no-such-command'",
        false,
    );
}

#[test]
fn absolute_command_not_in_the_isle() {
    let rootfs = busybox_rootfs();
    refused(
        "cmd-abs-missing",
        &[
            "run",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "/bin/no-such-command",
        ],
        127,
        "'/bin/no-such-command'",
        false,
    );
}

#[test]
fn command_not_executable() {
    let rootfs = busybox_rootfs();
    refused(
        "cmd-noexec",
        &["run", "--rootfs", rootfs.to_str().unwrap(), "/etc/passwd"],
        126,
        "/etc/passwd",
        false,
    );
}
