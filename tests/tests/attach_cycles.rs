//! 100 attach/detach cycles in a row on one isle: it never dies, its
//! descriptors are the same set before and after, its log has no gap.

#[path = "../helpers/attach/support.rs"]
mod support;

use std::time::Instant;

use islander_tests::Islander;
use support::{
    assert_consecutive, assert_no_attach_left, counts, fd_table, status_of, Detached, Piped,
};

const CYCLES: usize = 100;

#[test]
fn a_hundred_attach_detach_cycles() {
    let isl = Islander::new("attach-cycles");
    // A count every 20 ms, so every cycle sees live output quickly.
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter", "-i", "20", "-e"]);
    isle.wait_log("first counts", |l| l.len() >= 3);
    let fds_before = fd_table(isle.pid);
    let began = Instant::now();
    let mut last = 0u64;
    for cycle in 0..CYCLES {
        let mut a = Piped::spawn(&isl, &[isle.short()]);
        let out = a.wait_stdout("a live count", |t| {
            counts(std::iter::once(t)).iter().any(|&c| c > last)
        });
        let seen = counts(std::iter::once(out.as_str()));
        assert_consecutive(&seen, &format!("counts shown in cycle {cycle}"));
        last = *seen.last().unwrap();
        a.detach();
        isle.assert_alive(&format!("after cycle {cycle}"));
    }
    let took = began.elapsed();
    assert_eq!(
        fd_table(isle.pid),
        fds_before,
        "/proc/PID/fd after {CYCLES} cycles"
    );
    assert_eq!(status_of(isle.pid, "TracerPid"), "0");
    assert_no_attach_left(&isl);
    isle.wait_log("counts after the last cycle", |l| {
        counts(
            l.iter()
                .filter(|x| x.stream == "stdout")
                .map(|x| x.text.as_str()),
        )
        .last()
        .is_some_and(|&c| c > last + 5)
    });
    let logged = isle.logged_counts();
    assert_eq!(logged[0], 1);
    assert_consecutive(&logged, &format!("counts in the log over {CYCLES} cycles"));
    eprintln!("{CYCLES} attach/detach cycles in {took:?}");
}
