//! `islander inspect ISLE...`: everything known about an isle, as JSON:
//! its record, the processes in its cgroups, its spec and limits, its cgroup
//! directories, the mounts its PID 1 sees, and where its log is.

use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use super::logs::log_dir;
use super::ps::{self, Limits};
use super::record::{Record, Status};
use super::{gc, lookup, IsleError};
use crate::cgroups::Cgroups;
use crate::logger::{log_file, reader};
use crate::paths::StateRoot;
use crate::process::supervisor::Exit;
use crate::cgroups::mountinfo::unescape;

/// One isle. The field names are the JSON format's and stay stable.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub rootfs: PathBuf,
    pub command: Vec<String>,
    pub created: String,
    pub created_unix: u64,
    pub detached: bool,
    /// `--rm`: removed once it ends.
    pub auto_remove: bool,
    pub state: StateView,
    /// Host pids of every process in the isle's cgroups.
    pub pids: Vec<i32>,
    pub limits: Limits,
    /// The isle's cgroup directories that exist (none once it has ended).
    pub cgroups: Vec<PathBuf>,
    /// The mounts PID 1 sees, while it runs; paths are inside the isle.
    pub mounts: Vec<MountView>,
    /// The overlay layer: upper, work and merged directories, and the log.
    pub layers: PathBuf,
    pub log: LogView,
    pub state_dir: PathBuf,
    /// The OCI runtime spec `run` wrote (`config.json`), as written.
    pub spec: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct StateView {
    pub status: Status,
    /// As `ps` shows it: `running`, `exited(CODE)`, `oom-killed`, ...
    pub status_text: String,
    pub running: bool,
    /// Host pid of PID 1, while it runs.
    pub pid: Option<i32>,
    pub supervisor_pid: i32,
    pub supervisor_alive: bool,
    pub started: Option<String>,
    pub uptime_seconds: Option<u64>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub oom_killed: bool,
    pub finished: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MountView {
    pub mount_point: String,
    pub source: String,
    pub fstype: String,
    pub options: String,
    pub super_options: String,
}

#[derive(Debug, Serialize)]
pub struct LogView {
    pub dir: PathBuf,
    /// The file being written.
    pub path: PathBuf,
    /// Every file, oldest first.
    pub files: Vec<PathBuf>,
    pub bytes: u64,
}

/// Inspects every isle `queries` names, in order; an unknown one is the
/// error and nothing is returned.
pub fn inspect(root: &StateRoot, queries: &[String]) -> crate::Result<Vec<Inspection>> {
    gc::reap_orphans(root);
    let isles = lookup::find_all(root, queries)?;
    isles
        .iter()
        .map(|(_, rec)| inspect_one(root, rec))
        .collect()
}

fn inspect_one(root: &StateRoot, rec: &Record) -> crate::Result<Inspection> {
    let run_dir = root.isle_run(&rec.id);
    let spec_path = run_dir.join("config.json");
    let bad_spec = |reason: String| IsleError::BadSpec {
        isle: rec.id.clone(),
        path: spec_path.clone(),
        reason,
    };
    let spec: serde_json::Value = fs::read(&spec_path)
        .map_err(|e| bad_spec(e.to_string()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| bad_spec(e.to_string())))?;
    let row = ps::row(root, rec);
    let pid1 = rec
        .pid
        .filter(|p| rec.status == Status::Running && p.is_alive());
    let cgroups = Cgroups::open(&rec.id);
    let dir = log_dir(root, rec);
    let files = reader::files(&dir);
    let bytes = files
        .iter()
        .filter_map(|f| fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let exit = rec.exit.as_ref().and_then(|e| e.exit);
    Ok(Inspection {
        id: rec.id.clone(),
        name: rec.name.clone(),
        image: rec.image.clone(),
        rootfs: rec.rootfs.clone(),
        command: rec.command.clone(),
        created: row.created.clone(),
        created_unix: rec.created_unix,
        detached: rec.detached,
        auto_remove: rec.auto_remove,
        state: StateView {
            status: rec.status.clone(),
            status_text: row.status.clone(),
            running: rec.status == Status::Running,
            pid: pid1.map(|p| p.pid),
            supervisor_pid: rec.supervisor.pid,
            supervisor_alive: rec.supervisor.is_alive(),
            started: pid1
                .and_then(ps::started_unix)
                .map(|t| ps::rfc3339(t as u64)),
            uptime_seconds: row.uptime_seconds,
            exit_code: exit.map(Exit::status),
            exit_signal: row.exit_signal,
            oom_killed: row.oom_killed,
            finished: row.finished_unix.map(ps::rfc3339),
        },
        pids: cgroups.pids(),
        limits: row.limits,
        cgroups: cgroups.paths().into_iter().filter(|p| p.is_dir()).collect(),
        mounts: pid1.map(|p| mounts_of(p.pid)).unwrap_or_default(),
        layers: rec.layers.clone(),
        log: LogView {
            path: log_file(&dir, 0),
            dir,
            files,
            bytes,
        },
        state_dir: run_dir,
        spec,
    })
}

/// The mounts in `/proc/PID/mountinfo`, which names them relative to the
/// process's root: as the isle sees them.
fn mounts_of(pid: i32) -> Vec<MountView> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountView> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let right: Vec<&str> = right.split(' ').collect();
    if left.len() < 6 || right.len() < 3 {
        return None;
    }
    Some(MountView {
        mount_point: unescape(left[4]),
        options: left[5].to_string(),
        fstype: right[0].to_string(),
        source: unescape(right[1]),
        super_options: right[2].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let line = "36 35 0:31 / /my\\040dir rw,nosuid shared:1 - overlay overlay rw,lowerdir=/a";
        let m = parse_mountinfo_line(line).unwrap();
        assert_eq!(m.mount_point, "/my dir");
        assert_eq!(m.fstype, "overlay");
        assert_eq!(m.options, "rw,nosuid");
        assert_eq!(m.super_options, "rw,lowerdir=/a");
        assert!(parse_mountinfo_line("garbage").is_none());
        assert_eq!(unescape("a\\134b\\"), "a\\b\\");
    }

    #[test]
    fn our_own_mounts_are_read() {
        let mounts = mounts_of(std::process::id() as i32);
        assert!(mounts.iter().any(|m| m.mount_point == "/"), "{mounts:?}");
    }
}
