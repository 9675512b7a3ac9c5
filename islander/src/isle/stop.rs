//! `islander stop [-t SECS] ISLE...`: SIGTERM to PID 1, SIGKILL after the
//! grace time, then wait until the isle's supervisor has recorded the exit.
//!
//! PID 1 of a PID namespace only gets the signals it has a handler for, so
//! an isle whose command ignores SIGTERM by default (a plain `sh`) waits out
//! the grace time, as with Docker. SIGKILL from the host always lands and
//! ends the whole namespace.

use std::time::Duration;

use super::kill::{send, signal_pid1, Process};
use super::record::Record;
use super::{gc, lookup, state, IsleError, Result};
use crate::paths::StateRoot;

/// Docker's default grace time.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGKILLed PID 1 may take to go. The kernel tears the
/// namespace down promptly; a bound only stops a hang from being silent.
pub(super) const KILL_GRACE: Duration = Duration::from_secs(10);
/// How long the supervisor may take, after PID 1 is gone, to drain the
/// pipes (it waits up to 5 s for stray writers), record the exit and remove
/// the cgroups (up to about 5 s more).
pub(super) const SUPERVISOR_GRACE: Duration = Duration::from_secs(30);

/// Stops every isle `queries` names, calling `done` with each query once its
/// isle has stopped. Every query is resolved and checked first, so a bad
/// one changes nothing.
pub fn stop(
    root: &StateRoot,
    queries: &[String],
    timeout: Duration,
    mut done: impl FnMut(&str),
) -> crate::Result<()> {
    gc::reap_orphans(root);
    let isles = lookup::find_all(root, queries)?;
    for (label, rec) in &isles {
        state::check_stop(rec, label)?;
    }
    for (label, rec) in &isles {
        stop_one(label, rec, timeout)?;
        done(label);
    }
    Ok(())
}

fn stop_one(label: &str, rec: &Record, timeout: Duration) -> Result<()> {
    // Held before PID 1 is signalled: the supervisor exits soon after it.
    let supervisor = Process::open(rec.supervisor);
    if let Some(pid1) = rec.pid {
        if let Some(p) = signal_pid1(label, pid1, libc::SIGTERM)? {
            if !p.wait(timeout) {
                tracing::info!(isle = %rec.id, "no exit {} s after SIGTERM; sending SIGKILL", timeout.as_secs());
                kill_and_wait(label, &p)?;
            }
        }
    }
    wait_for_supervisor(label, supervisor.as_ref())
}

/// SIGKILL, and wait for the process to be gone.
pub(super) fn kill_and_wait(label: &str, p: &Process) -> Result<()> {
    send(label, p, libc::SIGKILL)?;
    if p.wait(KILL_GRACE) {
        Ok(())
    } else {
        Err(IsleError::StillAlive {
            isle: label.to_string(),
            what: "PID 1",
            pid: p.id.pid,
            secs: KILL_GRACE.as_secs(),
        })
    }
}

/// The isle is stopped once its supervisor has exited: a detached isle's
/// has written the exit into the record by then, a foreground isle's
/// `islander run` has removed it.
pub(super) fn wait_for_supervisor(label: &str, supervisor: Option<&Process>) -> Result<()> {
    match supervisor {
        Some(s) if !s.wait(SUPERVISOR_GRACE) => Err(IsleError::StillAlive {
            isle: label.to_string(),
            what: "its supervisor",
            pid: s.id.pid,
            secs: SUPERVISOR_GRACE.as_secs(),
        }),
        _ => Ok(()),
    }
}
