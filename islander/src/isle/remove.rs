//! `islander rm [-f] ISLE...` (also `delete`): removes every trace of an
//! ended isle: its record and spec, cgroups, overlay layer and logs.
//!
//! A running isle is refused unless forced; forced, its PID 1 is killed and
//! its supervisor given time to record the exit (so nothing it writes later
//! recreates what was removed) before the traces go.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::kill::{send, Process};
use super::record::{Record, Status};
use super::stop::{kill_and_wait, wait_for_supervisor};
use super::{gc, lookup, state, IsleError, Result};
use crate::cgroups::Cgroups;
use crate::paths::StateRoot;

/// How long an isle being created may take to start before `rm -f` kills
/// its supervisor instead.
const CREATING_GRACE: Duration = Duration::from_secs(10);
const CREATING_POLL: Duration = Duration::from_millis(20);

/// Removes every isle `queries` names, calling `done` with each query once
/// its isle is gone. Every query is resolved and checked first, so a bad one
/// (or a running isle without `force`) changes nothing.
pub fn remove(
    root: &StateRoot,
    queries: &[String],
    force: bool,
    mut done: impl FnMut(&str),
) -> crate::Result<()> {
    gc::reap_orphans(root);
    let isles = lookup::find_all(root, queries)?;
    for (label, rec) in &isles {
        state::check_remove(rec, label, force)?;
    }
    for (label, rec) in &isles {
        if !rec.can_remove() {
            end(root, label, rec)?;
        }
        gc::remove_isle(root, &rec.id);
        check_gone(root, label, &rec.id)?;
        done(label);
    }
    Ok(())
}

/// Ends a live isle for `rm -f`: SIGKILL to PID 1, then its supervisor
/// records the exit and lets go. A supervisor that does not is killed too;
/// `gc::remove_isle` then removes what it held.
fn end(root: &StateRoot, label: &str, rec: &Record) -> Result<()> {
    let supervisor = Process::open(rec.supervisor);
    let rec = match rec.status {
        Status::Creating => wait_until_started(root, rec),
        _ => rec.clone(),
    };
    if let Some(p) = rec.pid.and_then(Process::open) {
        kill_and_wait(label, &p)?;
    }
    if let Err(e) = wait_for_supervisor(label, supervisor.as_ref()) {
        tracing::warn!(isle = %rec.id, "{e}; killing it");
    }
    if let Some(s) = &supervisor {
        // A no-op for one that has exited; ends one still creating the isle.
        send(label, s, libc::SIGKILL)?;
        if !s.wait(super::stop::KILL_GRACE) {
            return Err(IsleError::StillAlive {
                isle: label.to_string(),
                what: "its supervisor",
                pid: s.id.pid,
                secs: super::stop::KILL_GRACE.as_secs(),
            });
        }
    }
    Ok(())
}

/// The record once the isle left `creating` (or the last one seen).
fn wait_until_started(root: &StateRoot, rec: &Record) -> Record {
    let run_dir = root.isle_run(&rec.id);
    let deadline = Instant::now() + CREATING_GRACE;
    let mut last = rec.clone();
    while Instant::now() < deadline && last.status == Status::Creating && last.supervisor.is_alive()
    {
        std::thread::sleep(CREATING_POLL);
        match Record::load(&run_dir) {
            Some(r) => last = r,
            None => break,
        }
    }
    last
}

/// `gc::remove_isle` only warns; `rm` must say when something stayed.
fn check_gone(root: &StateRoot, label: &str, id: &str) -> Result<()> {
    let mut left: Vec<PathBuf> = vec![root.isle_run(id), root.isle_layers(id)];
    left.extend(Cgroups::open(id).paths());
    match left.into_iter().find(|p| p.exists()) {
        Some(path) => Err(IsleError::Leftover {
            isle: label.to_string(),
            path,
        }),
        None => Ok(()),
    }
}
