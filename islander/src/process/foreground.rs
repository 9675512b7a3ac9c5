//! Running an isle in the foreground: islander forwards the signals it gets
//! to the isle's PID 1, relays its terminal when it has one (raw mode, window
//! size), and returns its exit status when PID 1 ends.
//!
//! One poll loop over a signalfd, stdin and the pty master; no threads, so
//! the loop never races the reaping of the child.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{read, write, Pid};

use super::signals::FORWARDED;
use super::{ProcessError, Result};

/// How the isle's PID 1 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell's convention: the code, or 128 + the signal number.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Puts islander's terminal in raw mode for the life of the value.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

fn copy_window_size(from: BorrowedFd, to: BorrowedFd) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a properly sized winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

fn write_all(fd: BorrowedFd, mut buf: &[u8]) -> std::result::Result<(), Errno> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::NONE);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits for `pid` to end, forwarding signals and relaying `pty`.
/// `relay_stdin` copies islander's stdin to the pty (`-i -t`).
pub fn supervise(pid: Pid, signals: &SignalFd, pty: Option<&OwnedFd>, relay_stdin: bool) -> Result<Exit> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let _raw = match pty {
        Some(master) if relay_stdin && termios::tcgetattr(stdin.as_fd()).is_ok() => {
            copy_window_size(stdin.as_fd(), master.as_fd());
            RawMode::enter(stdin.as_fd())
        }
        Some(master) => {
            copy_window_size(stdout.as_fd(), master.as_fd());
            None
        }
        None => None,
    };
    let mut stdin_open = relay_stdin && pty.is_some();
    let mut pty_open = pty.is_some();
    let mut buf = vec![0u8; 64 * 1024];
    let mut exit = None;

    loop {
        if let Some(e) = exit {
            // PID 1 is gone; drain what it left on the terminal, then return.
            if !pty_open {
                return Ok(e);
            }
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let pty_idx = if pty_open {
            fds.push(PollFd::new(pty.unwrap().as_fd(), PollFlags::POLLIN));
            Some(fds.len() - 1)
        } else {
            None
        };
        let stdin_idx = if stdin_open && exit.is_none() {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            Some(fds.len() - 1)
        } else {
            None
        };
        let timeout = if exit.is_some() { PollTimeout::from(100u16) } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(0) => {
                // Exited, and nothing more came from the terminal.
                return Ok(exit.expect("only an exited isle polls with a timeout"));
            }
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ProcessError::Sys("poll", e)),
        }
        let ready = |i: usize| fds[i].revents().map(|r| !r.is_empty()).unwrap_or(false);

        if ready(0) {
            while let Ok(Some(info)) = signals.read_signal() {
                let signo = info.ssi_signo as i32;
                match Signal::try_from(signo) {
                    Ok(Signal::SIGCHLD) => {
                        if let Some(e) = reap(pid)? {
                            exit = Some(e);
                        }
                    }
                    Ok(Signal::SIGWINCH) => {
                        if let Some(m) = pty {
                            copy_window_size(stdin.as_fd(), m.as_fd());
                        }
                    }
                    Ok(s) if FORWARDED.contains(&s) => {
                        let _ = kill(pid, s);
                    }
                    _ => {}
                }
            }
        }
        if let Some(i) = pty_idx {
            if ready(i) {
                match read(pty.unwrap().as_raw_fd(), &mut buf) {
                    Ok(0) | Err(Errno::EIO) => pty_open = false,
                    Ok(n) => {
                        if write_all(stdout.as_fd(), &buf[..n]).is_err() {
                            pty_open = false;
                        }
                    }
                    Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                    Err(_) => pty_open = false,
                }
            }
        }
        if let Some(i) = stdin_idx {
            if ready(i) {
                match read(stdin.as_raw_fd(), &mut buf) {
                    Ok(0) => {
                        // End of input: pass it on as the terminal's EOF.
                        stdin_open = false;
                        let _ = write_all(pty.unwrap().as_fd(), &[4]);
                    }
                    Ok(n) => {
                        let _ = write_all(pty.unwrap().as_fd(), &buf[..n]);
                    }
                    Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                    Err(_) => stdin_open = false,
                }
            }
        }
    }
}

/// Reaps `pid` if it has ended; other children (none expected) are ignored.
fn reap(pid: Pid) -> Result<Option<Exit>> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(Exit::Code(code))),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(Exit::Signal(sig as i32))),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Err(ProcessError::Protocol("the isle's process vanished".into())),
            Err(e) => return Err(ProcessError::Sys("waitpid", e)),
        }
    }
}
