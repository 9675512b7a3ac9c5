//! Detached isles and their logs: every line kept once and in order, `-f`
//! following live, rotation bounds, and a logger that outlives the CLI.

mod lifecycle_support;

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use islander_tests::{Islander, OutputExt, RUN_TIMEOUT};
use lifecycle_support::{seq_text, start, wait_exited, wait_one, wait_running};
use serde_json::Value;

const LINES: usize = 100_000;
const ISLES: usize = 20;

#[test]
fn twenty_isles_log_every_line_once_and_in_order() {
    let isl = Islander::new("lc-twenty");
    let n = LINES.to_string();
    let isles: Vec<_> = (0..ISLES)
        .map(|_| start(&isl, &[], &["lc", "seq", &n]))
        .collect();
    let ids: Vec<&str> = isles.iter().map(|i| i.id.as_str()).collect();
    let rows = wait_exited(&isl, &ids, Duration::from_secs(600));
    for r in &rows {
        let id = r["id"].as_str().unwrap_or_default();
        assert_eq!(
            r["status"],
            "exited(0)",
            "{r:#}\n{}",
            lifecycle_support::describe(&isl, id)
        );
    }
    let want_out = seq_text("out", LINES);
    let want_err = seq_text("err", LINES);
    // Two readers at a time: `islander logs` parses 200,000 records each.
    let isl_ref = &isl;
    thread::scope(|s| {
        for chunk in ids.chunks(ISLES.div_ceil(2)) {
            let (want_out, want_err) = (&want_out, &want_err);
            s.spawn(move || {
                for id in chunk {
                    let out = isl_ref.run(&["logs", id]);
                    out.assert_success(&format!("islander logs {id}"));
                    check_stream(&out.stdout_str(), want_out, &format!("stdout of isle {id}"));
                    check_stream(&out.stderr_str(), want_err, &format!("stderr of isle {id}"));
                }
            });
        }
    });
    // The files are Docker's json-file format.
    let log = isl.isles_lib_dir().join(ids[0]).join("log/isle.log");
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let first: Value =
        serde_json::from_str(text.lines().next().expect("a record")).expect("a JSON record");
    assert!(
        first["log"].is_string() && (first["stream"] == "stdout" || first["stream"] == "stderr"),
        "{first}"
    );
    assert_rfc3339_nanos(first["time"].as_str().expect("a time string"));
    assert_eq!(
        text.lines().count(),
        2 * LINES,
        "one record per line in {}",
        log.display()
    );
}

/// `got` equals `want` line for line; otherwise says where they part.
fn check_stream(got: &str, want: &str, what: &str) {
    if got == want {
        return;
    }
    let got_lines: Vec<&str> = got.lines().collect();
    let want_lines: Vec<&str> = want.lines().collect();
    let seen: HashSet<&str> = got_lines.iter().copied().collect();
    let lost = want_lines.iter().filter(|l| !seen.contains(*l)).count();
    let twice = got_lines.len() - seen.len();
    let first_diff = got_lines.iter().zip(&want_lines).position(|(a, b)| a != b);
    panic!(
        "{what}: {} lines instead of {}; {lost} lost, {twice} repeated; first difference at line {first_diff:?}",
        got_lines.len(),
        want_lines.len()
    );
}

fn assert_rfc3339_nanos(t: &str) {
    // 2026-12-01T20:14:16.524975824Z
    let b = t.as_bytes();
    let ok = b.len() == 30
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[29] == b'Z'
        && b[20..29].iter().all(u8::is_ascii_digit);
    assert!(ok, "'{t}' is not an RFC 3339 UTC time with nanoseconds");
}

#[test]
fn follow_prints_records_as_they_arrive_and_returns_when_the_isle_ends() {
    let isl = Islander::new("lc-follow");
    let isle = start(
        &isl,
        &[],
        &[
            "sh",
            "-c",
            "i=0; while :; do echo \"tick $i\"; i=$((i+1)); sleep 0.1; done",
        ],
    );
    let mut follower = isl
        .cmd()
        .args(["logs", "-f", &isle.id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn islander logs -f");
    let (tx, rx) = mpsc::channel();
    let stdout = follower.stdout.take().expect("piped");
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut got: Vec<(Instant, String)> = Vec::new();
    let deadline = Instant::now() + RUN_TIMEOUT;
    while got.len() < 10 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(item) => got.push(item),
            Err(e) => panic!(
                "logs -f printed {} lines, then nothing ({e:?}): {got:?}",
                got.len()
            ),
        }
    }
    // Lines arrive as the isle prints them (every 0.1 s), not at once.
    let spread = got.last().unwrap().0 - got.first().unwrap().0;
    assert!(
        spread >= Duration::from_millis(300),
        "10 lines within {spread:?}: not followed live"
    );
    assert!(
        follower.try_wait().expect("try_wait").is_none(),
        "logs -f ended while the isle runs"
    );

    // PID 1 (sh) has no TERM handler, so stop kills it after 1 s.
    isl.run(&["stop", "-t", "1", &isle.id])
        .assert_success("islander stop");
    let status = wait_child(&mut follower, RUN_TIMEOUT)
        .expect("logs -f did not return after the isle ended");
    assert!(status.success(), "logs -f exited with {status}");
    reader.join().expect("reader thread");
    got.extend(rx.try_iter());
    let followed: String = got.iter().map(|(_, l)| format!("{l}\n")).collect();
    let all = isl.run(&["logs", &isle.id]);
    all.assert_success("islander logs");
    assert!(
        all.stdout_str().ends_with(&followed),
        "logs -f (started at the beginning) printed other lines than the log holds:\nfollowed:\n{followed}\nlog:\n{}",
        all.stdout_str()
    );
    assert!(
        followed.starts_with("tick 0\n"),
        "logs -f without --tail starts at the first record: {followed}"
    );
}

