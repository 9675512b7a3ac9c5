//! `islander run --metrics`: what /metrics reports matches what the isle
//! did, counted by a helper program of tests/helpers that does exactly a
//! known amount of work and then holds, so the isle is still running (and
//! served) when the test scrapes.

use std::time::Duration;

use islander_tests::metrics::{expect_line, free_addr, helpers_rootfs, poll, Scrape, MIB};
use islander_tests::{Islander, OutputExt, RunningIsle};

/// A helper's work takes well under this even on two busy cores.
const WORK_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a count may take to show up in a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

fn rootfs() -> String {
    helpers_rootfs().to_str().expect("UTF-8 path").to_string()
}

/// Starts an isle on the helpers rootfs, serving /metrics on a free port,
/// that runs `script` after the harness's report.
fn start(isl: &Islander, extra: &[&str], script: &str) -> (RunningIsle, String) {
    let addr = free_addr();
    let root = rootfs();
    let mut opts = vec!["--rootfs", root.as_str(), "--metrics", addr.as_str()];
    opts.extend_from_slice(extra);
    let isle = isl.spawn(&opts, "", script);
    (isle, addr)
}

fn scrape(addr: &str) -> Scrape {
    poll(
        SCRAPE_TIMEOUT,
        &format!("GET http://{addr}/metrics"),
        || Scrape::fetch(addr),
    )
}

/// The value of `family{isle=<isle>, extra...}` summed over its other
/// labels, polled until `ready` holds for it.
fn wait_value(
    addr: &str,
    isle: &RunningIsle,
    family: &str,
    extra: &[(&str, &str)],
    ready: impl Fn(f64) -> bool,
) -> f64 {
    let mut labels = vec![("isle", isle.short_id())];
    labels.extend_from_slice(extra);
    poll(
        SCRAPE_TIMEOUT,
        &format!("{family}{extra:?} of isle {}", isle.short_id()),
        || {
            let s = Scrape::fetch(addr)?;
            match s.sum(family, &labels) {
                Some(v) if ready(v) => Ok(v),
                other => Err(format!(
                    "value {other:?}; the family reads:\n{}",
                    s.lines_of(family)
                )),
            }
        },
    )
}

fn count_getpid(scrape: &Scrape, isle: &RunningIsle) -> f64 {
    scrape
        .sum(
            "islander_isle_syscalls_total",
            &[("isle", isle.short_id()), ("syscall", "getpid")],
        )
        .unwrap_or_else(|| {
            panic!(
                "no getpid count for isle {} in:\n{}",
                isle.short_id(),
                scrape.lines_of("islander_isle_syscalls_total")
            )
        })
}

fn assert_within(what: &str, got: f64, want: f64, tolerance: f64) {
    let error = (got - want).abs() / want;
    assert!(
        error <= tolerance,
        "{what}: {got} is {:.3}% away from {want}; at most {:.1}% is allowed",
        error * 100.0,
        tolerance * 100.0
    );
}

fn finish(isl: &Islander, isle: RunningIsle) {
    let id = isle.id().to_string();
    isle.finish().assert_success("the isle");
    isl.assert_no_leftovers(&id);
}

#[test]
fn getpid_calls_are_counted_exactly_and_per_isle() {
    const A: u64 = 1_000_000;
    const B1: u64 = 300_000;
    const B2: u64 = 200_000;
    let isl = Islander::new("metrics-getpid");
    // B runs two loops: the first at the same time as A's, the second once
    // A's count is final, which must then stay exactly where it was.
    let (mut a, addr_a) = start(
        &isl,
        &["--name", "getpid-a"],
        &format!("/helpers/getpid_n -g -h {A}"),
    );
    let (mut b, addr_b) = start(
        &isl,
        &[],
        &format!("/helpers/getpid_n -g -h {B1}\n/helpers/getpid_n -g -h {B2}"),
    );
    expect_line(&mut a, "getpid_n: ready", WORK_TIMEOUT);
    expect_line(&mut b, "getpid_n: ready", WORK_TIMEOUT);
    a.send_line("go");
    b.send_line("go");
    expect_line(&mut a, &format!("getpid_n: done {A}"), WORK_TIMEOUT);
    expect_line(&mut b, &format!("getpid_n: done {B1}"), WORK_TIMEOUT);

    let first = wait_value(
        &addr_a,
        &a,
        "islander_isle_syscalls_total",
        &[("syscall", "getpid")],
        |v| v >= A as f64 * 0.99,
    );
    let s = scrape(&addr_a);
    assert_eq!(count_getpid(&s, &a), first);
    assert_within("getpid calls of isle A", first, A as f64, 0.01);
    assert_within(
        "getpid calls of isle B, at the same time",
        count_getpid(&s, &b),
        B1 as f64,
        0.01,
    );
    // Each islander serves every isle of its root, from one shared set of
    // eBPF counters: the other endpoint must agree exactly.
    let other = scrape(&addr_b);
    assert_eq!(
        count_getpid(&other, &a),
        first,
        "the two islanders disagree on isle A"
    );

    // B's second loop, while A holds.
    b.send_line("");
    expect_line(&mut b, "getpid_n: ready", WORK_TIMEOUT);
    b.send_line("go");
    expect_line(&mut b, &format!("getpid_n: done {B2}"), WORK_TIMEOUT);
    let b_total = wait_value(
        &addr_a,
        &b,
        "islander_isle_syscalls_total",
        &[("syscall", "getpid")],
        |v| v >= (B1 + B2) as f64 * 0.99,
    );
    assert_within(
        "getpid calls of isle B after both loops",
        b_total,
        (B1 + B2) as f64,
        0.01,
    );
    let after = scrape(&addr_a);
    assert_eq!(
        count_getpid(&after, &a),
        first,
        "isle B's {B2} getpid calls changed isle A's count"
    );

    finish(&isl, a);
    finish(&isl, b);
}

