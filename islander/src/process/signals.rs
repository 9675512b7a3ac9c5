//! The signals islander forwards to an isle, received through a signalfd.
//!
//! They are blocked before the isle is cloned, so that none arriving during
//! set-up kills islander before it can clean up; the isle's init unblocks
//! them again just before exec.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{ProcessError, Result};

/// Forwarded to the isle's PID 1 when islander receives them.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCONT,
];

pub fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set.add(Signal::SIGPIPE);
    set
}

/// Blocks the handled signals in this (single-threaded) process and returns
/// a signalfd reading them.
pub fn block() -> Result<SignalFd> {
    let set = handled_set();
    set.thread_block().map_err(|e| ProcessError::Sys("blocking signals", e))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| ProcessError::Sys("signalfd", e))
}

/// Undoes [`block`]: the isle's init calls this before exec, so the command
/// starts with an empty signal mask as any program expects.
pub fn unblock_all() -> Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| ProcessError::Sys("sigprocmask", e))
}
