//! The guard: a child of the attacher that gives the process its
//! descriptors back should the attacher die without detaching.
//!
//! Once attached, the process's stdout is a pipe whose only reader is the
//! attacher. Were the attacher killed (SIGKILL cannot be caught), the
//! process's next write would meet a pipe without reader: EPIPE and
//! SIGPIPE, which kills most programs. The guard is forked right after the
//! redirect, in a session of its own (the terminal's hangup and signals are
//! not for it), with the attacher's signals still blocked, so only SIGKILL
//! ends it. It holds copies of everything the attacher holds, so the
//! channel outlives the attacher, and waits on a pipe, the lifeline:
//! `d` means the attacher is done (detached or the process ended), `e`
//! that the user ended the process's input; end of file without `d` means
//! the attacher died, and the guard restores the descriptors itself (the
//! restore is idempotent), draining the channel into the log. It also ends
//! when the process does.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use super::relay;
use super::session::{self, Attached};
use super::{sys, AttachError, Result};

/// How often the guard tries again to give the descriptors back.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Guard {
    pid: Option<Pid>,
    lifeline: Option<OwnedFd>,
}

impl Guard {
    /// Forks the guard. Called while islander has no other thread.
    pub fn start(att: &mut Attached) -> Result<Guard> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        // SAFETY: islander attach is single-threaded here (the tracer and
        // namespace threads have been joined), so the child may allocate.
        match unsafe { fork() }.map_err(sys("fork"))? {
            ForkResult::Child => {
                drop(w);
                watch(att, r)
            }
            ForkResult::Parent { child } => Ok(Guard { pid: Some(child), lifeline: Some(w) }),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid.map(|p| p.as_raw()).unwrap_or(0)
    }

    /// The user ended the process's input: the guard drops its copy too,
    /// or the process would never see end of file.
    pub fn input_closed(&self) {
        if let Some(w) = &self.lifeline {
            let _ = nix::unistd::write(w.as_fd(), b"e");
        }
    }

    /// The attacher is done; the guard may go.
    pub fn done(&mut self) {
        if let Some(w) = self.lifeline.take() {
            let _ = nix::unistd::write(w.as_fd(), b"d");
        }
        self.reap();
    }

    fn reap(&mut self) {
        if let Some(pid) = self.pid.take() {
            while let Err(Errno::EINTR) = waitpid(pid, None) {}
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Without `d` the guard restores: whatever went wrong here, it
        // takes over giving the process its descriptors back, for as long
        // as that takes; it is not waited for (init reaps it).
        self.lifeline = None;
    }
}

fn watch(att: &mut Attached, lifeline: OwnedFd) -> ! {
    let _ = nix::unistd::setsid();
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    let code = loop {
        let mut fds = [PollFd::new(lifeline.as_fd(), PollFlags::POLLIN), PollFd::new(att.pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(_) => break 1,
            Ok(_) => {}
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            break 0;
        }
        let mut b = [0u8; 1];
        match nix::unistd::read(lifeline.as_raw_fd(), &mut b) {
            Ok(1) if b[0] == b'd' => break 0,
            Ok(1) => {
                if let session::Ends::Pipes { stdin, .. } = &mut att.ends {
                    *stdin = None;
                }
            }
            Err(Errno::EINTR) => {}
            _ => break keep_restoring(att),
        }
    };
    // SAFETY: _exit skips the parent's atexit handlers and buffers, which
    // belong to the attacher.
    unsafe { libc::_exit(code) }
}

/// The attacher is gone without giving the process its descriptors back:
/// do it, and until it works (a frozen process cannot be stopped), keep
/// the channel open and passing output on to the log, so that the process
/// neither meets a closed pipe nor blocks on a full one.
fn keep_restoring(att: &mut Attached) -> i32 {
    loop {
        match session::restore(att, &mut |_, _| {}) {
            Ok(()) | Err(AttachError::Exited(_)) => return 0,
            Err(e) => tracing::warn!("giving pid {} its descriptors back: {e}; trying again", att.target.pid),
        }
        let deadline = std::time::Instant::now() + RETRY;
        while std::time::Instant::now() < deadline {
            relay::drain(att, &mut |_, _| {});
            let mut fds = [PollFd::new(att.pidfd.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(50u16)).is_ok_and(|n| n > 0) {
                return 0;
            }
        }
    }
}
