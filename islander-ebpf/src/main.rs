//! islander's eBPF programs, compiled for `bpfel-unknown-none` by
//! islander/build.rs and embedded in the engine.
//!
//! Everything is keyed by the cgroup2 id of an isle. User space adds an
//! isle's `ISLES` entry when it registers the isle; the programs never add
//! one, so for a process outside every isle each hook costs a cgroup id read
//! and one failed hash lookup. What the hooks are and why:
//!
//! - `syscalls`: BTF tracepoint `sys_enter`: fentry programs cannot be
//!   loaded on these kernels (EPERM), and a classic tracepoint costs about
//!   three times as much. Syscall numbers are x86_64's; a 32-bit task's
//!   syscalls are skipped rather than given another table's names.
//! - `execs`: BTF tracepoint `sched_process_exec`, in the exec'ing task.
//! - `oom_kills`: BTF tracepoint `mark_victim`, which runs in the killer's
//!   context, so the victim's cgroup is read from the task it names. The
//!   kernel also marks a task that is already exiting without killing it;
//!   that counts too, where the memory cgroup's own oom_kill does not.
//! - `block_dirty`: BTF tracepoint `writeback_dirty_folio`. In hybrid cgroup
//!   mode writeback is charged to the flusher thread, so a buffered write is
//!   counted where it happens, in the writer, when it makes a clean page
//!   cache folio dirty (as the kernel's own per-task write_bytes does).
//! - `block_bio`: BTF tracepoint `block_bio_queue`, in the submitting task:
//!   reads (buffered misses, readahead and direct) and direct writes. A
//!   write bio whose page is under writeback is the page cache being written
//!   out (by fsync in the isle, say); its bytes were counted when dirtied,
//!   so it is skipped rather than counted twice.
//! - `net_ingress`/`net_egress`: cgroup_skb, attached to each isle's cgroup2
//!   directory when it is registered, so other traffic never runs them.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    bindings::{pt_regs, BPF_ANY, BPF_F_NO_PREALLOC},
    helpers::{bpf_get_current_cgroup_id, bpf_probe_read_kernel, bpf_skb_cgroup_id},
    macros::{btf_tracepoint, cgroup_skb, map},
    maps::PerCpuHashMap,
    programs::{BtfTracePointContext, SkBuffContext},
    EbpfContext,
};
use aya_log_ebpf::error;
use islander_common::{
    BlockKey, BlockStats, IsleStats, KernelLayout, MAX_BLOCK_ENTRIES, MAX_ISLES, SYSCALL_SLOTS,
};

/// Per-CPU, so CPUs counting for one isle never share a cache line or race;
/// user space sums the slots. Not preallocated: a 4 KiB value per CPU and
/// per possible isle would be tens of MiB that mostly sit unused.
#[map]
static ISLES: PerCpuHashMap<u64, IsleStats> =
    PerCpuHashMap::with_max_entries(MAX_ISLES, BPF_F_NO_PREALLOC);

#[map]
static BLOCK: PerCpuHashMap<BlockKey, BlockStats> =
    PerCpuHashMap::with_max_entries(MAX_BLOCK_ENTRIES, BPF_F_NO_PREALLOC);

/// Filled in by user space from the kernel's BTF before loading (see
/// `KernelLayout`); read-only, so the verifier knows every offset.
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout::UNRESOLVED;

/// __USER32_CS: the code segment of a 32-bit task, whose syscall numbers
/// are from another table.
const USER32_CS: u64 = 0x23;
/// REQ_OP_MASK in bio.bi_opf, and the two operations counted.
const REQ_OP_MASK: u32 = 0xff;
const REQ_OP_READ: u32 = 0;
const REQ_OP_WRITE: u32 = 1;
const PAGE_SIZE: u64 = 4096;

#[inline(always)]
fn layout() -> KernelLayout {
    // SAFETY: a plain read of a static; volatile so the compiler keeps the
    // load from the map rather than folding in the placeholder zeros.
    unsafe { core::ptr::read_volatile(&LAYOUT) }
}

#[inline(always)]
fn current_isle() -> Option<(u64, *mut IsleStats)> {
    // SAFETY: the helper takes no arguments and is allowed in tracing programs.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    ISLES.get_ptr_mut(cgroup).map(|stats| (cgroup, stats))
}

