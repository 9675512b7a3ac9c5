//! Bad input to the lifecycle verbs: each is one `islander:` line naming
//! what was wrong, status 125, and the isles and their state stay as they
//! were.

mod lifecycle_support;

use islander_tests::{Islander, OutputExt};
use lifecycle_support::{
    assert_one_line_error, row, start, state_snapshot, wait_one, wait_running,
};

/// Runs `args`, expecting the error `want`, and checks nothing changed.
fn refused(isl: &Islander, args: &[&str], want: &str) {
    let before = state_snapshot(isl);
    let out = isl.run(args);
    assert_one_line_error(&out, want, &format!("islander {}", args.join(" ")));
    let after = state_snapshot(isl);
    assert_eq!(
        before,
        after,
        "islander {} changed the state",
        args.join(" ")
    );
}

#[test]
fn unknown_isles_are_named() {
    let isl = Islander::new("lc-err-unknown");
    let live = start(&isl, &["--name", "live"], &["sleep", "1000"]);
    wait_running(&isl, &live.id);
    let want = "no such isle 'nosuch'";
    for verb in [
        &["logs"][..],
        &["logs", "-f"],
        &["stop"],
        &["kill"],
        &["rm"],
        &["rm", "-f"],
        &["inspect"],
    ] {
        let mut args = verb.to_vec();
        args.push("nosuch");
        refused(&isl, &args, want);
    }
    // One bad name among good ones: nothing is done to the good ones.
    refused(&isl, &["stop", "live", "nosuch"], want);
    refused(&isl, &["rm", "-f", "live", "nosuch"], want);
    refused(&isl, &["kill", "live", "nosuch"], want);
    assert_eq!(row(&isl, &live.id)["status"], "running");
}

#[test]
fn an_ambiguous_prefix_lists_what_it_matches() {
    let isl = Islander::new("lc-err-ambiguous");
    // Ids are random: among 17 isles two share a first hex digit.
    let mut isles = Vec::new();
    let prefix = loop {
        let isle = start(&isl, &[], &["true"]);
        let c = isle.id[..1].to_string();
        let clash = isles
            .iter()
            .any(|i: &lifecycle_support::Isle| i.id.starts_with(&c));
        isles.push(isle);
        if clash {
            break c;
        }
    };
    for i in &isles {
        wait_one(&isl, &i.id);
    }
    let matching: Vec<&str> = isles
        .iter()
        .filter(|i| i.id.starts_with(&prefix))
        .map(|i| i.id.as_str())
        .collect();
    let want = format!(
        "isle prefix '{prefix}' is ambiguous: matches {} isles (",
        matching.len()
    );
    for args in [
        vec!["rm", &prefix],
        vec!["inspect", &prefix],
        vec!["logs", &prefix],
    ] {
        refused(&isl, &args, &want);
        let out = isl.run(&args);
        for id in &matching {
            assert!(
                out.stderr_str().contains(&id[..12]),
                "the error lists {}: {}",
                &id[..12],
                out.describe()
            );
        }
    }
    // A longer prefix is not ambiguous.
    isl.run(&["inspect", &matching[0][..12]])
        .assert_success("inspect by a 12-digit prefix");
}

#[test]
fn a_duplicate_name_is_refused() {
    let isl = Islander::new("lc-err-dup");
    let first = start(&isl, &["--name", "dup"], &["sleep", "1000"]);
    wait_running(&isl, &first.id);
    let rootfs = lifecycle_support::rootfs(&isl);
    refused(
        &isl,
        &[
            "run",
            "-d",
            "--name",
            "dup",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "true",
        ],
        &format!("the name 'dup' is already used by isle {}", first.short()),
    );
    refused(
        &isl,
        &[
            "run",
            "--name",
            "dup",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "true",
        ],
        &format!("the name 'dup' is already used by isle {}", first.short()),
    );
}

#[test]
fn rm_of_a_running_isle_needs_force() {
    let isl = Islander::new("lc-err-rm");
    let live = start(&isl, &["--name", "busy"], &["sleep", "1000"]);
    wait_running(&isl, &live.id);
    refused(
        &isl,
        &["rm", "busy"],
        "isle busy is running; stop it first or use rm -f",
    );
    refused(
        &isl,
        &["delete", "busy"],
        "isle busy is running; stop it first or use rm -f",
    );
    assert_eq!(row(&isl, &live.id)["status"], "running");
}

#[test]
fn stop_and_kill_of_an_exited_isle_are_errors() {
    let isl = Islander::new("lc-err-stopped");
    let done = start(&isl, &["--name", "done"], &["sh", "-c", "exit 4"]);
    let first = wait_one(&isl, &done.id);
    let why = lifecycle_support::describe(&isl, &done.id);
    assert_eq!(first["status"], "exited(4)", "{first:#}\n{why}");
    refused(&isl, &["stop", "done"], "isle done is not running");
    refused(&isl, &["kill", "done"], "isle done is not running");
    refused(
        &isl,
        &["stop", done.short()],
        &format!("isle {} is not running", done.short()),
    );
    assert_eq!(row(&isl, &done.id)["status"], "exited(4)");
}

#[test]
fn an_unknown_signal_is_named_with_the_accepted_forms() {
    let isl = Islander::new("lc-err-signal");
    let live = start(&isl, &["--name", "sig"], &["sleep", "1000"]);
    wait_running(&isl, &live.id);
    for bad in ["FOO", "SIGFOO", "0", "65", "-9", "9x"] {
        refused(&isl, &["kill", "-s", bad, "sig"], &format!("invalid signal '{bad}': use a name such as TERM or SIGTERM (any case) or a number from 1 to 64"));
    }
    assert_eq!(row(&isl, &live.id)["status"], "running");
}
