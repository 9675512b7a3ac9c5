//! Every way an attach can fail, each with one clear line and status 125,
//! and the target never left stopped, traced or with other descriptors:
//! no such isle or pid; a pid outside the isles (and --any-pid); an isle
//! that ended; a process that exits while attached, or just as the attach
//! begins; an attacher killed with SIGKILL; ptrace refused (another tracer,
//! a seccomp filter on islander); a target whose seccomp filter would kill
//! it for the injected calls, or in strict mode; a process that cannot stop.

#[path = "../helpers/attach/support.rs"]
mod support;

use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use islander_tests::{isle_cgroup, Islander, OutputExt};
use support::{
    assert_consecutive, assert_no_attach_left, counts, fd_table, hostwrap, status_of, Detached,
    Piped, WAIT,
};

fn refused(out: &std::process::Output, needle: &str, what: &str) {
    assert_eq!(out.code(), Some(125), "{what}: {}", out.describe());
    let err = out.stderr_str();
    assert!(
        err.starts_with("islander: ") && err.lines().count() == 1,
        "{what}: one line: {err:?}"
    );
    assert!(
        err.contains(needle),
        "{what}: expected '{needle}' in: {err}"
    );
}

#[test]
fn unknown_targets_and_bad_keys() {
    let isl = Islander::new("attach-unknown");
    refused(
        &isl.run(&["attach", "nosuchisle"]),
        "no such isle 'nosuchisle'",
        "an unknown name",
    );
    refused(
        &isl.run(&["attach", "999999999"]),
        "no such isle or process '999999999'",
        "an unknown pid",
    );
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter"]);
    refused(
        &isl.run(&["attach", "--detach-keys", "ctrl-1", isle.short()]),
        "invalid --detach-keys 'ctrl-1': use comma-separated keys",
        "bad detach keys",
    );
    refused(
        &isl.run(&["attach", "--detach-keys", "", isle.short()]),
        "invalid --detach-keys ''",
        "empty detach keys",
    );

    // Other detach keys work.
    let mut a = Piped::spawn(&isl, &["--detach-keys", "ctrl-x,d", isle.short()]);
    a.wait_stdout("a count", |t| t.contains("count "));
    a.send(b"\x10\x11");
    sleep(Duration::from_millis(300));
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "ctrl-p ctrl-q is not the sequence now"
    );
    a.send(b"\x18d");
    assert!(a.wait().success(), "ctrl-x d detaches: {}", a.stderr());
    isle.assert_alive("after a detach with other keys");
}

#[test]
fn an_isle_that_ended() {
    let isl = Islander::new("attach-ended");
    let out = isl.run(&[
        "run",
        "-d",
        "--rootfs",
        support::attach_rootfs().to_str().unwrap(),
        "/bin/true",
    ]);
    out.assert_success("run -d true");
    let id = out.stdout_str().trim().to_string();
    let deadline = Instant::now() + WAIT;
    while !fs::read_to_string(isl.isles_run_dir().join(&id).join("state.json"))
        .unwrap_or_default()
        .contains("\"exited\"")
    {
        assert!(Instant::now() < deadline, "the isle never exited");
        sleep(Duration::from_millis(20));
    }
    refused(
        &isl.run(&["attach", &id[..12]]),
        "is not running",
        "an exited isle",
    );
    isl.run(&["rm", &id]).assert_success("rm");
}