fn wait_child(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tail_since_until_and_timestamps_select_records() {
    let isl = Islander::new("lc-select");
    // Two bursts a second apart, so a time between them splits the log.
    let isle = start(
        &isl,
        &[],
        &[
            "sh",
            "-c",
            "echo a1; echo a2 >&2; echo a3; sleep 1.5; echo b1; echo b2 >&2",
        ],
    );
    wait_one(&isl, &isle.id);
    let t = isl.run(&["logs", "-t", &isle.id]);
    t.assert_success("logs -t");
    let lines: Vec<String> = t.stdout_str().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "stdout records with -t: {lines:?}");
    let (time_b1, text_b1) = lines[2].split_once(' ').expect("TIME TEXT");
    assert_rfc3339_nanos(time_b1);
    assert_eq!(text_b1, "b1");
    assert!(t
        .stderr_str()
        .lines()
        .all(|l| l.split_once(' ').is_some_and(|(ts, _)| ts.len() == 30)));

    let out = isl.run(&["logs", "--since", time_b1, &isle.id]);
    assert_eq!(
        (out.stdout_str().as_str(), out.stderr_str().as_str()),
        ("b1\n", "b2\n"),
        "--since {time_b1}"
    );
    let out = isl.run(&["logs", "--until", time_b1, &isle.id]);
    assert_eq!(
        (out.stdout_str().as_str(), out.stderr_str().as_str()),
        ("a1\na3\nb1\n", "a2\n"),
        "--until {time_b1}"
    );
    let out = isl.run(&["logs", "--tail", "2", &isle.id]);
    assert_eq!(
        (out.stdout_str().as_str(), out.stderr_str().as_str()),
        ("b1\n", "b2\n"),
        "--tail 2"
    );
    let out = isl.run(&["logs", "--tail", "0", &isle.id]);
    assert_eq!(out.stdout_str() + &out.stderr_str(), "", "--tail 0");
    let out = isl.run(&["logs", "--tail", "all", &isle.id]);
    assert_eq!(out.stdout_str(), "a1\na3\nb1\n", "--tail all");
    let out = isl.run(&["logs", "--since", "1h", &isle.id]);
    assert_eq!(out.stdout_str(), "a1\na3\nb1\n", "--since 1h");
    // -f of an isle that has ended prints the log and returns.
    let out = isl.run(&["logs", "-f", "--tail", "1", &isle.id]);
    out.assert_success("logs -f of an exited isle");
    assert_eq!(out.stdout_str() + &out.stderr_str(), "b2\n");

    for (args, bad) in [
        (vec!["--tail", "x"], "'x'"),
        (vec!["--since", "yesterday"], "'yesterday'"),
        (vec!["--until", "5q"], "'5q'"),
    ] {
        let mut argv = vec!["logs"];
        argv.extend(args.iter());
        argv.push(&isle.id);
        lifecycle_support::assert_one_line_error(&isl.run(&argv), bad, &argv.join(" "));
    }
}

#[test]
fn rotation_keeps_at_most_max_file_files_of_max_size() {
    let isl = Islander::new("lc-rotate");
    let n = 20_000;
    let isle = start(
        &isl,
        &["--log-max-size", "64k", "--log-max-file", "3"],
        &["lc", "seq", &n.to_string()],
    );
    let r = wait_one(&isl, &isle.id);
    assert_eq!(r["status"], "exited(0)");
    let dir = isl.isles_lib_dir().join(&isle.id).join("log");
    let files: Vec<_> = fs::read_dir(&dir)
        .expect("log dir")
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        !files.is_empty() && files.len() <= 3,
        "{} log files: {files:?}",
        files.len()
    );
    for f in &files {
        let size = fs::metadata(f).unwrap().len();
        assert!(
            size <= 64 * 1024,
            "{} holds {size} bytes, more than --log-max-size 64k",
            f.display()
        );
    }
    assert!(
        files.iter().any(|f| f.ends_with("isle.log.2")),
        "20,000 pairs of lines fill more than 3 files: {files:?}"
    );
    // Rotation drops the oldest files, so what is kept of each stream is its
    // end, whole and in order. (The logger drains one pipe a chunk at a
    // time, so the newest files may hold only one of the streams.)
    let out = isl.run(&["logs", &isle.id]);
    out.assert_success("islander logs");
    let mut kept = 0;
    for (stream, text) in [("out", out.stdout_str()), ("err", out.stderr_str())] {
        let nums: Vec<usize> = text
            .lines()
            .map(|l| {
                l.strip_prefix(&format!("{stream} "))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("odd line {l:?}"))
            })
            .collect();
        kept += nums.len();
        if let Some(last) = nums.last() {
            assert_eq!(*last, n - 1, "{stream}: the newest line is kept");
            assert!(
                nums.windows(2).all(|w| w[1] == w[0] + 1),
                "{stream}: kept lines are consecutive"
            );
        }
    }
    assert!(kept > 0 && kept < 2 * n, "{kept} of {} records kept", 2 * n);
}

