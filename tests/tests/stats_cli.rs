//! `islander stats`: the running isles of a root with sane figures, chosen
//! by name, id or prefix, as a table or JSON; unknown isles refused.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use islander_tests::metrics::{free_addr, helpers_rootfs, MIB};
use islander_tests::{Islander, OutputExt, RunningIsle};

/// A shell loop that burns CPU without a syscall, stopped when the isle's
/// stdin gets a line.
const BUSY: &str = "(while :; do :; done) &\nread x\nkill $!";

fn stats_json(isl: &Islander, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["stats", "--no-stream", "--format", "json"];
    args.extend_from_slice(extra);
    let out = isl.run(&args);
    out.assert_success(&format!("islander {}", args.join(" ")));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stats --format json is not JSON ({e}): {}", out.describe()));
    value
        .as_array()
        .unwrap_or_else(|| panic!("stats --format json is not a list: {value}"))
        .clone()
}

fn entry<'a>(list: &'a [serde_json::Value], isle: &RunningIsle) -> &'a serde_json::Value {
    list.iter()
        .find(|e| e["id"] == isle.id())
        .unwrap_or_else(|| panic!("isle {} not in {list:?}", isle.id()))
}

fn number(e: &serde_json::Value, field: &str) -> f64 {
    e[field]
        .as_f64()
        .unwrap_or_else(|| panic!("field {field} is not a number in {e}"))
}

#[test]
fn json_lists_the_running_isle_with_sane_numbers() {
    let isl = Islander::new("stats-json");
    let busy = isl.spawn(
        &[
            "--name",
            "stats-busy",
            "--cpu-quota",
            "50000",
            "--memory-in-bytes",
            "64M",
        ],
        "",
        BUSY,
    );
    let idle = isl.spawn(&[], "", "");
    let list = stats_json(&isl, &[]);
    assert_eq!(list.len(), 2, "two isles run: {list:?}");

    let e = entry(&list, &busy);
    assert_eq!(e["short_id"], busy.short_id());
    assert_eq!(e["name"], "stats-busy");
    assert_eq!(e["pid"].as_i64(), Some(busy.pid1() as i64));
    assert_eq!(number(e, "cpu_limit_cpus"), 0.5);
    // The loop wants a whole CPU and the quota allows half of one.
    let cpu = number(e, "cpu_percent");
    assert!(
        (60.0..=115.0).contains(&cpu),
        "a throttled busy loop uses {cpu}% of its quota: {e}"
    );
    let cpus = number(e, "cpu_cpus");
    assert!((0.3..=0.6).contains(&cpus), "cpu_cpus {cpus}: {e}");
    assert_eq!(number(e, "memory_limit_bytes"), (64 * MIB) as f64);
    let mem = number(e, "memory_usage_bytes");
    assert!(
        mem > 0.0 && mem <= (64 * MIB) as f64,
        "memory_usage_bytes {mem}: {e}"
    );
    let mem_pct = number(e, "memory_percent");
    assert!(
        (mem_pct - 100.0 * mem / (64 * MIB) as f64).abs() < 1e-6,
        "memory_percent {mem_pct} for {mem} of 64 MiB"
    );
    assert!(number(e, "pids") >= 2.0, "sh and its loop: {e}");
    assert_eq!(number(e, "oom_kills"), 0.0);
    // With or without the observer, the eBPF fields are typed as documented.
    if e["ebpf"] == true {
        for f in [
            "block_write_bytes_per_second",
            "network_transmit_bytes_per_second",
            "syscalls_per_second",
        ] {
            assert!(number(e, f) >= 0.0, "{f}: {e}");
        }
        assert!(
            e["top_syscalls"].as_array().is_some_and(|t| t.len() <= 3),
            "{e}"
        );
    } else {
        assert!(
            e["top_syscalls"].is_null() && e["syscalls_per_second"].is_null(),
            "{e}"
        );
    }

    let i = entry(&list, &idle);
    assert!(i["name"].is_null(), "{i}");
    assert_eq!(
        number(i, "cpu_limit_cpus"),
        10.0,
        "the default quota is 1000000/100000"
    );
    assert!(
        number(i, "cpu_percent") < 5.0,
        "an isle waiting in `read` is idle: {i}"
    );
    assert_eq!(number(i, "memory_limit_bytes"), (500 * MIB) as f64);

    busy.finish().assert_success("busy isle");
    idle.finish().assert_success("idle isle");
    let after = stats_json(&isl, &[]);
    assert!(after.is_empty(), "ended isles are still listed: {after:?}");
}

