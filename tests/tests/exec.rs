//! `islander exec`: a second process in a running isle's namespaces and
//! cgroups, with the isle's hardening, its exit status passed through.

use std::time::Duration;

use islander_tests::{Islander, OutputExt};

#[test]
fn exec_joins_the_isles_namespaces_and_cgroups() {
    let isl = Islander::new("exec_joins");
    let mut isle = isl.spawn(&["--hostname", "execbox"], "touch /tmp/marker", "");
    let id = isle.id().to_string();
    let pid1 = isle.pid1();

    let out = isl.run(&[
        "exec",
        &id[..12],
        "sh",
        "-c",
        "hostname; cat /proc/1/comm; ls /tmp/marker; grep memory /proc/self/cgroup; readlink /proc/self/ns/net",
    ]);
    out.assert_success("islander exec");
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "execbox", "same UTS namespace:\n{text}");
    assert_eq!(lines[1], "sh", "sees the isle's PID 1 as pid 1:\n{text}");
    assert_eq!(lines[2], "/tmp/marker", "same root file system:\n{text}");
    assert!(lines[3].ends_with(&format!("/islander/{id}")), "joined the isle's memory cgroup:\n{text}");
    let isle_net = std::fs::read_link(format!("/proc/{pid1}/ns/net")).expect("isle's netns");
    assert_eq!(lines[4], isle_net.to_string_lossy(), "same network namespace:\n{text}");

    isle.send_line("done");
    isle.wait().assert_success("the isle");
}

#[test]
fn exec_passes_the_exit_status_env_and_workdir() {
    let isl = Islander::new("exec_status");
    let mut isle = isl.spawn(&[], "", "");
    let id = isle.id().to_string();
    isl.run(&["exec", &id, "sh", "-c", "exit 9"]).assert_code(9, "exit status");
    let out = isl.run(&["exec", "-e", "GREETING=hi", "-w", "/tmp", &id, "sh", "-c", "echo $GREETING; pwd"]);
    out.assert_success("exec with env and workdir");
    assert_eq!(out.stdout_str(), "hi\n/tmp\n");
    let out = isl.run(&["exec", &id, "no-such-command"]);
    assert_eq!(out.code(), Some(127), "{}", out.describe());
    assert!(out.stderr_str().contains("'no-such-command' not found"), "{}", out.describe());
    // The exec'd command is hardened like the isle: Docker's 14 capabilities.
    let out = isl.run(&["exec", &id, "grep", "CapBnd", "/proc/self/status"]);
    assert_eq!(out.stdout_str().split_whitespace().last(), Some("00000000a80425fb"), "{}", out.describe());
    isle.send_line("done");
    isle.wait().assert_success("the isle");
}

#[test]
fn exec_refuses_an_isle_that_is_not_running() {
    let isl = Islander::new("exec_refuses");
    let out = isl.run(&["exec", "nosuchisle", "true"]);
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    assert!(out.stderr_str().contains("no such isle 'nosuchisle'"), "{}", out.describe());

    let out = isl.run_isle(&["-d"], &["true"]);
    out.assert_success("run -d true");
    let id = out.stdout_str().trim().to_string();
    // Wait (bounded) until the detached isle has exited.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = std::fs::read_to_string(isl.isles_run_dir().join(&id).join("state.json")).unwrap_or_default();
        if state.contains("\"exited\"") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the isle never exited: {state}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = isl.run(&["exec", &id, "true"]);
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    assert!(out.stderr_str().contains("is not running"), "{}", out.describe());
    isl.run(&["rm", &id]).assert_success("rm of the exited isle");
}