#[test]
fn pids_outside_the_isles_need_any_pid() {
    let isl = Islander::new("attach-anypid");
    let mut host = Command::new("sh")
        .args([
            "-c",
            "i=0; while :; do i=$((i+1)); echo count $i; sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = host.id() as i32;
    let mut host_out = host.stdout.take().unwrap();
    refused(
        &isl.run(&["attach", &pid.to_string()]),
        &format!("pid {pid} is not in a running isle of this islander"),
        "a host pid",
    );
    refused(
        &isl.run(&["attach", "1"]),
        "add --any-pid to attach to it anyway",
        "the host's init",
    );
    refused(
        &isl.run(&["attach", "--any-pid", "2"]),
        "pid 2 is a kernel thread",
        "kthreadd",
    );

    let fds = fd_table(pid);
    // Its stdin is /dev/null, which attach leaves alone; the detach keys
    // still come from attach's own stdin.
    let mut a = Piped::spawn(&isl, &["--any-pid", &pid.to_string()]);
    a.wait_stdout("the shell's counts", |t| {
        counts(std::iter::once(t)).len() >= 3
    });
    a.detach();
    assert_eq!(
        fd_table(pid),
        fds,
        "the host process has its descriptors back"
    );
    // --no-stdin: no keys to read; SIGTERM detaches.
    let mut b = Piped::spawn(&isl, &["--any-pid", "--no-stdin", &pid.to_string()]);
    b.wait_stdout("the shell's counts", |t| {
        counts(std::iter::once(t)).len() >= 2
    });
    // SAFETY: kill with plain integers.
    unsafe { libc::kill(b.child.id() as i32, libc::SIGTERM) };
    assert!(b.wait().success(), "SIGTERM detaches: {}", b.stderr());
    assert_eq!(
        fd_table(pid),
        fds,
        "the host process has its descriptors back"
    );
    assert_eq!(status_of(pid, "TracerPid"), "0");
    // Its own stdout (our pipe) carries the counts again, without a gap.
    sleep(Duration::from_millis(500));
    host.kill().unwrap();
    host.wait().unwrap();
    let mut text = String::new();
    host_out.read_to_string(&mut text).unwrap();
    let own = counts(std::iter::once(text.as_str()));
    assert_consecutive(
        &own,
        "the host shell's counts on its own stdout, across the attach",
    );
    let relayed = counts(std::iter::once(a.stdout().as_str()));
    assert!(
        relayed.iter().all(|c| own.contains(c)),
        "what the attach showed went to its stdout too"
    );

    // A zombie.
    let zombie = Command::new("true").spawn().unwrap();
    let zpid = zombie.id() as i32;
    let deadline = Instant::now() + WAIT;
    while !status_of(zpid, "State").starts_with('Z') {
        assert!(Instant::now() < deadline);
        sleep(Duration::from_millis(5));
    }
    refused(
        &isl.run(&["attach", "--any-pid", &zpid.to_string()]),
        &format!("pid {zpid} has exited (it is a zombie)"),
        "a zombie",
    );
    drop(zombie);
}

#[test]
fn a_process_that_exits_while_attached() {
    let isl = Islander::new("attach-exit");
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter"]);
    let mut a = Piped::spawn(&isl, &[isle.short()]);
    a.wait_stdout("a count", |t| t.contains("count "));
    // SAFETY: kill with plain integers.
    unsafe { libc::kill(isle.pid, libc::SIGKILL) };
    let st = a.wait();
    assert_eq!(
        st.code(),
        Some(137),
        "attach ends with the isle's status (128 + 9): {}",
        a.stderr()
    );
    assert_no_attach_left(&isl);
}

#[test]
fn processes_that_exit_as_the_attach_begins() {
    let isl = Islander::new("attach-race");
    for i in 0..20 {
        let mut host = Command::new("sleep")
            .arg(format!("0.0{}", i % 10))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = isl.run(&["attach", "--any-pid", "--no-stdin", &host.id().to_string()]);
        let err = out.stderr_str();
        match out.code() {
            Some(0) => {}
            Some(125) => assert!(
                err.contains("exited during attach")
                    || err.contains("no such isle or process")
                    || err.contains("is a zombie")
                    || err.contains("has exited"),
                "attempt {i}: {}",
                out.describe()
            ),
            _ => panic!("attempt {i}: {}", out.describe()),
        }
        host.wait().unwrap();
    }
    assert_no_attach_left(&isl);
}

#[test]
fn an_attacher_killed_with_sigkill_gives_the_descriptors_back() {
    let isl = Islander::new("attach-sigkill");
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter", "-i", "20"]);
    isle.wait_log("counts", |l| l.len() >= 3);
    let fds = fd_table(isle.pid);
    for round in 0..3 {
        let mut a = Piped::spawn(&isl, &[isle.short()]);
        a.wait_stdout("a count", |t| t.contains("count "));
        a.child.kill().unwrap();
        a.wait();
        // The guard puts the descriptors back at once.
        let deadline = Instant::now() + WAIT;
        while fd_table(isle.pid) != fds {
            assert!(
                Instant::now() < deadline,
                "round {round}: descriptors not restored after SIGKILL: {:?}",
                fd_table(isle.pid)
            );
            sleep(Duration::from_millis(10));
        }
        assert_no_attach_left(&isl);
        isle.assert_alive("after the attacher's SIGKILL");
    }
    let n = isle.logged_counts().len();
    isle.wait_log("counts go on", |l| l.len() > n + 5);
    assert_consecutive(
        &isle.logged_counts(),
        "counts in the log across the killed attaches",
    );
}

#[test]
fn ptrace_refused() {
    let isl = Islander::new("attach-eperm");
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter"]);
    isle.wait_log("counts", |l| !l.is_empty());
    let fds = fd_table(isle.pid);

    // islander under a seccomp filter that refuses ptrace.
    let out = Command::new(hostwrap())
        .arg("noptrace")
        .arg(islander_tests::islander_bin())
        .arg("--root")
        .arg(isl.root())
        .args(["attach", isle.short()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    refused(
        &out,
        &format!(
            "ptrace of pid {} refused: islander itself runs under seccomp",
            isle.pid
        ),
        "seccomp on islander",
    );

    // Another tracer holds the process.
    let mut tracer = Command::new(hostwrap())
        .args(["trace", &isle.pid.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 8];
    tracer
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(&line, b"tracing\n");
    refused(
        &isl.run(&["attach", isle.short()]),
        "it is already traced by pid",
        "a second tracer",
    );
    drop(tracer.stdin.take());
    tracer.wait().unwrap();

    isle.assert_alive("after the refusals");
    assert_eq!(fd_table(isle.pid), fds);
}

#[test]
fn seccomp_filters_of_the_target_are_respected() {
    let isl = Islander::new("attach-seccomp");
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter", "-k"]);
    isle.wait_log("counts", |l| l.len() >= 2);
    let fds = fd_table(isle.pid);
    refused(
        &isl.run(&["attach", isle.short()]),
        &format!(
            "the seccomp filter of pid {} would kill the process on the injected socketpair",
            isle.pid
        ),
        "a filter that kills on socketpair",
    );
    isle.assert_alive("after the refusal");
    assert_eq!(
        fd_table(isle.pid),
        fds,
        "nothing was changed before the refusal"
    );
    let n = isle.logged_counts().len();
    isle.wait_log("counts go on", |l| l.len() > n + 3);
    assert_consecutive(&isle.logged_counts(), "counts");

    let strict = Detached::start(&isl, &["-i"], &["/attach/blocker", "strict"]);
    strict.wait_log("ready", |l| l.iter().any(|x| x.text == "ready\n"));
    refused(
        &isl.run(&["attach", strict.short()]),
        "runs in seccomp strict mode",
        "strict mode",
    );
    strict.assert_alive("strict mode, after the refusal");
}

#[test]
fn a_process_that_cannot_stop_times_out() {
    let isl = Islander::new("attach-frozen");
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter"]);
    isle.wait_log("counts", |l| l.len() >= 2);
    let fds = fd_table(isle.pid);
    let freezer = isle_cgroup("freezer", &isle.id).join("freezer.state");
    fs::write(&freezer, "FROZEN").unwrap_or_else(|e| panic!("{}: {e}", freezer.display()));
    let deadline = Instant::now() + WAIT;
    while fs::read_to_string(&freezer).unwrap().trim() != "FROZEN" {
        assert!(Instant::now() < deadline, "the isle did not freeze");
        sleep(Duration::from_millis(10));
    }
    let began = Instant::now();
    let out = isl.run(&["attach", isle.short()]);
    refused(
        &out,
        &format!("pid {} did not stop within 2000 ms", isle.pid),
        "a frozen process",
    );
    assert!(out.stderr_str().contains("left running and untraced"));
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "the refusal takes about the timeout"
    );
    assert_eq!(
        status_of(isle.pid, "TracerPid"),
        "0",
        "not traced while frozen"
    );
    fs::write(&freezer, "THAWED").unwrap();
    let n = isle.logged_counts().len();
    isle.wait_log("counts after the thaw", |l| l.len() > n + 3);
    isle.assert_alive("after the thaw");
    assert_eq!(fd_table(isle.pid), fds);
    assert_consecutive(&isle.logged_counts(), "counts across the freeze");
}

#[test]
fn a_detach_from_a_frozen_process_is_finished_by_the_guard() {
    let isl = Islander::new("attach-frozen-detach");
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter", "-i", "20"]);
    isle.wait_log("counts", |l| l.len() >= 3);
    let fds = fd_table(isle.pid);
    let mut a = Piped::spawn(&isl, &[isle.short()]);
    a.wait_stdout("a count", |t| t.contains("count "));
    let freezer = isle_cgroup("freezer", &isle.id).join("freezer.state");
    fs::write(&freezer, "FROZEN").unwrap();
    let deadline = Instant::now() + WAIT;
    while fs::read_to_string(&freezer).unwrap().trim() != "FROZEN" {
        assert!(Instant::now() < deadline, "the isle did not freeze");
        sleep(Duration::from_millis(10));
    }
    a.send(support::CTRL_P_CTRL_Q);
    let st = a.wait();
    assert_eq!(
        st.code(),
        Some(125),
        "the detach could not finish: {}",
        a.stderr()
    );
    assert!(a.stderr().contains("the guard process"), "{}", a.stderr());
    fs::write(&freezer, "THAWED").unwrap();
    let deadline = Instant::now() + WAIT;
    while fd_table(isle.pid) != fds {
        assert!(
            Instant::now() < deadline,
            "the guard did not restore the descriptors after the thaw: {:?}",
            fd_table(isle.pid)
        );
        sleep(Duration::from_millis(20));
    }
    assert_no_attach_left(&isl);
    isle.assert_alive("after the guard's restore");
    let n = isle.logged_counts().len();
    isle.wait_log("counts after the thaw", |l| l.len() > n + 5);
    assert_consecutive(
        &isle.logged_counts(),
        "counts across the freeze and the guard's restore",
    );
}
