//! Not a test: the part of `cargo xtask bench syscalls` that needs the
//! islander library, which xtask must not link (its `setup` installs the
//! toolchain islander's build script needs). The bench builds this binary
//! and runs the one ignored function below with a request in the
//! environment; run without one it does nothing.
//!
//! Requests (ISLANDER_BENCH_HELPER):
//! - `attach`: attach islander's programs (pinned, so they stay attached);
//! - `register PATH`: attach, and count the cgroup2 directory PATH as an isle;
//! - `count PATH`: print `getpid N`, N the getpid calls counted for PATH.

use std::path::Path;

use islander::ebpf::{cgroup2_id, Observer};

const REQUEST: &str = "ISLANDER_BENCH_HELPER";

#[test]
#[ignore = "run by cargo xtask bench syscalls"]
fn bench_helper() {
    let Ok(request) = std::env::var(REQUEST) else {
        return;
    };
    let observer = Observer::attach().unwrap_or_else(|err| panic!("{err}"));
    let (verb, path) = request.split_once(' ').unwrap_or((request.as_str(), ""));
    let id = || cgroup2_id(Path::new(path)).unwrap_or_else(|err| panic!("{err}"));
    match verb {
        "attach" => {}
        "register" => observer
            .register(id())
            .unwrap_or_else(|err| panic!("{err}")),
        "count" => {
            let counters = observer.isle(id()).unwrap_or_else(|err| panic!("{err}"));
            let getpid = counters
                .syscalls
                .iter()
                .find(|&&(nr, _)| i64::from(nr) == libc::SYS_getpid)
                .map_or(0, |&(_, n)| n);
            println!("getpid {getpid}");
        }
        other => panic!(
            "unknown {REQUEST} request '{other}' (accepted: attach, register PATH, count PATH)"
        ),
    }
}
