//! Attach meets the process where it is: blocked in read(2), asleep in
//! nanosleep(2), spinning in user space without any system call, or
//! stopped by SIGSTOP. Each must carry on as if nothing had happened: a
//! read restarted (no EINTR), a sleep that lasts its full time, registers
//! intact.

#[path = "../helpers/attach/support.rs"]
mod support;

use std::thread::sleep;
use std::time::Duration;

use islander_tests::Islander;
use support::{fd_table, status_of, syscall_of, Detached, Piped, WAIT};

const SYS_READ: &str = "0";
const SYS_NANOSLEEP: &str = "35";
const SYS_CLOCK_NANOSLEEP: &str = "230";

fn wait_syscall(pid: i32, want: &[&str]) {
    let deadline = std::time::Instant::now() + WAIT;
    while !want.contains(&syscall_of(pid).as_str()) {
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} is not in syscall {want:?}: {}",
            syscall_of(pid)
        );
        sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_process_blocked_in_read() {
    let isl = Islander::new("attach-read");
    let isle = Detached::start(&isl, &["-i"], &["/attach/blocker", "read"]);
    isle.wait_log("ready", |l| l.iter().any(|x| x.text == "ready\n"));
    wait_syscall(isle.pid, &[SYS_READ]);
    let fds = fd_table(isle.pid);

    for round in 0..3 {
        let mut a = Piped::spawn(&isl, &[isle.short()]);
        a.send(format!("line {round}\n").as_bytes());
        a.wait_stdout("the echo", |t| t.contains(&format!("got: line {round}")));
        a.detach();
        isle.assert_alive("after the detach");
        // Back in read(2) on its own stdin, which was restarted, not failed.
        wait_syscall(isle.pid, &[SYS_READ]);
        assert_eq!(fd_table(isle.pid), fds);
    }
    // The read is on the isle's own stdin again: end of input there (the
    // supervisor keeps it open) would make it exit, input through attach
    // still arrives.
    let mut a = Piped::spawn(&isl, &[isle.short()]);
    a.send(b"last\n");
    drop(a.stdin.take());
    let st = a.wait();
    assert!(
        st.success(),
        "end of attach's stdin detaches: {st}; {}",
        a.stderr()
    );
    assert!(
        a.stdout().contains("got: last"),
        "input sent before the end reaches the process: {}",
        a.stdout()
    );
    let log = isle.log();
    assert!(
        log.iter().all(|l| l.text != "EINTR\n"),
        "no read failed with EINTR: {log:?}"
    );
    for round in 0..3 {
        assert!(
            log.iter().any(|l| l.text == format!("got: line {round}\n")),
            "the echo is logged: {log:?}"
        );
    }
}

#[test]
fn a_process_asleep_in_nanosleep() {
    let isl = Islander::new("attach-sleep");
    let isle = Detached::start(&isl, &["-i"], &["/attach/blocker", "sleep"]);
    isle.wait_log("ready", |l| l.iter().any(|x| x.text == "ready\n"));
    wait_syscall(isle.pid, &[SYS_NANOSLEEP, SYS_CLOCK_NANOSLEEP]);
    // Several attaches and detaches inside one sleep of 1.5 s.
    for _ in 0..4 {
        let mut a = Piped::spawn(&isl, &["--no-stdin", isle.short()]);
        sleep(Duration::from_millis(50));
        // SIGTERM detaches, as ctrl-p ctrl-q does.
        // SAFETY: kill with plain integers.
        unsafe { libc::kill(a.child.id() as i32, libc::SIGTERM) };
        assert!(
            a.wait().success(),
            "SIGTERM detaches cleanly: {}",
            a.stderr()
        );
    }
    let mut a = Piped::spawn(&isl, &[isle.short()]);
    let out = a.wait_stdout("a whole sleep", |t| t.contains("slept "));
    a.detach();
    isle.assert_alive("after the detach");
    let log = isle.wait_log("three sleeps", |l| {
        l.iter().filter(|x| x.text.starts_with("slept ")).count() >= 3
    });
    assert!(
        log.iter().all(|l| l.text != "EINTR\n"),
        "no sleep was cut short: {log:?}"
    );
    for l in log.iter().filter(|l| l.text.starts_with("slept ")) {
        let ms: u64 = l
            .text
            .trim()
            .strip_prefix("slept ")
            .and_then(|s| s.strip_suffix(" ms"))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            ms >= 1500,
            "a sleep restarted after the attach lasts its full 1.5 s: {}",
            l.text.trim()
        );
    }
    assert!(out.contains("slept "), "{out}");
}

#[test]
fn a_process_spinning_without_system_calls() {
    let isl = Islander::new("attach-spin");
    let isle = Detached::start(&isl, &["-i"], &["/attach/blocker", "spin"]);
    isle.wait_log("a first round", |l| {
        l.iter().any(|x| x.text.starts_with("spin 1 "))
    });
    let fds = fd_table(isle.pid);
    for round in 0..5 {
        assert!(
            status_of(isle.pid, "State").starts_with('R'),
            "it spins in user space"
        );
        let mut a = Piped::spawn(&isl, &[isle.short()]);
        let out = a.wait_stdout("a round while attached", |t| {
            t.contains(" ok\n") || t.contains("BAD")
        });
        assert!(
            !out.contains("BAD"),
            "the spinning loop's registers survived attach {round}: {out}"
        );
        a.detach();
        isle.assert_alive("after the detach");
    }
    assert_eq!(fd_table(isle.pid), fds);
    let before = isle.log().len();
    let log = isle.wait_log("rounds after the detaches", |l| l.len() > before + 1);
    let rounds: Vec<&str> = log
        .iter()
        .filter(|l| l.text.starts_with("spin "))
        .map(|l| l.text.trim())
        .collect();
    assert!(
        rounds.iter().all(|r| r.ends_with(" ok")),
        "every round's sum is right: {rounds:?}"
    );
    for (i, r) in rounds.iter().enumerate() {
        assert_eq!(
            *r,
            format!("spin {} ok", i + 1),
            "rounds are consecutive in the log"
        );
    }
}

#[test]
fn a_stopped_process_stays_stopped_and_resumes_whole() {
    let isl = Islander::new("attach-stopped");
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter"]);
    isle.wait_log("counts", |l| l.len() >= 2);
    let fds = fd_table(isle.pid);
    // SAFETY: kill with plain integers.
    unsafe { libc::kill(isle.pid, libc::SIGSTOP) };
    let deadline = std::time::Instant::now() + WAIT;
    while !status_of(isle.pid, "State").starts_with('T') {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGSTOP did not stop it"
        );
        sleep(Duration::from_millis(10));
    }
    let mut a = Piped::spawn(&isl, &[isle.short()]);
    sleep(Duration::from_millis(300));
    a.detach();
    assert!(
        status_of(isle.pid, "State").starts_with('T'),
        "still stopped after the detach: {}",
        status_of(isle.pid, "State")
    );
    assert_eq!(status_of(isle.pid, "TracerPid"), "0");
    assert_eq!(fd_table(isle.pid), fds);
    // SAFETY: as above.
    unsafe { libc::kill(isle.pid, libc::SIGCONT) };
    let n = isle.logged_counts().len();
    isle.wait_log("counts after SIGCONT", |l| l.len() > n + 3);
    support::assert_consecutive(
        &isle.logged_counts(),
        "counts across the stop and the attach",
    );
}
