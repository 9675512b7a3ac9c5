//! islander's eBPF programs, compiled for `bpfel-unknown-none` by
//! islander/build.rs and embedded in the engine.
//!
//! The crate is `no_std`/`no_main` only on the BPF target. On the host it is
//! an ordinary binary that says what it is, so `cargo build --workspace` and
//! `cargo clippy --workspace` still compile (and check) the program code
//! instead of failing on a missing `main` and a duplicate panic handler.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::bpf_get_current_cgroup_id,
    macros::{btf_tracepoint, map},
    maps::PerCpuHashMap,
    programs::BtfTracePointContext,
};
use aya_log_ebpf::error;
use islander_common::MAX_TRACKED_CGROUPS;

/// Execs per cgroup2 id. Per-CPU, so two CPUs exec'ing in the same cgroup
/// never race on one counter; user space sums the slots.
#[map]
static EXEC_COUNTS: PerCpuHashMap<u64, u64> =
    PerCpuHashMap::with_max_entries(MAX_TRACKED_CGROUPS, 0);

/// Runs in the exec'ing task once the new image is in place, so the cgroup
/// read here is the one the new program runs in.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn exec_count(ctx: BtfTracePointContext) -> u32 {
    match try_exec_count(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

fn try_exec_count(ctx: &BtfTracePointContext) -> Result<u32, u32> {
    // SAFETY: the helper takes no arguments and is allowed in tracing programs.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    match EXEC_COUNTS.get_ptr_mut(cgroup) {
        // SAFETY: the pointer is this CPU's slot of a live element; only this
        // CPU writes it and the program cannot nest on one CPU.
        Some(count) => unsafe { *count += 1 },
        None => {
            // BPF_ANY rather than BPF_NOEXIST: if another CPU created the
            // entry since the lookup, the update still writes only this CPU's
            // slot, which is 0 + 1.
            if let Err(errno) = EXEC_COUNTS.insert(cgroup, 1, u64::from(BPF_ANY)) {
                error!(
                    ctx,
                    "exec_count: cannot track cgroup {}: map insert failed with {} (the map holds {} cgroups)",
                    cgroup,
                    errno,
                    MAX_TRACKED_CGROUPS
                );
                return Err(1);
            }
        }
    }
    Ok(0)
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!(
        "islander-ebpf is an eBPF object for bpfel-unknown-none; islander's build.rs builds and embeds it"
    );
    std::process::exit(2);
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program whose code could reach a panic, so
    // this is never executed.
    loop {}
}

/// GPL-compatible, which the kernel requires for tracing helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
