//! The lifecycle verbs on detached isles: ps, stop, kill, rm (delete) and
//! inspect, checked against what the host shows.

mod lifecycle_support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use islander_tests::{Islander, OutputExt};
use lifecycle_support::{ps_all, row, start, supervisor_pid, wait_for_line, wait_one, wait_running};
use serde_json::Value;

/// The last pid of `NSpid:` in /proc/PID/status: the pid in its own namespace.
fn innermost_pid(pid: i64) -> Option<i64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[test]
fn ps_lists_running_isles_and_with_all_the_exited_ones() {
    let isl = Islander::new("lc-ps");
    let web = start(
        &isl,
        &[
            "--name",
            "web",
            "--memory-in-bytes",
            "64M",
            "--cpu-quota",
            "50000",
        ],
        &["sleep", "1000"],
    );
    let done = start(&isl, &[], &["sh", "-c", "exit 3"]);
    wait_one(&isl, &done.id);
    let r = wait_running(&isl, &web.id);

    let out = isl.run(&["ps", "--format", "json"]);
    out.assert_success("ps --format json");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        rows.len(),
        1,
        "ps without -a shows only running isles: {rows:#?}"
    );
    let w = &rows[0];
    assert_eq!(w["id"], web.id.as_str());
    assert_eq!(w["name"], "web");
    assert_eq!(w["status"], "running");
    assert_eq!(w["command"], serde_json::json!(["sleep", "1000"]));
    assert!(w["uptime_seconds"].is_u64(), "{w:#}");
    let pid = w["pid"].as_i64().expect("a host pid");
    assert_eq!(
        innermost_pid(pid),
        Some(1),
        "ps's PID is the host pid of the isle's PID 1"
    );
    assert_eq!(w["limits"]["memory_bytes"], 64 << 20);
    assert_eq!(w["limits"]["cpus"], 0.5);
    let summary = w["limits_summary"].as_str().unwrap();
    assert!(
        summary.contains("mem 64M") && summary.contains("cpu 0.50"),
        "{summary}"
    );
    assert_eq!(r["rootfs"], w["rootfs"]);

    let all = ps_all(&isl);
    assert_eq!(all.len(), 2);
    let d = all
        .iter()
        .find(|r| r["id"] == done.id.as_str())
        .expect("the exited isle in ps -a");
    assert_eq!(
        (
            d["status"].as_str(),
            d["exit_code"].as_i64(),
            d["pid"].is_null()
        ),
        (Some("exited(3)"), Some(3), true)
    );
    assert!(d["uptime_seconds"].is_null());

    let table = isl.run(&["ps", "-a"]);
    table.assert_success("ps -a");
    let text = table.stdout_str();
    let header = text.lines().next().unwrap();
    for col in [
        "ID", "NAME", "PID", "IMAGE", "COMMAND", "STATUS", "CREATED", "UPTIME", "LIMITS",
    ] {
        assert!(header.contains(col), "column {col} in {header:?}");
    }
    assert!(
        text.lines().any(|l| l.starts_with(web.short())
            && l.contains("running")
            && l.contains("\"sleep 1000\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(done.short()) && l.contains("exited(3)")),
        "{text}"
    );
    let quiet = isl.run(&["ps", "-q"]);
    assert_eq!(quiet.stdout_str(), format!("{}\n", web.short()));
}

#[test]
fn an_oom_killed_isle_says_so() {
    let isl = Islander::new("lc-oom");
    let isle = start(&isl, &["--memory-in-bytes", "16M"], &["lc", "hog", "256"]);
    let r = wait_one(&isl, &isle.id);
    assert_eq!(r["status"], "oom-killed", "{r:#}");
    assert_eq!(r["oom_killed"], true);
}

#[test]
fn stop_sends_term_and_kills_after_the_grace_time() {
    let isl = Islander::new("lc-stop");
    // A TERM handler: stop returns as soon as the isle has ended.
    let polite = start(
        &isl,
        &["--name", "polite"],
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    wait_for_line(&isl, &polite.id, "ready");
    let begin = Instant::now();
    let out = isl.run(&["stop", "polite"]);
    out.assert_success("stop polite");
    assert_eq!(
        out.stdout_str(),
        "polite\n",
        "stop prints what it was given"
    );
    assert!(
        begin.elapsed() < Duration::from_secs(8),
        "a trapped TERM took {:?}",
        begin.elapsed()
    );
    // The exit is recorded when stop returns.
    assert_eq!(row(&isl, &polite.id)["status"], "exited(42)");

    // PID 1 without a handler ignores TERM: SIGKILL after -t.
    let stubborn = start(&isl, &[], &["sh", "-c", "while :; do sleep 0.1; done"]);
    wait_running(&isl, &stubborn.id);
    let begin = Instant::now();
    isl.run(&["stop", "-t", "1", &stubborn.id[..8]])
        .assert_success("stop -t 1");
    let took = begin.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(9),
        "stop -t 1 took {took:?}"
    );
    assert_eq!(row(&isl, &stubborn.id)["status"], "exited(137)");
}

#[test]
fn kill_sends_the_signal_given() {
    let isl = Islander::new("lc-kill");
    let script =
        "trap 'exit 10' USR1; trap 'exit 15' TERM; echo ready; while :; do sleep 0.1; done";
    for (sig, want) in [
        ("usr1", "exited(10)"),
        ("SIGTERM", "exited(15)"),
        ("15", "exited(15)"),
        ("", "exited(137)"),
    ] {
        let isle = start(&isl, &[], &["sh", "-c", script]);
        wait_for_line(&isl, &isle.id, "ready");
        let mut args = vec!["kill"];
        if !sig.is_empty() {
            args.extend(["-s", sig]);
        }
        args.push(&isle.id);
        let out = isl.run(&args);
        out.assert_success(&args.join(" "));
        assert_eq!(out.stdout_str(), format!("{}\n", isle.id));
        let r = wait_one(&isl, &isle.id);
        assert_eq!(r["status"], want, "kill -s {sig:?}");
    }
}

#[test]
fn rm_removes_every_trace() {
    let isl = Islander::new("lc-rm");
    let isle = start(
        &isl,
        &["--name", "gone"],
        &["sh", "-c", "echo data > /tmp/x; echo logged"],
    );
    wait_one(&isl, &isle.id);
    let layer = isl.isles_lib_dir().join(&isle.id);
    assert!(
        layer.join("upper/tmp/x").is_file(),
        "the layer keeps the isle's writes until rm"
    );
    assert!(
        layer.join("log/isle.log").is_file(),
        "the log stays until rm"
    );
    let out = isl.run(&["rm", "gone"]);
    out.assert_success("rm gone");
    assert_eq!(out.stdout_str(), "gone\n");
    isl.assert_no_leftovers(&isle.id);
    assert!(!ps_all(&isl).iter().any(|r| r["id"] == isle.id.as_str()));

    // Forced: a running isle is killed, then removed; `delete` is `rm`.
    let live = start(&isl, &[], &["sh", "-c", "sleep 1000 & sleep 1000"]);
    wait_running(&isl, &live.id);
    isl.run(&["delete", "-f", live.short()])
        .assert_success("delete -f");
    isl.assert_no_leftovers(&live.id);
    // The name is free again.
    let again = start(&isl, &["--name", "gone"], &["true"]);
    wait_one(&isl, &again.id);
}

/// Polls until isle `id`'s record is gone (its `--rm` removal ran).
fn wait_removed(isl: &Islander, id: &str) {
    let record = isl.isles_run_dir().join(id);
    let deadline = Instant::now() + Duration::from_secs(60);
    // `ps` also reconciles: it removes an --rm isle whose supervisor died.
    loop {
        let listed = ps_all(isl).iter().any(|r| r["id"] == id);
        if !listed && !record.exists() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "isle {id} (--rm) was not removed within 60 s: {}\nps -a: {}",
            lifecycle_support::describe(isl, id),
            isl.run(&["ps", "-a"]).describe()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_rm_removes_the_isle_when_it_ends_however_it_ends() {
    let isl = Islander::new("lc-run-rm");
    // It ends by itself: record, layer (its writes, its log) and cgroups go.
    let brief = start(&isl, &["--rm", "--name", "brief"], &["sh", "-c", "echo data > /tmp/x; echo bye"]);
    wait_removed(&isl, &brief.id);
    isl.assert_no_leftovers(&brief.id);
    let logs = isl.run(&["logs", "brief"]);
    assert!(!logs.status.success(), "logs of a removed isle: {}", logs.describe());
    assert!(String::from_utf8_lossy(&logs.stderr).contains("no such isle"), "{}", logs.describe());
    // Its name is free again.
    let again = start(&isl, &["--name", "brief"], &["true"]);
    wait_one(&isl, &again.id);

    // Stopped: gone once stop returns and the logger has cleaned up.
    let stopped = start(&isl, &["--rm"], &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]);
    wait_running(&isl, &stopped.id);
    let shown: Value = serde_json::from_slice(&isl.run(&["inspect", stopped.short()]).stdout).expect("inspect's JSON");
    assert_eq!(shown[0]["auto_remove"], true, "inspect shows --rm: {shown:#}");
    isl.run(&["stop", "-t", "10", stopped.short()]).assert_success("stop an --rm isle");
    wait_removed(&isl, &stopped.id);
    isl.assert_no_leftovers(&stopped.id);

    // Its logger killed: the isle goes with it (parent-death signal), and
    // the next command that looks removes what the logger no longer can.
    let orphan = start(&isl, &["--rm"], &["sh", "-c", "sleep 1000"]);
    wait_running(&isl, &orphan.id);
    let sup = supervisor_pid(&isl, &orphan.id);
    // SAFETY: kill(2) on a pid this test read from the isle's record.
    assert_eq!(unsafe { libc::kill(sup, libc::SIGKILL) }, 0, "kill -9 the logger {sup}");
    wait_removed(&isl, &orphan.id);
    isl.assert_no_leftovers(&orphan.id);

    // In the foreground --rm is what happens anyway; the exit code passes.
    let rootfs = lifecycle_support::rootfs(&isl);
    let fg = isl.run(&["run", "--rm", "--rootfs", rootfs.to_str().unwrap(), "sh", "-c", "echo fg; exit 3"]);
    assert_eq!(fg.status.code(), Some(3), "{}", fg.describe());
    assert_eq!(fg.stdout_str(), "fg\n");
    assert!(ps_all(&isl).is_empty() || ps_all(&isl).iter().all(|r| r["id"] == again.id.as_str()), "only the named isle is left: {:?}", ps_all(&isl));
}

#[test]
fn inspect_shows_state_spec_pids_cgroups_mounts_and_log() {
    let isl = Islander::new("lc-inspect");
    let isle = start(
        &isl,
        &["--name", "seen", "--memory-in-bytes", "100M"],
        &["sh", "-c", "sleep 1000 & echo hi; sleep 1000"],
    );
    wait_for_line(&isl, &isle.id, "hi");
    let r = wait_running(&isl, &isle.id);
    let out = isl.run(&["inspect", "seen"]);
    out.assert_success("inspect seen");
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    assert_eq!(all.len(), 1);
    let i = &all[0];
    assert_eq!(i["id"], isle.id.as_str());
    assert_eq!(i["name"], "seen");
    assert_eq!(i["state"]["status"], "running");
    assert_eq!(i["state"]["pid"], r["pid"]);
    let pids: Vec<i64> = i["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    assert!(
        pids.len() >= 2 && pids.contains(&r["pid"].as_i64().unwrap()),
        "all of the isle's processes: {pids:?}"
    );
    let cgroups: Vec<&str> = i["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        cgroups.iter().any(|p| p.contains("memory"))
            && cgroups.iter().all(|p| p.ends_with(&isle.id)),
        "{cgroups:?}"
    );
    let pid1 = r["pid"].to_string();
    for p in &cgroups {
        let procs = fs::read_to_string(Path::new(p).join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|l| l.trim() == pid1), "PID 1 in {p}");
    }
    let mounts = i["mounts"].as_array().unwrap();
    let at = |mp: &str| {
        mounts
            .iter()
            .find(|m| m["mount_point"] == mp)
            .map(|m| m["fstype"].as_str().unwrap().to_string())
    };
    assert_eq!(at("/").as_deref(), Some("overlay"), "{mounts:#?}");
    assert_eq!(at("/proc").as_deref(), Some("proc"));
    assert_eq!(i["limits"]["memory_bytes"], 100 << 20);
    assert_eq!(
        i["spec"]["process"]["args"],
        serde_json::json!(["sh", "-c", "sleep 1000 & echo hi; sleep 1000"])
    );
    assert_eq!(
        i["spec"]["linux"]["resources"]["memory"]["limit"],
        100 << 20
    );
    let log = Path::new(i["log"]["path"].as_str().unwrap());
    assert!(
        log.is_file()
            && fs::read_to_string(log)
                .unwrap()
                .contains("\"log\":\"hi\\n\""),
        "{}",
        log.display()
    );

    // Several at once, by prefix too; after the end no processes or cgroups.
    isl.run(&["kill", "seen"]).assert_success("kill");
    wait_one(&isl, &isle.id);
    let other = start(&isl, &[], &["true"]);
    wait_one(&isl, &other.id);
    let out = isl.run(&["inspect", &isle.id[..10], "seen", other.short()]);
    out.assert_success("inspect of two isles");
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(all.len(), 2, "the same isle named twice is shown once");
    assert_eq!(all[0]["state"]["status_text"], "exited(137)");
    assert_eq!(all[0]["pids"], serde_json::json!([]));
    assert_eq!(all[0]["cgroups"], serde_json::json!([]));
    assert_eq!(all[0]["mounts"], serde_json::json!([]));
    assert_eq!(all[1]["id"], other.id.as_str());
}
