//! What islander's eBPF programs and its user space must agree on.
//!
//! `#![no_std]` so the eBPF crate can use it. Any struct that crosses the
//! kernel/user boundary belongs here as `#[repr(C)]`, `Copy` and free of
//! implicit padding (u32 flags rather than bool), with its `unsafe impl
//! aya::Pod` behind the `user` feature, which only user space enables. The
//! exec counter needs no such struct: its map is keyed and valued by plain
//! `u64`s, which aya already treats as `Pod`.
#![no_std]

/// Name of the exec-counting program (the function name in islander-ebpf).
pub const EXEC_COUNT_PROGRAM: &str = "exec_count";

/// Kernel function whose BTF tracepoint the exec counter attaches to.
pub const EXEC_COUNT_TRACEPOINT: &str = "sched_process_exec";

/// Name of the per-CPU hash map from cgroup2 id to exec count (the static's
/// name in islander-ebpf).
pub const EXEC_COUNTS_MAP: &str = "EXEC_COUNTS";

/// How many cgroups the exec counter can track at once. Each isle has one
/// cgroup2 directory and processes outside any isle share the root's entry;
/// past this, execs in new cgroups go uncounted and the program logs an error.
pub const MAX_TRACKED_CGROUPS: u32 = 4096;
