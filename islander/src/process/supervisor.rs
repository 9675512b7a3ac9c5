//! Supervising a started isle until its PID 1 ends: forward the signals
//! islander receives, drain the isle's stdout and stderr pipes (or its pty)
//! into the log, echo them when the isle runs in the foreground, relay the
//! terminal (raw mode, window size), and collect the exit status.
//!
//! One poll loop over a signalfd, the output descriptors and stdin; no
//! threads, so the loop never races the reaping of the child, and it never
//! stops reading, so the isle never blocks on a full pipe.

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
use crate::logger::writer::LogWriter;
use crate::logger::Stream;

/// How the isle's PID 1 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// The isle's side of its stdio, as islander holds it.
#[derive(Debug, Default)]
pub struct IsleOutput {
    pub pty: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// What to do with the isle's output and islander's own stdin.
pub struct Supervision<'a> {
    /// Write the output to islander's own stdout/stderr too (foreground).
    pub echo: bool,
    /// Copy islander's stdin to the pty (`-i -t` in the foreground).
    pub relay_stdin: bool,
    pub log: Option<&'a mut LogWriter>,
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

pub fn write_all(fd: BorrowedFd, mut buf: &[u8]) -> std::result::Result<(), Errno> {
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

/// One output source of the loop.
struct Source<'a> {
    fd: &'a OwnedFd,
    stream: Stream,
    open: bool,
}

/// Waits for `pid` to end, forwarding signals and draining `output`.
pub fn supervise(pid: Pid, signals: &SignalFd, output: &IsleOutput, mut how: Supervision) -> Result<Exit> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let pty = output.pty.as_ref();
    let _raw = match pty {
        Some(master) if how.relay_stdin && termios::tcgetattr(stdin.as_fd()).is_ok() => {
            copy_window_size(stdin.as_fd(), master.as_fd());
            RawMode::enter(stdin.as_fd())
        }
        Some(master) if how.echo => {
            copy_window_size(stdout.as_fd(), master.as_fd());
            None
        }
        _ => None,
    };
    let mut sources: Vec<Source> = Vec::new();
    if let Some(p) = pty {
        sources.push(Source { fd: p, stream: Stream::Stdout, open: true });
    }
    if let Some(o) = output.stdout.as_ref() {
        sources.push(Source { fd: o, stream: Stream::Stdout, open: true });
    }
    if let Some(e) = output.stderr.as_ref() {
        sources.push(Source { fd: e, stream: Stream::Stderr, open: true });
    }
    let mut stdin_open = how.relay_stdin && pty.is_some();
    // An eighth of the isle's 1 MiB pipe per read: few wake-ups of a
    // writer blocked on a full pipe, and a buffer that stays small.
    let mut buf = vec![0u8; 128 * 1024];
    let mut exit = None;
    let mut grace_polls = 0;

    loop {
        let any_open = sources.iter().any(|s| s.open);
        if let Some(e) = exit {
            // PID 1 is gone, and with it the isle's PID namespace: the pipes
            // reach end of file once drained. A pty only says EIO, and only
            // once every slave is closed; a short quiet period ends it.
            if !any_open {
                return Ok(e);
            }
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let mut index = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            if s.open {
                fds.push(PollFd::new(s.fd.as_fd(), PollFlags::POLLIN));
                index.push(i);
            }
        }
        let stdin_idx = if stdin_open && exit.is_none() {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            Some(fds.len() - 1)
        } else {
            None
        };
        let timeout = if exit.is_some() { PollTimeout::from(100u16) } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(0) => {
                grace_polls += 1;
                // Pipes get 5 s to drain after exit, a pty 100 ms of quiet.
                if pty.is_some() || grace_polls >= 50 {
                    finish_all(&mut how, &sources);
                    return Ok(exit.expect("only an exited isle polls with a timeout"));
                }
                continue;
            }
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ProcessError::Sys("poll", e)),
        }
        let revents: Vec<bool> = fds.iter().map(|f| f.revents().map(|r| !r.is_empty()).unwrap_or(false)).collect();

        if revents[0] {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
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
        for (slot, &i) in index.iter().enumerate() {
            if !revents[slot + 1] {
                continue;
            }
            let src = &mut sources[i];
            match read(src.fd.as_raw_fd(), &mut buf) {
                Ok(0) | Err(Errno::EIO) => {
                    src.open = false;
                    let stream = src.stream;
                    how.logged(|log| log.finish(stream));
                }
                Ok(n) => {
                    let data = &buf[..n];
                    how.logged(|log| log.write(src.stream, data));
                    if how.echo {
                        let out = if src.stream == Stream::Stderr { stderr.as_fd() } else { stdout.as_fd() };
                        // A closed terminal must not stop the draining.
                        let _ = write_all(out, data);
                    }
                }
                Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                Err(_) => src.open = false,
            }
        }
        if let Some(i) = stdin_idx {
            if revents[i] {
                let master = pty.expect("stdin is relayed only to a pty");
                match read(stdin.as_raw_fd(), &mut buf) {
                    Ok(0) => {
                        // End of input: pass it on as the terminal's EOF.
                        stdin_open = false;
                        let _ = write_all(master.as_fd(), &[4]);
                    }
                    Ok(n) => {
                        let _ = write_all(master.as_fd(), &buf[..n]);
                    }
                    Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                    Err(_) => stdin_open = false,
                }
            }
        }
        how.logged(|log| log.flush());
    }
}

fn finish_all(how: &mut Supervision, sources: &[Source]) {
    for s in sources {
        how.logged(|log| log.finish(s.stream));
    }
}

impl Supervision<'_> {
    /// Runs `op` on the log, if there still is one. The log writer drops
    /// what the disk refuses and goes on by itself; an error here means it
    /// cannot go on at all, and then the isle is still drained, unlogged,
    /// rather than left to block on a full pipe.
    fn logged(&mut self, op: impl FnOnce(&mut LogWriter) -> crate::logger::Result<()>) {
        if let Some(log) = self.log.as_deref_mut() {
            if let Err(e) = op(log) {
                tracing::error!("the isle's log: {e}; its output is drained but no longer logged");
                self.log = None;
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
