//! The on-disk record of an isle, `<run>/isles/<id>/state.json`, always
//! replaced atomically (write a temporary file, fsync, rename), so that a
//! reader, or islander after a `kill -9`, finds either the old record or the
//! new one, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io_err, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Running,
    /// Ended; only detached isles keep a record in this state (until `rm`).
    Exited,
}

/// How a detached isle ended, as its supervisor saw it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    /// `None` when the supervisor itself was killed and could not tell.
    pub exit: Option<crate::process::supervisor::Exit>,
    pub oom_killed: bool,
    pub finished_unix: u64,
}

/// Identifies a process across pid reuse: its pid and its start time in
/// clock ticks since boot (field 22 of `/proc/PID/stat`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    pub fn of(pid: i32) -> Option<ProcessId> {
        Some(ProcessId {
            pid,
            start_time: start_time(pid)?,
        })
    }

    pub fn current() -> ProcessId {
        ProcessId::of(std::process::id() as i32).expect("our own /proc/self/stat is readable")
    }

    /// Whether this very process still exists (a zombie counts as gone).
    pub fn is_alive(&self) -> bool {
        // One read of /proc/PID/stat: the state is field 3, the start time 22.
        match stat_fields(self.pid) {
            Some(f) => {
                f.first().map(String::as_str) != Some("Z")
                    && f.get(19).and_then(|t| t.parse().ok()) == Some(self.start_time)
            }
            None => false,
        }
    }
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the
    // fields after the last ')' are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub status: Status,
    /// RFC 3339-free: seconds since the epoch, UTC.
    pub created_unix: u64,
    /// The islander process that supervises the isle.
    pub supervisor: ProcessId,
    /// The isle's PID 1 on the host, once started.
    pub pid: Option<ProcessId>,
    pub image: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub rootfs: PathBuf,
    pub layers: PathBuf,
    #[serde(default)]
    pub detached: bool,
    /// `--rm`: removed once it ends, not kept as exited.
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub log_dir: PathBuf,
    #[serde(default)]
    pub exit: Option<ExitRecord>,
}

impl Record {
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("state.json")
    }

    pub fn save(&self, run_dir: &Path) -> Result<()> {
        write_atomic(
            &Self::path(run_dir),
            &serde_json::to_vec_pretty(self).expect("records serialize"),
        )
    }

    pub fn load(run_dir: &Path) -> Option<Record> {
        let bytes = fs::read(Self::path(run_dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Replaces `path` with `bytes` so that readers see all or nothing, even
/// across a crash: write beside it, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("state files live in a directory");
    let tmp = dir.join(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    let mut f = fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
    f.write_all(bytes).map_err(io_err("writing", &tmp))?;
    f.sync_all().map_err(io_err("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("renaming into", path))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_atomically() {
        let dir = std::env::temp_dir().join(format!("islander-record-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let rec = Record {
            id: "ab".repeat(32),
            status: Status::Creating,
            created_unix: 1,
            supervisor: ProcessId::current(),
            pid: None,
            image: Some("busybox".into()),
            name: None,
            rootfs: "/x".into(),
            layers: "/y".into(),
            detached: false,
            auto_remove: false,
            command: vec![],
            log_dir: "/y/log".into(),
            exit: None,
        };
        rec.save(&dir).unwrap();
        let back = Record::load(&dir).unwrap();
        assert_eq!(back.id, rec.id);
        assert!(back.supervisor.is_alive());
        assert!(!fs::read_dir(&dir)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dead_or_reused_pid_is_not_alive() {
        let mut me = ProcessId::current();
        me.start_time += 1;
        assert!(!me.is_alive(), "a different start time means pid reuse");
    }
}