#[test]
fn direct_and_buffered_writes_are_counted() {
    let isl = Islander::new("metrics-block");
    let (mut isle, addr) = start(&isl, &[], "/helpers/writer -g -h /blk.bin 64 64");
    expect_line(&mut isle, "writer: ready", WORK_TIMEOUT);
    let before = Scrape::fetch(&addr)
        .ok()
        .and_then(|s| {
            s.sum(
                "islander_isle_block_write_bytes_total",
                &[("isle", isle.short_id())],
            )
        })
        .unwrap_or(0.0);
    isle.send_line("go");
    expect_line(&mut isle, "writer: done", WORK_TIMEOUT);
    let want = (128 * MIB) as f64;
    let got = wait_value(
        &addr,
        &isle,
        "islander_isle_block_write_bytes_total",
        &[],
        |v| v >= want * 0.95,
    );
    assert_within(
        &format!("block write bytes (before the writes: {before})"),
        got,
        want,
        0.05,
    );
    let ops = wait_value(&addr, &isle, "islander_isle_block_writes_total", &[], |v| {
        v > 0.0
    });
    assert!(ops > 0.0);
    finish(&isl, isle);
}

#[test]
fn bytes_sent_through_a_socket_are_counted() {
    let isl = Islander::new("metrics-net");
    let bytes = 10 * MIB;
    let (mut isle, addr) = start(&isl, &[], &format!("/helpers/netsend -g -h {bytes}"));
    expect_line(&mut isle, "netsend: ready", WORK_TIMEOUT);
    isle.send_line("go");
    let done = expect_line(&mut isle, "netsend: done", WORK_TIMEOUT);
    assert_eq!(done, format!("netsend: done sent={bytes} received={bytes}"));
    let tx = wait_value(
        &addr,
        &isle,
        "islander_isle_network_transmit_bytes_total",
        &[],
        |v| v >= bytes as f64,
    );
    assert!(tx >= bytes as f64, "transmitted {tx} < {bytes}");
    let packets = wait_value(
        &addr,
        &isle,
        "islander_isle_network_transmit_packets_total",
        &[],
        |v| v > 0.0,
    );
    assert!(packets > 0.0);
    finish(&isl, isle);
}

#[test]
fn an_oom_kill_is_counted() {
    let isl = Islander::new("metrics-oom");
    // The shell outlives the allocator the OOM killer picks, so the isle,
    // and its metrics, are still there to look at.
    let (mut isle, addr) = start(
        &isl,
        &["--memory-in-bytes", "64M"],
        "/helpers/alloc -g 1024\necho \"alloc-exit $?\"\nread x",
    );
    expect_line(&mut isle, "alloc: ready", WORK_TIMEOUT);
    let before = wait_value(&addr, &isle, "islander_isle_oom_kills_total", &[], |_| true);
    assert_eq!(
        before, 0.0,
        "an OOM kill counted before anything was allocated"
    );
    isle.send_line("go");
    let exit = expect_line(&mut isle, "alloc-exit", WORK_TIMEOUT);
    assert_eq!(
        exit, "alloc-exit 137",
        "the allocator should die of SIGKILL"
    );
    let kills = wait_value(&addr, &isle, "islander_isle_oom_kills_total", &[], |v| {
        v >= 1.0
    });
    assert!(kills >= 1.0);
    let peak = wait_value(
        &addr,
        &isle,
        "islander_isle_memory_max_usage_bytes",
        &[],
        |_| true,
    );
    let limit = wait_value(
        &addr,
        &isle,
        "islander_isle_memory_limit_bytes",
        &[],
        |_| true,
    );
    assert_eq!(limit, (64 * MIB) as f64);
    assert!(
        peak >= limit * 0.9,
        "peak {peak} should have reached the limit {limit}"
    );
    finish(&isl, isle);
}
