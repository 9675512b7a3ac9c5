//! What each lifecycle verb may do to an isle in each state, in one place,
//! so that `stop`, `kill` and `rm` agree on what "running" means.
//!
//! The record's status is the truth once `gc::reap_orphans` has reconciled
//! it: an isle whose supervisor is gone has been marked exited. A running
//! record whose PID 1 just ended stays "running" until its supervisor, which
//! is alive, records the exit a moment later; the verbs handle that moment
//! (a signal finds no process, a wait returns at once).

use super::record::{Record, Status};
use super::{IsleError, Result};

impl Record {
    pub fn is_running(&self) -> bool {
        self.status == Status::Running
    }

    /// `stop`: only a running isle. Docker accepts a stopped one silently;
    /// here it is an error, so a script learns that its idea of the isle is
    /// stale.
    pub fn can_stop(&self) -> bool {
        self.status == Status::Running
    }

    /// `kill`: a signal needs a process to receive it.
    pub fn can_kill(&self) -> bool {
        self.status == Status::Running && self.pid.is_some()
    }

    /// `rm` without `-f`: only an isle that has ended. One being created is
    /// as good as running: its supervisor is about to start it.
    pub fn can_remove(&self) -> bool {
        self.status == Status::Exited
    }

    /// `rm -f`: anything; a live isle is killed first.
    pub fn can_force_remove(&self) -> bool {
        true
    }

    /// The status as `ps` shows it: `creating`, `running`, `exited(CODE)`
    /// (a signal's death as 128 + N, as a shell reports it), `oom-killed`,
    /// or `exited(?)` when the supervisor was killed and could not tell.
    pub fn status_text(&self) -> String {
        match self.status {
            Status::Creating => "creating".into(),
            Status::Running => "running".into(),
            Status::Exited => match &self.exit {
                Some(e) if e.oom_killed => "oom-killed".into(),
                Some(e) => match e.exit {
                    Some(exit) => format!("exited({})", exit.status()),
                    None => "exited(?)".into(),
                },
                None => "exited(?)".into(),
            },
        }
    }
}

/// `label` is what the user typed, so errors speak their language.
pub fn check_stop(rec: &Record, label: &str) -> Result<()> {
    if rec.can_stop() {
        Ok(())
    } else {
        Err(IsleError::NotRunning(label.to_string()))
    }
}

pub fn check_kill(rec: &Record, label: &str) -> Result<()> {
    if rec.can_kill() {
        Ok(())
    } else {
        Err(IsleError::NotRunning(label.to_string()))
    }
}

pub fn check_remove(rec: &Record, label: &str, force: bool) -> Result<()> {
    if rec.can_remove() || (force && rec.can_force_remove()) {
        Ok(())
    } else {
        Err(IsleError::IsRunning(label.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isle::record::{ExitRecord, ProcessId};
    use crate::process::supervisor::Exit;

    fn rec(status: Status, exit: Option<ExitRecord>) -> Record {
        Record {
            id: "ab".repeat(32),
            status,
            created_unix: 0,
            supervisor: ProcessId {
                pid: 1,
                start_time: 0,
            },
            pid: Some(ProcessId {
                pid: 2,
                start_time: 0,
            }),
            image: None,
            name: None,
            rootfs: "/".into(),
            layers: "/".into(),
            detached: true,
            auto_remove: false,
            command: vec![],
            log_dir: "/".into(),
            exit,
        }
    }

    fn exited(exit: Option<Exit>, oom_killed: bool) -> Record {
        rec(
            Status::Exited,
            Some(ExitRecord {
                exit,
                oom_killed,
                finished_unix: 1,
            }),
        )
    }

    #[test]
    fn guards_follow_the_status() {
        let running = rec(Status::Running, None);
        assert!(running.can_stop() && running.can_kill() && !running.can_remove());
        let done = exited(Some(Exit::Code(0)), false);
        assert!(!done.can_stop() && !done.can_kill() && done.can_remove());
        let creating = rec(Status::Creating, None);
        assert!(!creating.can_stop() && !creating.can_remove());
        assert_eq!(
            check_stop(&done, "web").unwrap_err().to_string(),
            "isle web is not running"
        );
        assert_eq!(
            check_remove(&running, "web", false)
                .unwrap_err()
                .to_string(),
            "isle web is running; stop it first or use rm -f"
        );
        assert!(check_remove(&running, "web", true).is_ok());
    }

    #[test]
    fn status_texts() {
        assert_eq!(rec(Status::Running, None).status_text(), "running");
        assert_eq!(
            exited(Some(Exit::Code(3)), false).status_text(),
            "exited(3)"
        );
        assert_eq!(
            exited(Some(Exit::Signal(9)), false).status_text(),
            "exited(137)"
        );
        assert_eq!(
            exited(Some(Exit::Signal(9)), true).status_text(),
            "oom-killed"
        );
        assert_eq!(exited(None, false).status_text(), "exited(?)");
        assert_eq!(rec(Status::Exited, None).status_text(), "exited(?)");
    }
}
