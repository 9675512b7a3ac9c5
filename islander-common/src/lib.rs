//! What islander's eBPF programs and its user space must agree on.
//!
//! `#![no_std]` so the eBPF crate can use it. Every struct that crosses the
//! kernel/user boundary is `#[repr(C)]`, `Copy` and free of implicit padding
//! (u32 flags rather than bool), with its `unsafe impl aya::Pod` behind the
//! `user` feature, which only user space enables.
#![no_std]

/// How many cgroups (isles) can be observed at once. Past this, `register`
/// fails with the map's "no space" error.
pub const MAX_ISLES: u32 = 4096;

/// How many (isle, device) pairs the block counters can hold. An isle
/// usually touches one or two devices; past this the programs log an error
/// and the IO goes uncounted.
pub const MAX_BLOCK_ENTRIES: u32 = 16384;

/// One counter per x86_64 syscall number. The highest number in 6.18 is
/// 469 (`file_setattr`); x32 numbers (bit 30 set) and anything past this
/// are not counted.
pub const SYSCALL_SLOTS: usize = 512;

/// Map names (the statics' names in islander-ebpf), which are also the
/// file names their pins get.
pub const ISLES_MAP: &str = "ISLES";
pub const BLOCK_MAP: &str = "BLOCK";
/// aya-log-ebpf's ring buffer. islander pins it with the others so every
/// islander process can forward the programs' records, whichever loaded them.
pub const LOGS_MAP: &str = "AYA_LOGS";
/// The kernel structure layout the programs read (see [`KernelLayout`]).
pub const LAYOUT_GLOBAL: &str = "LAYOUT";

/// What a program hooks: its name in islander-ebpf (which is also its pin's
/// file name) and the tracepoint it attaches to, or `None` for the cgroup_skb
/// programs, which are attached per isle.
pub struct ProgramSpec {
    pub name: &'static str,
    pub tracepoint: Option<&'static str>,
}

pub const PROGRAMS: [ProgramSpec; 7] = [
    ProgramSpec {
        name: "syscalls",
        tracepoint: Some("sys_enter"),
    },
    ProgramSpec {
        name: "execs",
        tracepoint: Some("sched_process_exec"),
    },
    ProgramSpec {
        name: "oom_kills",
        tracepoint: Some("mark_victim"),
    },
    ProgramSpec {
        name: "block_dirty",
        tracepoint: Some("writeback_dirty_folio"),
    },
    ProgramSpec {
        name: "block_bio",
        tracepoint: Some("block_bio_queue"),
    },
    ProgramSpec {
        name: "net_ingress",
        tracepoint: None,
    },
    ProgramSpec {
        name: "net_egress",
        tracepoint: None,
    },
];

pub const NET_INGRESS_PROGRAM: &str = "net_ingress";
pub const NET_EGRESS_PROGRAM: &str = "net_egress";

/// Everything counted for one isle, keyed by its cgroup2 id in the per-CPU
/// `ISLES` map. User space creates the entry when an isle is registered;
/// the programs only ever look entries up, so a process outside every isle
/// costs one failed hash lookup and nothing more.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IsleStats {
    /// Indexed by syscall number.
    pub syscalls: [u64; SYSCALL_SLOTS],
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub oom_kills: u64,
    pub execs: u64,
}

impl IsleStats {
    pub const ZERO: IsleStats = IsleStats {
        syscalls: [0; SYSCALL_SLOTS],
        rx_bytes: 0,
        tx_bytes: 0,
        rx_packets: 0,
        tx_packets: 0,
        oom_kills: 0,
        execs: 0,
    };
}

/// Key of the per-CPU `BLOCK` map: an isle and a device.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BlockKey {
    pub cgroup: u64,
    /// The kernel's dev_t: major in the high 12 bits, minor in the low 20.
    pub dev: u32,
    pub _pad: u32,
}

impl BlockKey {
    pub fn major(&self) -> u32 {
        self.dev >> 20
    }

    pub fn minor(&self) -> u32 {
        self.dev & 0xfffff
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct BlockStats {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// Byte offsets of the kernel structure members the programs read, and the
/// page flag bits they test. aya-ebpf has no CO-RE relocations for Rust, so
/// user space looks these up in /sys/kernel/btf/vmlinux and writes them into
/// the object's read-only `LAYOUT` global before loading; the verifier then
/// sees constants. `resolved` stays 0 in an object nobody filled in, and the
/// programs that need the layout do nothing then.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    pub resolved: u32,
    /// task_struct.cgroups -> css_set.dfl_cgrp -> cgroup.kn -> kernfs_node.id
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// folio.flags, and folio._flags_1 whose low byte is a large folio's order
    pub folio_flags: u32,
    pub folio_flags_1: u32,
    /// address_space.host -> inode.i_sb -> super_block.s_dev
    pub mapping_host: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
    /// bio.bi_opf, bio.bi_iter.bi_size, bio.bi_bdev -> block_device.bd_dev
    pub bio_opf: u32,
    pub bio_size: u32,
    pub bio_bdev: u32,
    pub bdev_dev: u32,
    /// bio.bi_io_vec -> bio_vec.bv_page -> page.flags / page.compound_head
    pub bio_io_vec: u32,
    pub bvec_page: u32,
    pub page_flags: u32,
    pub page_compound_head: u32,
    /// Bit numbers in enum pageflags.
    pub pg_head: u32,
    pub pg_writeback: u32,
}

impl KernelLayout {
    /// What the object holds until user space fills it in.
    pub const UNRESOLVED: KernelLayout = KernelLayout {
        resolved: 0,
        task_cgroups: 0,
        css_set_dfl_cgrp: 0,
        cgroup_kn: 0,
        kernfs_node_id: 0,
        folio_flags: 0,
        folio_flags_1: 0,
        mapping_host: 0,
        inode_sb: 0,
        sb_dev: 0,
        bio_opf: 0,
        bio_size: 0,
        bio_bdev: 0,
        bdev_dev: 0,
        bio_io_vec: 0,
        bvec_page: 0,
        page_flags: 0,
        page_compound_head: 0,
        pg_head: 0,
        pg_writeback: 0,
    };
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all four): #[repr(C)], Copy, every field an integer or an
    // array of them, laid out without padding, so any bit pattern is valid.
    unsafe impl aya::Pod for super::IsleStats {}
    unsafe impl aya::Pod for super::BlockKey {}
    unsafe impl aya::Pod for super::BlockStats {}
    unsafe impl aya::Pod for super::KernelLayout {}
}