#[test]
fn killing_the_cli_stops_neither_the_isle_nor_its_logging() {
    let isl = Islander::new("lc-cli-kill");
    let rootfs = lifecycle_support::rootfs(&isl);
    let n = 20_000;
    // The CLI in a process group of its own, so that kill -9 of the group
    // hits it and anything it left in there.
    let mut cli = {
        use std::os::unix::process::CommandExt;
        isl.cmd()
            .args([
                "run",
                "-d",
                "--name",
                "survivor",
                "--rootfs",
                rootfs.to_str().unwrap(),
                "lc",
                "seq",
                &n.to_string(),
                "100",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn islander run -d")
    };
    let cli_pid = cli.id() as i32;
    // Killed as soon as the isle's record says it runs: at that moment the
    // CLI is waiting for its supervisor's answer, or has just had it.
    let deadline = Instant::now() + RUN_TIMEOUT;
    let id = loop {
        let running = fs::read_dir(isl.isles_run_dir())
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let rec: Value =
                    serde_json::from_slice(&fs::read(e.path().join("state.json")).ok()?).ok()?;
                (rec["status"] == "running").then(|| rec["id"].as_str().unwrap().to_string())
            });
        if let Some(id) = running {
            break id;
        }
        assert!(Instant::now() < deadline, "no isle started");
        thread::sleep(Duration::from_millis(2));
    };
    // SAFETY: kill(2) of the process group we made for the CLI.
    unsafe { libc::kill(-cli_pid, libc::SIGKILL) };
    let _ = cli.wait();
    let guard = lifecycle_support::Isle {
        isl: &isl,
        id: id.clone(),
    };

    let r = wait_running(&isl, &id);
    let inspect = isl.run(&["inspect", "survivor"]);
    inspect.assert_success("inspect");
    let info: Value = serde_json::from_slice(&inspect.stdout).expect("inspect JSON");
    let supervisor = info[0]["state"]["supervisor_pid"]
        .as_i64()
        .expect("supervisor pid") as i32;
    assert!(
        info[0]["state"]["supervisor_alive"] == true,
        "the supervisor died with the CLI: {info:#}"
    );
    // Not the CLI's child, nor in its session or process group.
    let stat = fs::read_to_string(format!("/proc/{supervisor}/stat")).expect("supervisor stat");
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let (ppid, pgrp, sid): (i32, i32, i32) = (
        fields[1].parse().unwrap(),
        fields[2].parse().unwrap(),
        fields[3].parse().unwrap(),
    );
    assert_ne!(ppid, cli_pid, "the supervisor is the CLI's child");
    assert_ne!(
        pgrp, cli_pid,
        "the supervisor is in the CLI's process group"
    );
    assert_eq!(sid, supervisor, "the supervisor leads a session of its own");
    assert!(
        r["pid"].is_i64(),
        "the isle runs after the CLI's death: {r:#}"
    );

    let r = wait_one(&isl, &id);
    assert_eq!(r["status"], "exited(0)", "{r:#}");
    let out = isl.run(&["logs", "survivor"]);
    out.assert_success("islander logs");
    check_stream(&out.stdout_str(), &seq_text("out", n), "stdout");
    check_stream(&out.stderr_str(), &seq_text("err", n), "stderr");
    drop(guard);
}

#[test]
fn a_foreground_isle_is_logged_while_shown_and_leaves_no_log() {
    let isl = Islander::new("lc-foreground");
    let rootfs = lifecycle_support::rootfs(&isl);
    let mut fg = isl
        .cmd()
        .args([
            "run",
            "-i",
            "--name",
            "fg",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "sh",
            "-c",
            "echo shown; echo oops >&2; read x; exit 0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a foreground isle");
    let mut lines = BufReader::new(fg.stdout.take().unwrap()).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("shown"),
        "shown live"
    );
    // The same output is in its log while it runs.
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let out = isl.run(&["logs", "fg"]);
        if out.status.success() && out.stdout_str() == "shown\n" && out.stderr_str() == "oops\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the foreground isle's log: {}",
            out.describe()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let id = lifecycle_support::ps_all(&isl)
        .into_iter()
        .find(|r| r["name"] == "fg")
        .expect("the foreground isle is in ps")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    drop(fg.stdin.take());
    let status = wait_child(&mut fg, RUN_TIMEOUT).expect("the foreground isle ends");
    assert!(status.success());
    isl.assert_no_leftovers(&id);
}
