//! `islander verify` through the real binary: limits that are in force
//! measure near their value and hold; limits raised behind islander's back
//! while the run goes are reported exceeded; and a run leaves nothing.
//!
//! Each test holds the isle lock exclusively: its measurements want the
//! machine to itself as far as the tests go, and every cgroup that appears
//! meanwhile is its own.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use islander_tests::host::{cgroup_mount, device_of};
use islander_tests::{busybox_rootfs, islander_cgroup_entries, Islander, OutputExt};
use serde_json::Value;

const MIB: f64 = 1024.0 * 1024.0;
/// A whole run takes well under 30 s; this only catches a hang.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

fn verify(isl: &Islander, opts: &[&str]) -> std::process::Output {
    let rootfs = busybox_rootfs();
    let mut args = vec![
        "verify",
        "--rootfs",
        rootfs.to_str().expect("UTF-8 path"),
        "--format",
        "json",
    ];
    args.extend_from_slice(opts);
    isl.run_timeout(&args, VERIFY_TIMEOUT)
}

fn rows(out: &std::process::Output) -> Vec<Value> {
    let parsed: Value = serde_json::from_str(&out.stdout_str())
        .unwrap_or_else(|e| panic!("verify's stdout is not JSON ({e}): {}", out.describe()));
    let list = parsed
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON list: {}", out.describe()));
    for row in list {
        for field in ["limit", "unit", "configured", "measured", "verdict"] {
            assert!(row.get(field).is_some(), "row without '{field}': {row}");
        }
    }
    list.clone()
}

fn row<'a>(rows: &'a [Value], limit: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["limit"] == limit)
        .unwrap_or_else(|| panic!("no row for '{limit}' in {}", Value::Array(rows.to_vec())))
}

fn measured(row: &Value) -> f64 {
    row["measured"]
        .as_f64()
        .unwrap_or_else(|| panic!("no measured number in {row}"))
}

fn assert_verdict(row: &Value, verdict: &str) {
    assert_eq!(row["verdict"], verdict, "verdict of {row}");
}

/// Within `share` of `want`.
fn assert_within(row: &Value, want: f64, share: f64) {
    let got = measured(row);
    assert!(
        (got - want).abs() <= want * share,
        "{}: measured {got}, want {want} ± {:.0}%: {row}",
        row["limit"],
        share * 100.0
    );
}

#[test]
fn limits_in_force_hold_and_nothing_is_left() {
    let isl = Islander::exclusive("verify-hold");
    let before = islander_cgroup_entries();
    let plot = isl.root().join("run.svg");
    let plot_arg = plot.to_str().unwrap().to_string();
    let started = Instant::now();
    let out = verify(
        &isl,
        &[
            "--cpu-quota",
            "50000",
            "--cpu-period",
            "100000",
            "--memory-in-bytes",
            "64M",
            "--device-write-bps",
            "10mb",
            "--device-read-bps",
            "20mb",
            "--plot",
            &plot_arg,
        ],
    );
    let took = started.elapsed();
    out.assert_success("verify of limits in force");
    assert!(
        took < Duration::from_secs(40),
        "verify took {took:?}: {}",
        out.describe()
    );
    let rows = rows(&out);

    let cpu = row(&rows, "cpu");
    assert_eq!(cpu["unit"], "CPUs");
    assert_eq!(cpu["configured"].as_f64(), Some(0.5));
    let cpus = measured(cpu);
    assert!(
        (0.45..=0.55).contains(&cpus),
        "cpu measured {cpus}, want 0.45..0.55: {cpu}"
    );
    assert_verdict(cpu, "holds");

    let memory = row(&rows, "memory");
    assert_eq!(memory["unit"], "bytes");
    assert_eq!(memory["configured"].as_f64(), Some(64.0 * MIB));
    assert_verdict(memory, "holds");
    assert!(measured(memory) <= 64.0 * MIB, "memory peak past the limit: {memory}");
    assert!(measured(memory) >= 60.0 * MIB, "memory peak not at the limit: {memory}");
    let detail = memory["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("OOM-killed"), "the OOM kill is not reported: {memory}");

    for (limit, rate) in [("device-write-bps", 10.0 * MIB), ("device-read-bps", 20.0 * MIB)] {
        let r = row(&rows, limit);
        assert_eq!(r["unit"], "bytes/s");
        assert_eq!(r["configured"].as_f64(), Some(rate));
        assert_within(r, rate, 0.10);
        assert_verdict(r, "holds");
    }
    assert_verdict(row(&rows, "device-write-bps (buffered)"), "holds");

    // Not a terminal: no progress bar.
    assert!(
        !out.stderr_str().contains('\r'),
        "a progress bar went to a pipe: {}",
        out.describe()
    );

    let svg = fs::read_to_string(&plot).unwrap_or_else(|e| panic!("no plot at {}: {e}", plot.display()));
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "not an SVG document"
    );
    for title in ["CPU", "Memory", "Disk writes", "Disk reads"] {
        assert!(svg.contains(title), "the plot has no '{title}' panel");
    }
    assert!(svg.matches("<polyline").count() >= 4, "the plot has too few lines");
    let stray: Vec<String> = fs::read_dir(isl.root())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary plot files remain: {stray:?}");

    isl.assert_nothing_left(&before);
    assert_no_verify_files(&isl);
}