#[test]
fn isles_are_chosen_by_name_id_and_prefix() {
    let isl = Islander::new("stats-select");
    let a = isl.spawn(&["--name", "stats-a"], "", "");
    let b = isl.spawn(&[], "", "");
    let ids = |list: Vec<serde_json::Value>| -> Vec<String> {
        list.iter()
            .map(|e| e["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        ids(stats_json(&isl, &["stats-a"])),
        vec![a.id().to_string()]
    );
    assert_eq!(ids(stats_json(&isl, &[b.id()])), vec![b.id().to_string()]);
    assert_eq!(
        ids(stats_json(&isl, &[b.short_id()])),
        vec![b.id().to_string()]
    );
    let both = ids(stats_json(&isl, &[&b.id()[..8], "stats-a"]));
    assert_eq!(both.len(), 2, "{both:?}");

    let out = isl.run(&["stats", "--no-stream", "stats-a", "nosuch"]);
    out.assert_code(125, "stats of an unknown isle");
    assert!(
        out.stderr_str()
            .starts_with("islander: no such isle 'nosuch'"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is printed before the error: {}",
        out.describe()
    );

    let out = isl.run(&["stats", "--no-stream", "--format", "yaml"]);
    out.assert_code(125, "stats --format yaml");
    assert!(out.stderr_str().contains("yaml"), "{}", out.describe());

    a.finish().assert_success("isle a");
    b.finish().assert_success("isle b");
}

#[test]
fn the_table_has_a_row_per_isle() {
    let isl = Islander::new("stats-table");
    let isle = isl.spawn(&["--name", "stats-row", "--memory-in-bytes", "64M"], "", "");
    let out = isl.run(&["stats", "--no-stream"]);
    out.assert_success("islander stats --no-stream");
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row: {text}");
    for column in [
        "ISLE",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "BLOCK R / W",
        "NET RX / TX",
        "PIDS",
        "TOP SYSCALLS",
    ] {
        assert!(lines[0].contains(column), "no column {column}: {text}");
    }
    assert!(lines[1].starts_with(isle.short_id()), "{text}");
    assert!(
        lines[1].contains("stats-row") && lines[1].contains("/ 64MiB"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "--no-stream does not clear the screen: {text:?}"
    );
    isle.finish().assert_success("the isle");
}

/// Kills the streaming `islander stats` however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn streaming_refreshes_every_second() {
    let isl = Islander::new("stats-stream");
    let isle = isl.spawn(&["--name", "stats-stream"], "", "");

    // JSON: one list per line and refresh.
    let mut child = KillOnDrop(
        isl.cmd()
            .args(["stats", "--format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start islander stats"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut times = Vec::new();
    for _ in 0..3 {
        let (at, line) = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a refresh of islander stats --format json");
        let list: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(list[0]["id"], isle.id(), "{line}");
        assert!(
            list[0]["cpu_percent"].is_number(),
            "rates are known from the first line on: {line}"
        );
        times.push(at);
    }
    let gap = times[2].duration_since(times[1]);
    assert!(
        gap >= Duration::from_millis(500) && gap <= Duration::from_secs(5),
        "refreshes {gap:?} apart"
    );
    drop(child);

    // The table clears the screen before each refresh.
    let mut child = KillOnDrop(
        isl.cmd()
            .args(["stats", "stats-stream"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start islander stats"),
    );
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, chunks) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while text.matches("\x1b[2J").count() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = chunks
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no second refresh of the table; got {text:?}"));
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        text.contains(isle.short_id()) && text.contains("TOP SYSCALLS"),
        "{text:?}"
    );
    drop(child);

    isle.finish().assert_success("the isle");
}

#[test]
fn the_busiest_syscall_is_shown_with_its_rate() {
    let isl = Islander::new("stats-syscalls");
    let rootfs = helpers_rootfs();
    // --metrics has the isle counted by the eBPF observer from its start.
    let addr = free_addr();
    let isle = isl.spawn(
        &[
            "--rootfs",
            rootfs.to_str().expect("UTF-8 path"),
            "--metrics",
            &addr,
        ],
        "",
        "/helpers/getpid_n 1000000000000 &\nread x\nkill $!",
    );
    let list = stats_json(&isl, &[isle.short_id()]);
    let e = entry(&list, &isle);
    assert_eq!(
        e["ebpf"], true,
        "the observer counts an isle run with --metrics: {e}"
    );
    let top = e["top_syscalls"]
        .as_array()
        .unwrap_or_else(|| panic!("no top_syscalls: {e}"));
    assert_eq!(top[0]["syscall"], "getpid", "{e}");
    let rate = number(&top[0], "per_second");
    // A bare getpid takes well under a microsecond; even throttled and
    // observed, a loop makes far more than 10k a second.
    assert!(rate > 10_000.0, "getpid at {rate}/s: {e}");
    assert!(number(e, "syscalls_per_second") >= rate, "{e}");

    let out = isl.run(&["stats", "--no-stream", isle.short_id()]);
    out.assert_success("islander stats --no-stream");
    let text = out.stdout_str();
    let row = text.lines().nth(1).unwrap_or_default();
    let syscalls = row.rsplit("   ").next().unwrap_or_default();
    assert!(
        syscalls.starts_with("getpid "),
        "TOP SYSCALLS should start with getpid: {text}"
    );
    isle.finish().assert_success("the isle");
}
