//! Support library for islander's end-to-end tests.
//!
//! The tests in `tests/*.rs` drive the real `islander` binary as root, the
//! way a user would, and then look at the host (cgroup files, mountinfo,
//! namespaces) to check what it did and that it left nothing behind.
//!
//! Running them:
//!
//! ```text
//! cargo build -p islander && cargo test -p islander-tests
//! ```
//!
//! The binary is `$ISLANDER_BIN`, or `<workspace>/target/debug/islander`.
//! Every test gets its own `--root` under `/var/tmp/islander-tests/roots`;
//! the busybox rootfs and its tarballs are built once per machine under
//! `/var/tmp/islander-tests`.
//!
//! Waiting is done by polling a condition (a line on the isle's stdout, a
//! process exit) with a generous deadline, never by sleeping a fixed time,
//! so the tests hold on a small, busy machine.

mod harness;
pub mod host;
mod lock;
pub mod metrics;
mod rootfs;

pub use harness::{
    islander_bin, parse_isle_id, Islander, OutputExt, RunningIsle, READY_TIMEOUT, RUN_TIMEOUT,
};
pub use host::{cgroup_mount, islander_cgroup_entries, isle_cgroup, read_isle_cgroup, root_device};
pub use rootfs::{busybox_rootfs, busybox_tar, busybox_tar_gz, cache_dir};
