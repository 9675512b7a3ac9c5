//! Bad input to `islander verify`: status 125, exactly one `islander: `
//! line naming the bad value, nothing on stdout, and nothing left behind
//! (no isle, no cgroup, no staged workload, no plot file).

use std::path::Path;

use islander_tests::{busybox_rootfs, islander_cgroup_entries, Islander, OutputExt};

fn refused(test: &str, opts: &[&str], needle: &str) {
    let isl = Islander::exclusive(test);
    let before = islander_cgroup_entries();
    let rootfs = busybox_rootfs();
    let mut args = vec!["verify", "--rootfs", rootfs.to_str().unwrap()];
    args.extend_from_slice(opts);
    let out = isl.run(&args);
    let what = format!("islander {}", args.join(" "));
    out.assert_code(125, &what);
    let stderr = out.stderr_str();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one stderr line, got {}",
        out.describe()
    );
    assert!(lines[0].starts_with("islander: "), "{what}: {}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "{what}: the error does not name {needle}: {}",
        lines[0]
    );
    assert_eq!(out.stdout_str(), "", "{what}: wrote to stdout");
    isl.assert_nothing_left(&before);
    let isles = isl.isles_lib_dir();
    let staged = std::fs::read_dir(&isles).map(|d| d.count()).unwrap_or(0);
    assert_eq!(staged, 0, "{what}: {} is not empty", isles.display());
}

#[test]
fn malformed_cpu_quota() {
    refused("verify-bad-quota", &["--cpu-quota", "999"], "invalid --cpu-quota '999'");
}

#[test]
fn malformed_memory() {
    refused(
        "verify-bad-memory",
        &["--memory-in-bytes", "10x"],
        "invalid --memory-in-bytes '10x'",
    );
}

#[test]
fn malformed_rate() {
    refused(
        "verify-bad-rate",
        &["--device-write-bps", "fast"],
        "invalid --device-write-bps 'fast'",
    );
}

#[test]
fn malformed_period() {
    refused(
        "verify-bad-period",
        &["--cpu-period", "1ms"],
        "invalid --cpu-period '1ms'",
    );
}

#[test]
fn unknown_format() {
    refused("verify-bad-format", &["--format", "yaml"], "'yaml'");
}

#[test]
fn plot_that_is_not_svg() {
    refused(
        "verify-bad-plot",
        &["--plot", "/tmp/verify.png"],
        "invalid --plot '/tmp/verify.png'",
    );
    assert!(!Path::new("/tmp/verify.png").exists());
}

#[test]
fn plot_in_a_missing_directory() {
    refused(
        "verify-plot-dir",
        &["--plot", "/no/such/dir/p.svg"],
        "its directory does not exist",
    );
}

#[test]
fn missing_rootfs() {
    let isl = Islander::exclusive("verify-no-rootfs");
    let before = islander_cgroup_entries();
    let out = isl.run(&["verify", "--rootfs", "/no/such/rootfs"]);
    out.assert_code(125, "verify --rootfs /no/such/rootfs");
    assert_eq!(out.stderr_str().lines().count(), 1, "{}", out.describe());
    assert!(out.stderr_str().contains("/no/such/rootfs"), "{}", out.describe());
    isl.assert_nothing_left(&before);
}
