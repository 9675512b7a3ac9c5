//! Isles: their identity, their on-disk record, and the lifecycle verbs, one
//! file each (`run.rs`, ...). `gc.rs` reconciles what a killed islander left.

pub mod exec;
pub mod gc;
pub mod inspect;
pub mod kill;
pub mod logs;
pub mod lookup;
pub mod monitor;
pub mod ps;
pub mod record;
pub mod remove;
pub mod run;
pub mod state;
pub mod stop;

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum IsleError {
    #[error("--rootfs '{0}': no such directory")]
    NoRootfs(PathBuf),
    #[error("invalid --hostname '{0}': use 1 to 63 letters, digits and '-', not starting or ending with '-'")]
    BadHostname(String),
    #[error("invalid --name '{0}': use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 128 characters")]
    BadName(String),
    #[error("the name '{name}' is already used by isle {}; choose another or remove that isle", &id[..12])]
    NameInUse { name: String, id: String },
    #[error("{path} is missing ({reason}): detached isles need islander-logger, which is built and installed beside islander")]
    NoLogger { path: PathBuf, reason: String },
    #[error("isle {0} is not running")]
    NotRunning(String),
    #[error("the state of isle {id} is damaged: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("invalid isle id '{0}': an id is 64 hexadecimal digits")]
    BadId(String),
    #[error("invalid --env '{0}': use KEY=VALUE with a non-empty KEY without '='")]
    BadEnv(String),
    #[error("invalid --workdir '{0}': use an absolute path inside the isle")]
    BadWorkdir(PathBuf),
    #[error("the image has neither /bin/bash nor /bin/sh; give a command to run")]
    NoDefaultCommand,
    #[error("cannot find the block device holding {path}: {reason}")]
    NoBlockDevice { path: PathBuf, reason: String },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("building the isle's spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("no such isle '{0}'")]
    NoSuchIsle(String),
    #[error("isle prefix '{prefix}' is ambiguous: matches {count} isles ({examples}); give more of the id or the name")]
    AmbiguousPrefix { prefix: String, count: usize, examples: String },
    #[error("the name '{name}' is ambiguous: {count} isles have it ({examples}); give the id instead")]
    AmbiguousName { name: String, count: usize, examples: String },
    #[error("isle {0} is running; stop it first or use rm -f")]
    IsRunning(String),
    #[error("invalid signal '{0}': use a name such as TERM or SIGTERM (any case) or a number from 1 to 64")]
    BadSignal(String),
    #[error("isle {isle}: {what} (pid {pid}) did not exit within {secs} s")]
    StillAlive { isle: String, what: &'static str, pid: i32, secs: u64 },
    #[error("sending {signal} to isle {isle} (pid {pid}): {source}")]
    Signal { isle: String, signal: String, pid: i32, source: std::io::Error },
    #[error("isle {isle}: its spec {path} is unreadable: {reason}")]
    BadSpec { isle: String, path: PathBuf, reason: String },
    #[error("isle {isle}: {path} could not be removed (see the warnings above); run rm again")]
    Leftover { isle: String, path: PathBuf },
}

pub type Result<T, E = IsleError> = std::result::Result<T, E>;

pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IsleError {
    let path = path.into();
    move |source| IsleError::Io { op, path, source }
}

/// A new isle id: 64 hex digits, as Docker's; the first 12 are the short id.
pub fn new_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Seconds since the epoch, as records keep times.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
