//! The monitor of a detached isle: what its supervisor does once the isle
//! runs. It drains the isle's output into the log until PID 1 ends, records
//! how it ended, and removes its cgroups (with `--rm`, every trace).
//!
//! Creating an isle takes the whole engine; watching it takes a poll loop,
//! the log writer and the record. So once the isle has started, the
//! supervisor executes `islander-logger` (built beside `islander`), which
//! runs [`resume`]: the same process (the isle's parent and subreaper,
//! holding the same descriptors and the same blocked signals), but with
//! only this small program resident for the isle's whole life instead of
//! the engine's pages. An isle with `--metrics` keeps the whole supervisor,
//! since it serves the metrics too.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::record::{ExitRecord, Record, Status};
use super::{gc, now_unix, IsleError};
use crate::cgroups::Cgroups;
use crate::logger::writer::LogWriter;
use crate::logger::Rotation;
use crate::process::supervisor::{self, IsleOutput, Supervision};
use crate::process::signals;
use crate::Result;

/// The program a detached isle's supervisor becomes.
pub const LOGGER_PROGRAM: &str = "islander-logger";
/// Its first argument; the second is the [`Monitor`] as JSON.
pub const MONITOR_FLAG: &str = "--monitor";

/// Everything the monitor needs, as it crosses exec: plain values, and the
/// numbers of the descriptors it inherits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    pub id: String,
    /// The isle's PID 1, a child of this process.
    pub pid: i32,
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
    pub rotation: Rotation,
    pub stdout: Option<RawFd>,
    pub stderr: Option<RawFd>,
    pub pty: Option<RawFd>,
    /// A detached `-i` isle's stdin writer, only held open.
    pub stdin_writer: Option<RawFd>,
    /// `--rm`: the isle's layer directory, removed with its record and
    /// cgroups once it ends.
    #[serde(default)]
    pub remove_layers: Option<PathBuf>,
}

/// Where `islander-logger` must be: beside the running islander binary.
/// Checked before an isle is created, so a missing one is an error that
/// leaves nothing behind rather than a surprise after the isle runs.
pub fn logger_program() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| IsleError::NoLogger { path: PathBuf::from(LOGGER_PROGRAM), reason: e.to_string() })?;
    let path = exe.with_file_name(LOGGER_PROGRAM);
    if !path.is_file() {
        return Err(IsleError::NoLogger { path, reason: "no such file".into() }.into());
    }
    Ok(path)
}

impl Monitor {
    pub fn new(id: &str, pid: Pid, run_dir: &Path, log_dir: &Path, rotation: Rotation) -> Monitor {
        Monitor {
            id: id.to_string(),
            pid: pid.as_raw(),
            run_dir: run_dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            rotation,
            stdout: None,
            stderr: None,
            pty: None,
            stdin_writer: None,
            remove_layers: None,
        }
    }

    /// Becomes `program` with the descriptors in `self`; returns only if
    /// exec failed, with the descriptors as they were.
    pub fn exec(&self, program: &Path) -> std::io::Error {
        let fds: Vec<RawFd> = [self.stdout, self.stderr, self.pty, self.stdin_writer].into_iter().flatten().collect();
        let json = serde_json::to_string(self).expect("a monitor serializes");
        let args = [
            CString::new(program.as_os_str().as_encoded_bytes()),
            CString::new(MONITOR_FLAG),
            CString::new(json),
        ];
        let Ok(args) = args.into_iter().collect::<std::result::Result<Vec<_>, _>>() else {
            return std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in the monitor's arguments");
        };
        for &fd in &fds {
            set_cloexec(fd, false);
        }
        let err = match nix::unistd::execv(&args[0], &args) {
            Err(e) => std::io::Error::from(e),
            Ok(never) => match never {},
        };
        for &fd in &fds {
            set_cloexec(fd, true);
        }
        err
    }

    /// Drains the isle's output into its log until its PID 1 ends, then
    /// records the exit and removes the cgroups. `before_teardown` runs
    /// while the cgroups still exist (the metrics observer forgets them).
    pub fn run(&self, signal_fd: &SignalFd, output: &IsleOutput, before_teardown: impl FnOnce(&Cgroups)) -> Result<()> {
        let mut log = LogWriter::open(&self.log_dir, self.rotation)?;
        let result = supervisor::supervise(
            Pid::from_raw(self.pid),
            signal_fd,
            output,
            Supervision { echo: false, relay_stdin: false, log: Some(&mut log) },
        );
        drop(log);
        let cgroups = Cgroups::open(&self.id);
        let oom_kills = cgroups.oom_kills();
        before_teardown(&cgroups);
        // Re-read: the record on disk is the truth (`rm -f` may have
        // removed it meanwhile, and then it must stay removed).
        if let Some(mut record) = Record::load(&self.run_dir) {
            record.status = Status::Exited;
            record.exit = Some(ExitRecord { exit: result.as_ref().ok().copied(), oom_killed: oom_kills > 0, finished_unix: now_unix() });
            record.save(&self.run_dir)?;
        }
        match &self.remove_layers {
            Some(layers) => gc::remove_traces(&self.id, layers, &self.run_dir),
            None => {
                if let Err(e) = cgroups.destroy() {
                    tracing::warn!(isle = %self.id, "removing cgroups: {e}");
                }
            }
        }
        result.map(|_| ()).map_err(Into::into)
    }
}

/// The body of `islander-logger`: takes over from the supervisor that
/// executed it.
pub fn resume(json: &str) -> Result<()> {
    let monitor: Monitor = serde_json::from_str(json)
        .map_err(|e| IsleError::Corrupt { id: "?".into(), reason: format!("the monitor's arguments: {e}") })?;
    // The supervisor blocked these signals and the mask survived exec, so
    // none was lost: a new signalfd reads what is pending.
    let signal_fd = signals::block()?;
    // SAFETY: the supervisor passed these descriptors open and cleared of
    // close-on-exec for this program alone; nothing else owns them here.
    let own = |fd: Option<RawFd>| fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let output = IsleOutput { stdout: own(monitor.stdout), stderr: own(monitor.stderr), pty: own(monitor.pty) };
    let _stdin_writer = own(monitor.stdin_writer);
    for fd in [&output.stdout, &output.stderr, &output.pty, &_stdin_writer].into_iter().flatten() {
        set_cloexec(fd.as_raw_fd(), true);
    }
    monitor.run(&signal_fd, &output, |_| {})
}

fn set_cloexec(fd: RawFd, on: bool) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = if on { FdFlag::FD_CLOEXEC } else { FdFlag::empty() };
    let _ = fcntl(fd, FcntlArg::F_SETFD(flags));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_monitor_crosses_exec_as_json() {
        let mut m = Monitor::new("ab", Pid::from_raw(42), Path::new("/run/x"), Path::new("/lib/x/log"), Rotation::default());
        m.stdout = Some(3);
        m.stdin_writer = Some(9);
        let back: Monitor = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!((back.pid, back.stdout, back.stderr, back.stdin_writer), (42, Some(3), None, Some(9)));
        assert!(serde_json::from_str::<Monitor>("{\"id\":\"x\",\"bogus\":1}").is_err());
    }
}
