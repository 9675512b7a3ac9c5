//! `islander kill [-s SIGNAL] ISLE...`: a signal to each isle's PID 1.
//!
//! Processes are reached through pidfds: once a pidfd is open and the
//! process behind it is checked to be the recorded one (pid and start time),
//! a signal through it can never hit a process that reused the pid, and
//! waiting on it is a poll(2), not a loop of sleeps.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use super::record::ProcessId;
use super::{gc, lookup, state, IsleError, Result};
use crate::paths::StateRoot;

/// The highest signal number Linux has (SIGRTMAX).
const MAX_SIGNAL: i32 = 64;

/// A signal by name (`KILL`, `SIGKILL`, `kill`, `SigTerm`) or number (`9`).
pub fn parse_signal(text: &str) -> Result<i32> {
    let bad = || IsleError::BadSignal(text.to_string());
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=MAX_SIGNAL).contains(n))
            .ok_or_else(bad);
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map(|s| s as i32).map_err(|_| bad())
}

/// `SIGTERM` for 15; `signal 40` for those without a name.
pub fn signal_name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {sig}"),
    }
}

/// A process held by a pidfd.
pub struct Process {
    fd: OwnedFd,
    pub id: ProcessId,
}

impl Process {
    /// The recorded process, if it still exists (a zombie does not).
    pub fn open(id: ProcessId) -> Option<Process> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, id.pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // Checked after the open: if the pid was reused before it, the start
        // time differs; if the process dies after it, the fd stays its own.
        id.is_alive().then_some(Process { fd, id })
    }

    /// Sends `sig`; a process that has exited meanwhile is no error.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal on our pidfd, with no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        Err(err)
    }

    /// Waits up to `timeout` for the process to exit; true once it has.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // poll takes milliseconds; round up so a short wait still waits.
            let ms = left.as_micros().div_ceil(1000);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(n) if n > 0 => return true,
                Ok(_) if Instant::now() >= deadline => return !self.id.is_alive(),
                Ok(_) | Err(nix::Error::EINTR) => continue,
                // Without a usable pidfd, fall back on what /proc says.
                Err(_) => return !self.id.is_alive(),
            }
        }
    }
}

/// Sends `sig` to `p`, a process of the isle `label` names.
pub(super) fn send(label: &str, p: &Process, sig: i32) -> Result<()> {
    p.signal(sig).map_err(|source| IsleError::Signal {
        isle: label.to_string(),
        signal: signal_name(sig),
        pid: p.id.pid,
        source,
    })
}

/// Sends `sig` to PID 1 of the isle `label` names; `None` if it is gone.
pub(super) fn signal_pid1(label: &str, pid: ProcessId, sig: i32) -> Result<Option<Process>> {
    let Some(p) = Process::open(pid) else {
        return Ok(None);
    };
    send(label, &p, sig)?;
    Ok(Some(p))
}

/// Sends `sig` to PID 1 of every isle `queries` names, calling `done` with
/// each query once its isle got the signal. Every query is resolved and
/// checked first, so a bad one changes nothing.
pub fn kill(
    root: &StateRoot,
    queries: &[String],
    sig: i32,
    mut done: impl FnMut(&str),
) -> crate::Result<()> {
    gc::reap_orphans(root);
    let isles = lookup::find_all(root, queries)?;
    for (label, rec) in &isles {
        state::check_kill(rec, label)?;
    }
    for (label, rec) in &isles {
        let pid = rec.pid.expect("check_kill: a running isle has a pid");
        if signal_pid1(label, pid, sig)?.is_none() {
            // PID 1 ended after the check; its supervisor is recording that.
            return Err(IsleError::NotRunning(label.clone()).into());
        }
        done(label);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        for (text, want) in [
            ("KILL", 9),
            ("SIGKILL", 9),
            ("kill", 9),
            ("SigTerm", 15),
            ("9", 9),
            ("hup", 1),
            ("40", 40),
            ("usr1", 10),
        ] {
            assert_eq!(parse_signal(text).unwrap(), want, "{text}");
        }
        for bad in ["", "FOO", "SIG", "0", "65", "-9", "9x", "SIGKILLX"] {
            let e = parse_signal(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("'{bad}'")) && e.contains("TERM or SIGTERM"),
                "{e}"
            );
        }
    }

    #[test]
    fn our_own_process_is_held_and_waits_time_out() {
        let me = Process::open(ProcessId::current()).expect("we exist");
        let begin = Instant::now();
        assert!(!me.wait(Duration::from_millis(30)));
        assert!(begin.elapsed() >= Duration::from_millis(30));
        let mut stale = ProcessId::current();
        stale.start_time += 1;
        assert!(
            Process::open(stale).is_none(),
            "a reused pid is not the recorded process"
        );
    }

    #[test]
    fn an_exited_child_is_seen_at_once() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId::of(child.id() as i32);
        // It may be gone (a zombie) already; then open says so.
        if let Some(p) = id.and_then(Process::open) {
            assert!(p.wait(Duration::from_secs(10)));
        }
        child.wait().unwrap();
    }
}
