//! `islander attach`: re-point a running process's stdin, stdout and stderr
//! at the attacher, relay them to the user's terminal, and give the process
//! its own descriptors back on detach. See docs/attach.md for the design.
//!
//! The pieces, in the order an attach uses them:
//! - [`target`]: what the user named (an isle, or a host pid inside one) and
//!   the checks made before touching it;
//! - [`inject`]: ptrace on a tracer thread of its own: stop the process at
//!   a syscall boundary, run system calls in it, put everything back;
//! - [`seccomp`]: reads the process's seccomp filters and runs them on each
//!   call about to be injected, so that no filter kills it for our calls;
//! - [`channel`]: the unix socket, in the process's network namespace, that
//!   carries the new descriptors into it with SCM_RIGHTS;
//! - [`session`]: the injected sequences that redirect and restore;
//! - [`guard`]: a small process that restores the descriptors should the
//!   attacher die without detaching (SIGKILL);
//! - [`relay`]: the poll loop between the user's terminal and the process;
//! - [`keys`]: Docker's `--detach-keys` format.

#[cfg(target_arch = "x86_64")]
mod channel;
#[cfg(target_arch = "x86_64")]
mod guard;
#[cfg(target_arch = "x86_64")]
mod inject;
pub mod keys;
#[cfg(target_arch = "x86_64")]
mod relay;
#[cfg(target_arch = "x86_64")]
mod seccomp;
#[cfg(target_arch = "x86_64")]
mod session;
pub mod target;

use std::os::fd::RawFd;
use std::path::PathBuf;

use nix::errno::Errno;
use thiserror::Error;

use crate::isle::IsleError;
use crate::paths::StateRoot;
pub use keys::DetachKeys;

#[derive(Debug, Error)]
pub enum AttachError {
    #[error(transparent)]
    Isle(#[from] IsleError),
    #[error("no such isle or process '{0}'")]
    NoSuchTarget(String),
    #[error("pid {pid} is not in a running isle of this islander (its memory cgroup is '{cgroup}'); add --any-pid to attach to it anyway")]
    NotInIsle { pid: i32, cgroup: String },
    #[error("pid {0} is this islander attach itself")]
    Itself(i32),
    #[error("pid {0} is a kernel thread: it has no descriptors to attach to")]
    KernelThread(i32),
    #[error("pid {0} has exited (it is a zombie)")]
    Zombie(i32),
    #[error("pid {0} exited during attach")]
    Exited(i32),
    #[error("ptrace of pid {pid} refused: {reason}")]
    PtraceRefused { pid: i32, reason: String },
    #[error(
        "pid {0} runs in seccomp strict mode, which kills it on any system call but read, write, exit and sigreturn; it was left alone"
    )]
    SeccompStrict(i32),
    #[error("the seccomp filter of pid {pid} would {verdict} on the injected {call}; it was left as it was")]
    SeccompDenies { pid: i32, call: &'static str, verdict: String },
    #[error("pid {pid} runs under a seccomp filter that cannot be read ({errno}), so injecting calls could kill it; it was left alone")]
    SeccompUnreadable { pid: i32, errno: Errno },
    #[error("pid {pid} did not stop within {ms} ms (state: {state}); it was left running and untraced")]
    NoStop { pid: i32, ms: u64, state: String },
    #[error("pid {pid} is not a 64-bit x86 process (code segment {cs:#x}); attach injects x86_64 system calls only")]
    NotX86_64 { pid: i32, cs: u64 },
    #[error("islander attach injects x86_64 system calls and does not support this architecture")]
    UnsupportedArch,
    #[error("pid {0}: no syscall instruction in its vDSO or executable mappings")]
    NoSyscallInstruction(i32),
    #[error("in pid {pid}, the injected {call} failed: {errno}; its descriptors were left as they were")]
    Injected { pid: i32, call: &'static str, errno: Errno },
    #[error("pid {pid}: {what}; its descriptors were left as they were")]
    Lost { pid: i32, what: String },
    #[error("pid {pid} could not have its descriptors back yet ({reason}); the guard process {guard} keeps trying while it runs")]
    RestoreLater { pid: i32, guard: i32, reason: String },
    #[error("pid {0} has neither stdin, stdout nor stderr open: there is nothing to attach to")]
    NothingToAttach(i32),
    #[error("invalid --detach-keys '{0}': use comma-separated keys, each ctrl-<a-z>, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_ or a single character, such as ctrl-p,ctrl-q")]
    BadDetachKeys(String),
    #[error("the channel to pid {pid}: {reason}")]
    Channel { pid: i32, reason: String },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0}: {1}")]
    Sys(&'static str, Errno),
}

pub type Result<T, E = AttachError> = std::result::Result<T, E>;

pub(crate) fn sys(op: &'static str) -> impl FnOnce(Errno) -> AttachError {
    move |e| AttachError::Sys(op, e)
}

pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AttachError {
    let path = path.into();
    move |source| AttachError::Io { op, path, source }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    /// An isle (name, id, id prefix) or a host pid.
    pub target: String,
    /// Accept a pid that is in no isle of this root.
    pub any_pid: bool,
    pub detach_keys: DetachKeys,
    /// Leave the process's stdin alone; relay its output only.
    pub no_stdin: bool,
}

/// The user's side: where input comes from and output goes.
#[derive(Debug, Clone, Copy)]
pub struct UserIo {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
}

impl UserIo {
    pub fn standard() -> UserIo {
        UserIo { stdin: 0, stdout: 1, stderr: 2 }
    }
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The user detached (keys, end of input, a signal): the process got its
    /// descriptors back and runs on.
    Detached,
    /// The process ended while attached; the status is known when it was an
    /// isle's PID 1 (from the isle's record).
    Exited(Option<i32>),
}

/// Attaches to the process `req` names and relays it to `io` until a
/// detach or its end.
pub fn attach(root: &StateRoot, req: &AttachRequest, io: UserIo) -> crate::Result<Outcome> {
    let target = target::resolve(root, &req.target, req.any_pid)?;
    run(root, &target, req, io).map_err(Into::into)
}

#[cfg(target_arch = "x86_64")]
fn run(root: &StateRoot, target: &target::Target, req: &AttachRequest, io: UserIo) -> Result<Outcome> {
    session::run(root, target, req, io)
}

#[cfg(not(target_arch = "x86_64"))]
fn run(_root: &StateRoot, _target: &target::Target, _req: &AttachRequest, _io: UserIo) -> Result<Outcome> {
    Err(AttachError::UnsupportedArch)
}