/// Reads a `T` at `base + offset` in kernel memory; `None` if that faults.
#[inline(always)]
fn read<T>(base: *const u8, offset: u32) -> Option<T> {
    // The verifier allows arithmetic on a BTF pointer (a tracepoint
    // argument) only once it is known not to be null.
    if base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of
    // faulting; the pointer arithmetic itself touches nothing.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()).ok() }
}

#[btf_tracepoint(function = "sys_enter")]
pub fn syscalls(ctx: BtfTracePointContext) -> u32 {
    let Some((_, stats)) = current_isle() else {
        return 0;
    };
    let regs: *const pt_regs = ctx.arg(0);
    // SAFETY: the tracepoint's first argument is the task's saved user
    // registers, which the verifier lets a BTF program read directly.
    if unsafe { (*regs).cs } & 0xffff == USER32_CS {
        return 0;
    }
    let nr: i64 = ctx.arg(1);
    if let Ok(nr) = usize::try_from(nr) {
        if nr < SYSCALL_SLOTS {
            // SAFETY: this CPU's slot of a live entry; only this CPU writes
            // it and a program does not nest on one CPU.
            unsafe { (*stats).syscalls[nr] += 1 };
        }
    }
    0
}

/// Runs in the exec'ing task once the new image is in place, so the cgroup
/// read here is the one the new program runs in.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn execs(_ctx: BtfTracePointContext) -> u32 {
    if let Some((_, stats)) = current_isle() {
        // SAFETY: as in `syscalls`.
        unsafe { (*stats).execs += 1 };
    }
    0
}

#[btf_tracepoint(function = "mark_victim")]
pub fn oom_kills(ctx: BtfTracePointContext) -> u32 {
    let l = layout();
    if l.resolved == 0 {
        return 0;
    }
    let victim: *const u8 = ctx.arg(0);
    let Some(cgroup) = task_cgroup_id(&l, victim) else {
        return 0;
    };
    if let Some(stats) = ISLES.get_ptr_mut(cgroup) {
        // SAFETY: as in `syscalls`.
        unsafe { (*stats).oom_kills += 1 };
    }
    0
}

/// task->cgroups->dfl_cgrp->kn->id: the cgroup2 id of any task.
#[inline(always)]
fn task_cgroup_id(l: &KernelLayout, task: *const u8) -> Option<u64> {
    let css_set: *const u8 = read(task, l.task_cgroups)?;
    let cgroup: *const u8 = read(css_set, l.css_set_dfl_cgrp)?;
    let kn: *const u8 = read(cgroup, l.cgroup_kn)?;
    read(kn, l.kernfs_node_id)
}

#[btf_tracepoint(function = "writeback_dirty_folio")]
pub fn block_dirty(ctx: BtfTracePointContext) -> u32 {
    let Some((cgroup, _)) = current_isle() else {
        return 0;
    };
    let l = layout();
    if l.resolved == 0 {
        return 0;
    }
    let folio: *const u8 = ctx.arg(0);
    let mapping: *const u8 = ctx.arg(1);
    let Some(dev) = mapping_dev(&l, mapping) else {
        return 0;
    };
    // Major 0 is an anonymous device: tmpfs, overlayfs' own inodes, a block
    // device node's inode. No disk is behind those pages.
    if dev >> 20 == 0 {
        return 0;
    }
    let Some(flags) = read::<u64>(folio, l.folio_flags) else {
        return 0;
    };
    let order = if flags & (1 << l.pg_head) != 0 {
        read::<u64>(folio, l.folio_flags_1).map_or(0, |f| f & 0xff)
    } else {
        0
    };
    add_block(&ctx, cgroup, dev, true, PAGE_SIZE << (order & 63));
    0
}

/// mapping->host->i_sb->s_dev
#[inline(always)]
fn mapping_dev(l: &KernelLayout, mapping: *const u8) -> Option<u32> {
    let inode: *const u8 = read(mapping, l.mapping_host)?;
    let sb: *const u8 = read(inode, l.inode_sb)?;
    read(sb, l.sb_dev)
}