/// The table is the default output: a header and a row per limit, one of
/// them saying holds.
#[test]
fn the_table_names_each_limit() {
    let isl = Islander::exclusive("verify-table");
    let before = islander_cgroup_entries();
    let rootfs = busybox_rootfs();
    let out = isl.run_timeout(
        &[
            "verify",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--cpu-quota",
            "-1",
            "--memory-in-bytes",
            "32M",
            "--device-write-bps",
            "20mb",
            "--device-read-bps",
            "40mb",
        ],
        VERIFY_TIMEOUT,
    );
    out.assert_success("verify with the table");
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("LIMIT") && lines[0].contains("VERDICT"),
        "no header: {text}"
    );
    for limit in [
        "memory",
        "device-write-bps",
        "device-write-bps (buffered)",
        "device-read-bps",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{limit} "))),
            "no '{limit}' row: {text}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.starts_with("cpu ")),
        "a CPU row without a quota: {text}"
    );
    assert!(
        out.stderr_str().contains("no CPU quota"),
        "no note about the missing quota: {}",
        out.describe()
    );
    isl.assert_nothing_left(&before);
    assert_no_verify_files(&isl);
}

#[test]
fn limits_raised_behind_islanders_back_are_exceeded() {
    let isl = Islander::exclusive("verify-raised");
    let before = islander_cgroup_entries();
    let device = device_of(isl.root());
    let done = Arc::new(AtomicBool::new(false));
    let raiser = {
        let done = Arc::clone(&done);
        let before = before.clone();
        thread::spawn(move || raise_limits(&before, &device, &done))
    };
    let out = verify(
        &isl,
        &[
            "--cpu-quota",
            "50000",
            "--cpu-period",
            "100000",
            "--memory-in-bytes",
            "64M",
            "--device-write-bps",
            "10mb",
            "--device-read-bps",
            "20mb",
        ],
    );
    done.store(true, Ordering::SeqCst);
    let raised = raiser.join().expect("the raising thread");
    assert!(
        raised,
        "the isle's cgroups never appeared with the limits written: {}",
        out.describe()
    );
    // A limit exceeded is verify's status 1.
    out.assert_code(1, "verify of raised limits");
    let rows = rows(&out);
    let cpu = row(&rows, "cpu");
    assert_verdict(cpu, "exceeded");
    assert!(measured(cpu) > 0.6, "{cpu}");
    let memory = row(&rows, "memory");
    assert_verdict(memory, "exceeded");
    assert!(measured(memory) > 64.0 * MIB, "{memory}");
    assert_verdict(row(&rows, "device-write-bps"), "exceeded");
    assert!(measured(row(&rows, "device-write-bps")) > 11.0 * MIB);
    // The one left alone still holds.
    assert_verdict(row(&rows, "device-read-bps"), "holds");
    isl.assert_nothing_left(&before);
    assert_no_verify_files(&isl);
}

/// Waits for the verify isle's cgroups to appear with their limits, then
/// raises the CPU quota, the memory limit and the write throttle past what
/// verify asked for. Returns whether it did.
fn raise_limits(before: &BTreeSet<PathBuf>, device: &str, done: &AtomicBool) -> bool {
    let cpu_root = cgroup_mount("cpu").expect("cpu hierarchy").join("islander");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
        let fresh: Vec<PathBuf> = fs::read_dir(&cpu_root)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && !before.contains(p))
            .collect();
        if let Some(dir) = fresh.first() {
            let id = dir.file_name().unwrap().to_string_lossy().into_owned();
            if try_raise(&id, device) {
                return true;
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Raises the limits once islander has written all three (else its writes
/// would land after ours).
fn try_raise(id: &str, device: &str) -> bool {
    let dir = |c: &str| cgroup_mount(c).expect("hierarchy").join("islander").join(id);
    let read = |c: &str, f: &str| fs::read_to_string(dir(c).join(f)).unwrap_or_default();
    let throttle = format!("{device} {}", 10 * 1024 * 1024);
    let written = read("cpu", "cpu.cfs_quota_us").trim() == "50000"
        && read("memory", "memory.limit_in_bytes").trim() == (64 * 1024 * 1024).to_string()
        && read("blkio", "blkio.throttle.write_bps_device")
            .lines()
            .any(|l| l.trim() == throttle);
    if !written {
        return false;
    }
    let write = |c: &str, f: &str, v: &str| {
        fs::write(dir(c).join(f), v).unwrap_or_else(|e| panic!("raising {c}/{f} to {v}: {e}"));
    };
    write("cpu", "cpu.cfs_quota_us", "200000");
    // memsw may never be below the memory limit: raise it first.
    write("memory", "memory.memsw.limit_in_bytes", &(1u64 << 30).to_string());
    write("memory", "memory.limit_in_bytes", &(1u64 << 30).to_string());
    write(
        "blkio",
        "blkio.throttle.write_bps_device",
        &format!("{device} {}", 1u64 << 30),
    );
    true
}

/// verify stages its workload in the isle's layer directory; no trace of
/// it may stay once the isle is gone.
fn assert_no_verify_files(isl: &Islander) {
    let dir = isl.isles_lib_dir();
    let left: Vec<PathBuf> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert!(left.is_empty(), "{} still holds {left:?}", dir.display());
}
