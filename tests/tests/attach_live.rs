//! `islander attach` on a real terminal: live output, typed input, the
//! detach keys, the log without a gap, and isles with a terminal of their
//! own (raw mode, window size, ctrl-c).

#[path = "../helpers/attach/support.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use islander_tests::{islander_bin, Islander};
use support::{
    assert_consecutive, assert_no_attach_left, counts, fd_table, Detached, Pty, CTRL_P_CTRL_Q, WAIT,
};

fn attach_cmd(isl: &Islander, args: &[&str]) -> Command {
    let mut c = isl.cmd();
    c.arg("attach").args(args);
    c
}

#[test]
fn attach_relays_live_output_and_input_then_detaches_without_a_gap() {
    let isl = Islander::new("attach-live");
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter", "-e"]);
    isle.wait_log("three counts", |l| {
        counts(l.iter().map(|x| x.text.as_str())).len() >= 3
    });
    let fds_before = fd_table(isle.pid);

    let mut pty = Pty::spawn(attach_cmd(&isl, &[isle.short()]), 30, 100);
    let termios_before = pty.termios();
    // Live: several counts in a row arrive through the attach.
    let live = pty.wait_until(0, "five live counts", |t| {
        counts(std::iter::once(t)).len() >= 5
    });
    let shown = counts(std::iter::once(live.as_str()));
    assert_consecutive(&shown, "counts shown while attached");
    assert!(
        pty.text().contains("err "),
        "stderr is relayed too:\n{}",
        pty.text()
    );

    // A typed line reaches the isle and its echo comes back; the local
    // line discipline echoes what is typed, and editing works.
    let mark = pty.len();
    pty.send(b"hello attacx\x7fh\r");
    pty.wait_for(mark, "echo: hello attach");

    pty.send(CTRL_P_CTRL_Q);
    let st = pty.wait_exit();
    assert!(
        st.success(),
        "attach ends with 0 on ctrl-p ctrl-q: {st}\n{}",
        pty.text()
    );
    let termios_after = pty.termios();
    assert_eq!(
        termios_before.c_lflag, termios_after.c_lflag,
        "the terminal's modes are restored"
    );
    assert_eq!(
        termios_before.c_oflag, termios_after.c_oflag,
        "the terminal's output modes are restored"
    );
    assert_no_attach_left(&isl);

    // The isle runs on, with its own descriptors, and its log continues.
    isle.assert_alive("after the detach");
    assert_eq!(
        fd_table(isle.pid),
        fds_before,
        "/proc/PID/fd is as before the attach"
    );
    let last_shown = *shown.last().unwrap();
    isle.wait_log("counts after the detach", |l| {
        counts(
            l.iter()
                .filter(|x| x.stream == "stdout")
                .map(|x| x.text.as_str()),
        )
        .last()
        .is_some_and(|&c| c > last_shown + 5)
    });
    let logged = isle.logged_counts();
    assert_eq!(logged[0], 1);
    assert_consecutive(&logged, "counts in the log across the attach");
    let log = isle.log();
    assert!(
        log.iter()
            .any(|l| l.stream == "stdout" && l.text == "echo: hello attach\n"),
        "the echo is in the log: {log:?}"
    );
    let errs: Vec<u64> = log
        .iter()
        .filter(|l| l.stream == "stderr")
        .filter_map(|l| l.text.trim().strip_prefix("err ")?.parse().ok())
        .collect();
    assert!(errs.len() >= 2, "stderr lines are logged: {log:?}");
    for w in errs.windows(2) {
        assert_eq!(w[1], w[0] + 5, "stderr in the log has no gap: {errs:?}");
    }
}

