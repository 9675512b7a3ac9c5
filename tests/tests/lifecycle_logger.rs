//! A detached isle's supervisor becomes `islander-logger` once the isle
//! runs: the same process (the isle's parent, holding its pipes), with only
//! the small program resident. What it must keep doing after the exec, and
//! what `run -d` does when the program is missing.

mod lifecycle_support;

use std::fs;
use std::process::Stdio;

use islander_tests::{islander_bin, islander_cgroup_entries, Islander, OutputExt};
use lifecycle_support::{describe, ps_all, start, supervisor_pid, wait_for_line, wait_one, wait_running};

/// `key:` of /proc/PID/status, in KiB or as the number it is.
fn status_field(pid: i64, key: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status:\n{status}"))
}

#[test]
fn the_supervisor_becomes_the_small_logger_and_keeps_its_duties() {
    let isl = Islander::new("lc-logger");
    let isle = start(
        &isl,
        &["--name", "watched"],
        &["sh", "-c", "echo to-out; echo to-err >&2; trap 'echo bye; exit 7' TERM; while :; do sleep 1; done"],
    );
    let row = wait_running(&isl, &isle.id);
    wait_for_line(&isl, &isle.id, "to-out");
    let sup = i64::from(supervisor_pid(&isl, &isle.id));
    let comm = fs::read_to_string(format!("/proc/{sup}/comm")).expect("the supervisor's comm");
    assert_eq!(comm.trim(), "islander-logger", "{}", describe(&isl, &isle.id));
    let exe = fs::read_link(format!("/proc/{sup}/exe")).expect("the supervisor's exe");
    assert_eq!(exe, islander_bin().with_file_name("islander-logger"));
    // Still the parent of the isle's PID 1, and small.
    let pid1 = row["pid"].as_i64().expect("a host pid");
    assert_eq!(status_field(pid1, "PPid:") as i64, sup, "the logger is PID 1's parent");
    // The release build's figures are in docs/benchmarks.md (about 2.5 MiB
    // idle); the tests' debug build is bigger, but far below the engine's.
    let rss = status_field(sup, "VmRSS:");
    assert!(rss <= 6 * 1024, "the idle logger holds {rss} KiB resident, more than 6 MiB");

    // It forwards nothing itself here (stop signals PID 1), but it sees the
    // exit, records the status and keeps logging until the end.
    isl.run(&["stop", "-t", "10", "watched"]).assert_success("stop watched");
    let done = wait_one(&isl, &isle.id);
    assert_eq!(done["status"], "exited(7)", "{done:#}\n{}", describe(&isl, &isle.id));
    let logs = isl.run(&["logs", "watched"]);
    logs.assert_success("logs watched");
    assert_eq!(logs.stdout_str(), "to-out\nbye\n");
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "to-err\n");
    // Its cgroups went with it.
    let cg = std::path::Path::new("/sys/fs/cgroup/memory/islander").join(&isle.id);
    assert!(!cg.exists(), "{} remains after the isle exited", cg.display());
    let sup_log = fs::read_to_string(isl.isles_lib_dir().join(&isle.id).join("supervisor.log")).unwrap_or_default();
    assert!(sup_log.trim().is_empty(), "the logger complained: {sup_log}");
}

#[test]
fn run_detached_without_islander_logger_fails_and_leaves_nothing() {
    let isl = Islander::exclusive("lc-no-logger");
    let before = islander_cgroup_entries();
    // islander alone, without its logger beside it.
    let bin = isl.root().join("lonely-bin");
    fs::create_dir(&bin).expect("mkdir");
    let lonely = bin.join("islander");
    fs::copy(islander_bin(), &lonely).expect("copy islander");
    let rootfs = lifecycle_support::rootfs(&isl);
    let out = std::process::Command::new(&lonely)
        .env_remove("ISLANDER_ROOT")
        .arg("--root")
        .arg(isl.root())
        .args(["run", "-d", "--rootfs"])
        .arg(&rootfs)
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .expect("run the lonely islander");
    assert_eq!(out.status.code(), Some(125), "{}", out.describe());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = bin.join("islander-logger");
    assert!(
        err.contains(&*want.to_string_lossy()) && err.contains("islander-logger"),
        "the error names the missing program: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(ps_all(&isl).is_empty(), "no isle was created");
    isl.assert_nothing_left(&before);
}

/// A tmpfs mounted over a directory for the life of the value.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: std::path::PathBuf, size: &str) -> SmallDisk {
        fs::create_dir_all(&dir).expect("mkdir the mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs on {}", dir.display());
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_drops_records_but_neither_stops_nor_kills_the_isle() {
    let isl = Islander::new("lc-full-disk");
    // The isles' layers and logs on a 2 MiB disk; records and the rootfs
    // elsewhere. The isle prints about 4 MiB of records' worth.
    let disk = SmallDisk::mount(isl.isles_lib_dir(), "2m");
    let isle = start(
        &isl,
        &[],
        &["sh", "-c", "i=0; while [ $i -lt 40000 ]; do echo \"line $i and some padding\"; i=$((i+1)); done; exit 3"],
    );
    let done = wait_one(&isl, &isle.id);
    assert_eq!(done["status"], "exited(3)", "the isle ran to its end: {done:#}\n{}", describe(&isl, &isle.id));
    let logs = isl.run(&["logs", &isle.id]);
    logs.assert_success("logs of the isle whose disk filled");
    let text = logs.stdout_str();
    assert!(text.starts_with("line 0 and some padding\n"), "the first lines are kept: {:?}", &text[..text.len().min(200)]);
    let kept = text.lines().count();
    assert!(kept > 1000 && kept < 40000, "some records were kept and some dropped: {kept}");
    // Whatever was kept is whole records, in order.
    let log = fs::read_to_string(isl.isles_lib_dir().join(&isle.id).join("log/isle.log")).expect("the log");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("a torn record {line:?}: {e}"));
    }
    let numbers: Vec<u64> = text.lines().map(|l| l.split(' ').nth(1).and_then(|n| n.parse().ok()).expect("a numbered line")).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "kept lines are in order");
    drop(isle);
    drop(disk);
}

#[test]
fn with_metrics_the_whole_supervisor_stays_and_serves_them() {
    use islander_tests::metrics::{free_addr, Scrape};
    let isl = Islander::new("lc-logger-metrics");
    let addr = free_addr();
    let isle = start(&isl, &["--metrics", &addr], &["sh", "-c", "echo up; while :; do sleep 1; done"]);
    wait_running(&isl, &isle.id);
    wait_for_line(&isl, &isle.id, "up");
    let sup = supervisor_pid(&isl, &isle.id);
    let comm = fs::read_to_string(format!("/proc/{sup}/comm")).expect("the supervisor's comm");
    assert_eq!(comm.trim(), "islander", "an isle with --metrics keeps the whole supervisor");
    let short = &isle.id[..12];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match Scrape::fetch(&addr) {
            Ok(s) if !s.find("islander_isle_cpu_usage_seconds_total", &[("isle", short)]).is_empty() => break,
            other => assert!(std::time::Instant::now() < deadline, "no metrics for {short} on {addr}: {other:?}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    isl.run(&["kill", "-s", "KILL", &isle.id]).assert_success("kill");
    let done = wait_one(&isl, &isle.id);
    assert_eq!(done["status"], "exited(137)", "{done:#}\n{}", describe(&isl, &isle.id));
    let cg = std::path::Path::new("/sys/fs/cgroup/memory/islander").join(&isle.id);
    assert!(!cg.exists(), "{} remains after the isle exited", cg.display());
}
