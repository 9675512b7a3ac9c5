//! eBPF observability: programs from islander-ebpf, loaded and read here.
//!
//! The object is built by islander/build.rs and embedded in the binary, so a
//! running engine never needs the eBPF toolchain. For now it holds one
//! program, [`ExecCounter`], which counts `execve`s per cgroup2 directory;
//! each isle gets its own directory under the cgroup2 mount, so its count is
//! the one for that directory's id (see [`cgroup2_id`]).

mod exec_counter;
mod fs;
mod logs;

use std::path::PathBuf;

use thiserror::Error;

pub use exec_counter::ExecCounter;
pub use fs::cgroup2_id;

/// The object file islander-ebpf compiles to, aligned as aya needs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/islander-ebpf"));

/// What went wrong while loading, attaching or reading an eBPF program.
///
/// Each message names the step and the program, map or path involved and
/// ends with the underlying error's text, so one line tells the whole story.
#[derive(Debug, Error)]
pub enum EbpfError {
    #[error("checking which filesystem is mounted at {}: {errno}", path.display())]
    Statfs { path: PathBuf, errno: nix::Error },
    #[error("mounting {fstype} at {}: {errno}", target.display())]
    Mount {
        fstype: &'static str,
        target: PathBuf,
        errno: nix::Error,
    },
    #[error("reading the kernel's BTF from /sys/kernel/btf/vmlinux: {0}")]
    Btf(aya::BtfError),
    #[error("loading the embedded eBPF object: {0}")]
    Object(aya::EbpfError),
    #[error("the embedded eBPF object has no program {0}")]
    NoProgram(&'static str),
    #[error("the embedded eBPF object has no map {0}")]
    NoMap(&'static str),
    #[error("{action} eBPF program {program}: {error}")]
    Program {
        action: &'static str,
        program: &'static str,
        error: aya::programs::ProgramError,
    },
    #[error("{action} eBPF map {map}: {error}")]
    Map {
        action: &'static str,
        map: &'static str,
        error: aya::maps::MapError,
    },
    #[error("opening the eBPF log ring buffer: {0}")]
    Logger(aya_log::Error),
    #[error("starting the eBPF log reader thread: {0}")]
    LogThread(std::io::Error),
}

pub type Result<T, E = EbpfError> = std::result::Result<T, E>;