/// A tmux server of the test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn pane(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "T"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_pane(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let p = self.pane();
            if pred(&p) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "'{what}' not in the tmux pane within {WAIT:?}:\n{p}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let st = self
            .cmd()
            .args(["send-keys", "-t", "T"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(st.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

#[test]
fn attach_under_tmux() {
    let isl = Islander::new("attach-tmux");
    let isle = Detached::start(&isl, &["-i"], &["/attach/counter"]);
    let done = isl.root().join("attach-status");
    let tmux = Tmux {
        socket: format!("islander-attach-test-{}", std::process::id()),
    };
    let script = format!(
        "'{}' --root '{}' attach {}; echo $? > '{}'; sleep 60",
        islander_bin().display(),
        isl.root().display(),
        isle.short(),
        done.display()
    );
    let st = tmux
        .cmd()
        .args(["new-session", "-d", "-s", "T", "-x", "100", "-y", "30"])
        .arg(script)
        .env("TERM", "xterm")
        .status()
        .expect("tmux new-session (is tmux installed?)");
    assert!(st.success(), "tmux new-session");

    let pane = tmux.wait_pane("live counts", |p| counts(std::iter::once(p)).len() >= 4);
    assert_consecutive(
        &counts(std::iter::once(pane.as_str())),
        "counts in the pane",
    );
    tmux.keys(&["typed in tmux", "Enter"]);
    tmux.wait_pane("the echo", |p| p.contains("echo: typed in tmux"));
    tmux.keys(&["C-p", "C-q"]);
    let deadline = Instant::now() + WAIT;
    while !done.exists() {
        assert!(
            Instant::now() < deadline,
            "attach did not end after C-p C-q; pane:\n{}",
            tmux.pane()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&done).unwrap().trim(),
        "0",
        "attach's status"
    );
    isle.assert_alive("after detaching in tmux");
    let after = isle.logged_counts().len();
    isle.wait_log("the log goes on", |l| {
        counts(l.iter().map(|x| x.text.as_str())).len() > after + 3
    });
    assert_consecutive(&isle.logged_counts(), "counts in the log");
    assert!(isle.log().iter().any(|l| l.text == "echo: typed in tmux\n"));
}

#[test]
fn attach_to_an_isle_with_a_terminal() {
    let isl = Islander::new("attach-tty");
    let isle = Detached::start(&isl, &["-i", "-t"], &["/bin/sh"]);
    isle.wait_log("the banner", |l| {
        l.iter().any(|x| x.text.contains("built-in commands"))
    });
    let fds_before = fd_table(isle.pid);

    for round in 0..2 {
        let mut pty = Pty::spawn(attach_cmd(&isl, &[isle.short()]), 30, 100);
        let m = pty.len();
        pty.send(b"stty size; tty; echo M1:$(stty -a | grep -c -- -opost):M2\r");
        let t = pty.wait_until(m, "M1:N:M2", |t| {
            t.contains("M1:0:M2") || t.contains("M1:1:M2")
        });
        assert!(
            t.contains("30 100"),
            "the isle sees the attacher's window size (round {round}):\n{t}"
        );
        assert!(
            t.contains("/dev/pts/"),
            "the isle's stdin is a pty of its own devpts:\n{t}"
        );
        assert!(
            t.contains("M1:0:M2"),
            "the terminal's settings are the isle's own, output processing on:\n{t}"
        );

        // A resize reaches the isle.
        pty.resize(41, 132);
        std::thread::sleep(Duration::from_millis(100));
        let m = pty.len();
        pty.send(b"stty size\r");
        pty.wait_for(m, "41 132");

        // ctrl-c reaches the isle's foreground job: the sleep ends early.
        let m = pty.len();
        pty.send(b"sleep 30\r");
        std::thread::sleep(Duration::from_millis(300));
        let began = Instant::now();
        pty.send(b"\x03");
        pty.send(b"echo back-$((20+22))\r");
        pty.wait_for(m, "back-42");
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "ctrl-c interrupted the sleep"
        );

        pty.send(CTRL_P_CTRL_Q);
        let st = pty.wait_exit();
        assert!(st.success(), "attach ends with 0: {st}\n{}", pty.text());
        assert_no_attach_left(&isl);
        isle.assert_alive("after the detach");
        assert_eq!(
            fd_table(isle.pid),
            fds_before,
            "/proc/PID/fd is as before (round {round})"
        );
    }
    let log: String = isle.log().iter().map(|l| l.text.clone()).collect();
    assert!(
        log.contains("back-42"),
        "what was typed and shown is in the log:\n{log}"
    );
    assert!(
        !log.contains("\r\r\n"),
        "the log has the isle's output once processed, not twice:\n{log:?}"
    );
}