#[btf_tracepoint(function = "block_bio_queue")]
pub fn block_bio(ctx: BtfTracePointContext) -> u32 {
    let Some((cgroup, _)) = current_isle() else {
        return 0;
    };
    let l = layout();
    if l.resolved == 0 {
        return 0;
    }
    let bio: *const u8 = ctx.arg(0);
    let Some(opf) = read::<u32>(bio, l.bio_opf) else {
        return 0;
    };
    let write = match opf & REQ_OP_MASK {
        REQ_OP_READ => false,
        REQ_OP_WRITE => true,
        // Flushes, discards, zone commands: no data moves.
        _ => return 0,
    };
    let Some(size) = read::<u32>(bio, l.bio_size) else {
        return 0;
    };
    if size == 0 {
        return 0;
    }
    let Some(dev) =
        read::<*const u8>(bio, l.bio_bdev).and_then(|bdev| read::<u32>(bdev, l.bdev_dev))
    else {
        return 0;
    };
    if write && writes_back_page_cache(&l, bio) {
        return 0;
    }
    add_block(&ctx, cgroup, dev, write, u64::from(size));
    0
}

/// Whether the bio's first page is page cache under writeback. Direct IO
/// writes user memory, which is never in that state. A tail page of a large
/// folio carries no flags of its own; its head (compound_head - 1) does.
#[inline(always)]
fn writes_back_page_cache(l: &KernelLayout, bio: *const u8) -> bool {
    let Some(vec) = read::<*const u8>(bio, l.bio_io_vec) else {
        return false;
    };
    let Some(mut page) = read::<*const u8>(vec, l.bvec_page) else {
        return false;
    };
    if let Some(head) = read::<u64>(page, l.page_compound_head) {
        if head & 1 != 0 {
            page = (head - 1) as *const u8;
        }
    }
    read::<u64>(page, l.page_flags).is_some_and(|flags| flags & (1 << l.pg_writeback) != 0)
}

#[inline(always)]
fn add_block<C: EbpfContext>(ctx: &C, cgroup: u64, dev: u32, write: bool, bytes: u64) {
    let key = BlockKey {
        cgroup,
        dev,
        _pad: 0,
    };
    if let Some(stats) = BLOCK.get_ptr_mut(key) {
        // SAFETY: as in `syscalls`.
        let stats = unsafe { &mut *stats };
        if write {
            stats.write_bytes += bytes;
            stats.writes += 1;
        } else {
            stats.read_bytes += bytes;
            stats.reads += 1;
        }
        return;
    }
    let first = if write {
        BlockStats {
            write_bytes: bytes,
            writes: 1,
            ..BlockStats::default()
        }
    } else {
        BlockStats {
            read_bytes: bytes,
            reads: 1,
            ..BlockStats::default()
        }
    };
    // BPF_ANY rather than BPF_NOEXIST: if another CPU created the entry since
    // the lookup, the update still writes only this CPU's slot, which was 0.
    if let Err(errno) = BLOCK.insert(key, first, u64::from(BPF_ANY)) {
        error!(
            ctx,
            "block IO of cgroup {} on device {}:{} goes uncounted: map insert failed with {} (the map holds {} isle/device pairs)",
            cgroup,
            dev >> 20,
            dev & 0xfffff,
            errno,
            MAX_BLOCK_ENTRIES
        );
    }
}

#[cgroup_skb(ingress)]
pub fn net_ingress(ctx: SkBuffContext) -> i32 {
    count_skb(&ctx, false);
    // Observe only: let every packet through.
    1
}

#[cgroup_skb(egress)]
pub fn net_egress(ctx: SkBuffContext) -> i32 {
    count_skb(&ctx, true);
    1
}

#[inline(always)]
fn count_skb(ctx: &SkBuffContext, egress: bool) {
    // The socket's cgroup, not the current task's: ingress runs in softirq.
    // SAFETY: the helper only reads the skb the context hands us.
    let cgroup = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    let Some(stats) = ISLES.get_ptr_mut(cgroup) else {
        return;
    };
    let bytes = u64::from(ctx.len());
    // A GSO skb stands for several packets on the wire.
    // SAFETY: gso_segs is a readable field of the context.
    let packets = u64::from(unsafe { (*ctx.skb.skb).gso_segs }.max(1));
    // SAFETY: this CPU's slot of a live entry. Egress runs in process
    // context and in softirq (a TCP ACK), so a softirq can land between one
    // run's load and store on this CPU and one of the two updates is lost.
    // The window is a few instructions, and the BPF target has no atomic
    // fetch-add in stable Rust to close it.
    let stats = unsafe { &mut *stats };
    if egress {
        stats.tx_bytes += bytes;
        stats.tx_packets += packets;
    } else {
        stats.rx_bytes += bytes;
        stats.rx_packets += packets;
    }
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
