//! From start to exit: what the isle's command gets (stdin, env, workdir),
//! what islander returns, how signals reach the isle, and that nothing
//! outlives it.

use islander_tests::{busybox_rootfs, islander_cgroup_entries, Islander, OutputExt};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[test]
fn exit_status_is_the_commands() {
    let isl = Islander::new("exit-status");
    for code in [0, 1, 7, 100, 255] {
        isl.run_isle(&[], &["sh", "-c", &format!("exit {code}")])
            .assert_code(code, &format!("sh -c 'exit {code}'"));
    }
}

#[test]
fn status_of_a_signalled_child_passes_through() {
    let isl = Islander::new("exit-143");
    // PID 1 ignores signals it has no handler for, so the child shell is the
    // one killed; `exit $?` keeps the outer sh from exec'ing it.
    let out = isl.run_isle(&[], &["sh", "-c", "sh -c 'kill -TERM $$'; exit $?"]);
    out.assert_code(143, "a child killed by SIGTERM");
}

#[test]
fn pid1_killed_by_a_signal_gives_128_plus_n() {
    let isl = Islander::new("exit-killed");
    let isle = isl.spawn(&[], "", "");
    let pid1 = isle.pid1();
    // SIGKILL from the host (an ancestor pid namespace) reaches PID 1.
    // SAFETY: kill(2) on a pid we just read from the isle's cgroup.
    assert_eq!(
        unsafe { libc::kill(pid1, libc::SIGKILL) },
        0,
        "kill -KILL {pid1}"
    );
    let id = isle.id().to_string();
    let out = isle.wait();
    out.assert_code(137, "the isle's PID 1 killed by SIGKILL");
    assert!(
        !out.stderr_str().contains("OOM-killed"),
        "a plain SIGKILL reported as OOM: {}",
        out.describe()
    );
    isl.assert_no_leftovers(&id);
}

#[test]
fn signals_to_islander_reach_pid_1() {
    let isl = Islander::new("signals");
    let signals = [
        (libc::SIGTERM, "TERM", 42),
        (libc::SIGINT, "INT", 43),
        (libc::SIGHUP, "HUP", 44),
        (libc::SIGQUIT, "QUIT", 45),
        (libc::SIGUSR1, "USR1", 46),
        (libc::SIGUSR2, "USR2", 47),
    ];
    for (sig, name, code) in signals {
        // The trap is set before the isle reports, so the signal cannot
        // arrive before it; `sleep` in a loop lets the trap run promptly.
        let isle = isl.spawn(
            &[],
            &format!("trap 'exit {code}' {name}"),
            "while :; do sleep 0.1; done",
        );
        isle.signal_islander(sig);
        let id = isle.id().to_string();
        isle.wait().assert_code(
            code,
            &format!("SIG{name} sent to islander, trapped in the isle"),
        );
        isl.assert_no_leftovers(&id);
    }
}

#[test]
fn stdin_is_dev_null_without_interactive() {
    let isl = Islander::new("stdin-null");
    let args = isl.isle_args(&[], &["cat"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = isl.run_with_stdin(&args, b"leaked-input\n");
    out.assert_success("cat without -i");
    assert_eq!(
        out.stdout_str(),
        "",
        "the isle read islander's stdin without -i"
    );
}

#[test]
fn interactive_passes_stdin() {
    let isl = Islander::new("stdin-i");
    let args = isl.isle_args(&["-i"], &["cat"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = isl.run_with_stdin(&args, b"hello\nisle\n");
    out.assert_success("cat with -i");
    assert_eq!(out.stdout_str(), "hello\nisle\n");
}

#[test]
fn default_command_is_sh() {
    let isl = Islander::new("default-cmd");
    let rootfs = busybox_rootfs();
    let rootfs = rootfs.to_str().unwrap();
    // The busybox rootfs has no /bin/bash, so /bin/sh reads this script.
    let out = isl.run_with_stdin(
        &["run", "--rootfs", rootfs, "-i"],
        b"echo in-default-shell $$\nexit 3\n",
    );
    out.assert_code(3, "the default command reading a script from stdin");
    assert_eq!(out.stdout_str(), "in-default-shell 1\n");
}

#[test]
fn environment_is_clean_and_takes_env_options() {
    let isl = Islander::new("env");
    let out = isl.run_isle(
        &["-e", "FOO=bar", "-e", "WITH_EQUALS=a=b"],
        &["sh", "-c", "cat /proc/self/cgroup; echo @@; env"],
    );
    out.assert_success("env");
    let id = out.isle_id();
    let text = out.stdout_str();
    let (_, env_text) = text.split_once("@@\n").expect("marker in the output");
    let mut env: Vec<String> = env_text.lines().map(String::from).collect();
    // sh itself adds PWD (and may add SHLVL); those are the shell's, not islander's.
    env.retain(|v| !v.starts_with("PWD=") && !v.starts_with("SHLVL="));
    env.sort();
    let mut want = vec![
        "FOO=bar".to_string(),
        "HOME=/root".to_string(),
        format!("HOSTNAME={}", &id[..12]),
        format!("PATH={PATH}"),
        "WITH_EQUALS=a=b".to_string(),
    ];
    want.sort();
    assert_eq!(
        env, want,
        "environment of the isle (nothing from the host, no TERM without -t)"
    );
}

#[test]
fn workdir_sets_the_current_directory() {
    let isl = Islander::new("workdir");
    let out = isl.run_isle(&[], &["pwd"]);
    out.assert_success("pwd");
    assert_eq!(out.stdout_str(), "/\n", "default working directory");
    let out = isl.run_isle(&["-w", "/tmp"], &["pwd"]);
    out.assert_success("-w /tmp pwd");
    assert_eq!(out.stdout_str(), "/tmp\n");
    let out = isl.run_isle(&["--workdir", "/root"], &["pwd"]);
    out.assert_success("--workdir /root pwd");
    assert_eq!(out.stdout_str(), "/root\n");
}

#[test]
fn name_is_accepted() {
    let isl = Islander::new("name");
    isl.run_isle(&["--name", "my-isle"], &["/bin/true"])
        .assert_success("--name my-isle");
}

#[test]
fn a_finished_isle_leaves_nothing() {
    let isl = Islander::new("leftovers");
    let out = isl.run_isle(
        &[],
        &["sh", "-c", "cat /proc/self/cgroup; echo data > /tmp/x"],
    );
    out.assert_success("a short isle");
    isl.assert_no_leftovers(&out.isle_id());
}

#[test]
fn processes_left_by_pid_1_die_with_it() {
    let isl = Islander::new("orphans");
    // The background sleep holds islander's stdout; collecting the output
    // fails if it outlives PID 1.
    let out = isl.run_isle(
        &[],
        &[
            "sh",
            "-c",
            "sleep 1000 & sleep 1000 & cat /proc/self/cgroup",
        ],
    );
    out.assert_success("an isle leaving background processes");
    isl.assert_no_leftovers(&out.isle_id());
}

#[test]
fn fifty_runs_leave_nothing() {
    let isl = Islander::exclusive("fifty-runs");
    let before = islander_cgroup_entries();
    for i in 0..50 {
        isl.run_isle(&[], &["/bin/true"])
            .assert_success(&format!("run {i} of /bin/true"));
    }
    isl.assert_nothing_left(&before);
}
