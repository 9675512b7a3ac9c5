//! Reconciling state that a killed islander left behind.
//!
//! An isle dies with its supervising islander (PR_SET_PDEATHSIG), but the
//! supervisor itself may be killed before it cleans up. Every command first
//! looks for records whose supervisor is gone: a foreground isle's traces
//! are removed; a detached isle is marked exited and keeps its layer and log
//! until `rm`. So a later command always finds a consistent state.

use std::fs;

use super::record::{ExitRecord, Record, Status};
use crate::cgroups::Cgroups;
use crate::paths::StateRoot;
use crate::rootfs::overlay::Layers;

/// Cleans up every isle of `root` whose supervising islander has exited.
/// Returns the ids it cleaned.
pub fn reap_orphans(root: &StateRoot) -> Vec<String> {
    let mut cleaned = Vec::new();
    if let Ok(entries) = fs::read_dir(root.isles_run_dir()) {
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.starts_with('.') {
                continue; // lock files, never isles
            }
            let run_dir = entry.path();
            let orphaned = match Record::load(&run_dir) {
                // An --rm isle whose monitor ended before removing it.
                Some(rec) if rec.status == Status::Exited => rec.auto_remove && !rec.supervisor.is_alive(),
                Some(rec) if rec.detached && rec.status == Status::Running && !rec.supervisor.is_alive() => {
                    // Read again now that the supervisor is known to be gone:
                    // it may have recorded the exit just before it went.
                    let Some(mut rec) = Record::load(&run_dir) else { continue };
                    if rec.status != Status::Running {
                        continue;
                    }
                    if rec.auto_remove {
                        // `--rm`: what its monitor would have removed.
                        tracing::info!(isle = %id, "the supervisor of an --rm isle is gone; removing the isle");
                        remove_isle(root, &id);
                        cleaned.push(id);
                        continue;
                    }
                    // Its supervisor was killed, and the isle with it
                    // (PR_SET_PDEATHSIG): it is exited, with no status to
                    // tell; its layer and log stay for `logs` and `rm`.
                    tracing::info!(isle = %id, "the supervisor is gone; marking the isle exited");
                    let _ = Cgroups::open(&id).destroy();
                    rec.status = Status::Exited;
                    rec.exit = Some(ExitRecord { exit: None, oom_killed: Cgroups::open(&id).oom_kills() > 0, finished_unix: 0 });
                    let _ = rec.save(&run_dir);
                    false
                }
                Some(rec) => !rec.supervisor.is_alive(),
                // A directory without a readable record: its creator died
                // before the first atomic write, or it is not ours at all.
                None => dir_is_stale(&run_dir),
            };
            if orphaned {
                tracing::info!(isle = %id, "cleaning up after an islander that exited");
                remove_isle(root, &id);
                cleaned.push(id);
            }
        }
    }
    // Layers whose runtime record is gone (for instance after a reboot
    // emptied /run): nothing can use them any more.
    if let Ok(entries) = fs::read_dir(root.isles_lib_dir()) {
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.starts_with('.') {
                continue;
            }
            if !root.isle_run(&id).exists() && dir_is_stale(&entry.path()) {
                tracing::info!(isle = %id, "removing a layer without an isle");
                remove_isle(root, &id);
                cleaned.push(id);
            }
        }
    }
    cleaned
}

/// A directory nobody has touched for a minute: old enough that the islander
/// creating it would have written its record by now.
fn dir_is_stale(path: &std::path::Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| t.elapsed().map(|e| e.as_secs() > 60).unwrap_or(false))
        .unwrap_or(false)
}

/// Removes every trace of an isle: its processes and cgroups, its layer and
/// its record (last, so that an interrupted clean-up is found again).
pub fn remove_isle(root: &StateRoot, id: &str) {
    remove_traces(id, &root.isle_layers(id), &root.isle_run(id));
}

/// [`remove_isle`] with the directories given: what an isle's own monitor
/// calls for `--rm`.
pub fn remove_traces(id: &str, layers_dir: &std::path::Path, run_dir: &std::path::Path) {
    if let Err(e) = Cgroups::open(id).destroy() {
        tracing::warn!(isle = %id, "removing cgroups: {e}");
    }
    let layers = Layers::at(layers_dir, std::path::Path::new("/"));
    if let Err(e) = layers.remove() {
        tracing::warn!(isle = %id, "removing the layer: {e}");
    }
    if let Err(e) = fs::remove_dir_all(run_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(isle = %id, "removing {}: {e}", run_dir.display());
        }
    }
}
