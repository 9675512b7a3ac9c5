//! The processes of an isle, one module per stage:
//! - [`parent`]: islander's side; clones the isle's init into its new
//!   namespaces, writes its id maps, joins it to its cgroups (while init
//!   builds its root) and releases it to exec;
//! - [`init`]: the isle's first process; builds the root file system, drops
//!   privileges and execs the command (it becomes the isle's PID 1);
//! - [`supervisor`]: islander's side once the command runs: forwards
//!   signals, drains the output into the log, relays the terminal, and
//!   collects the exit status;
//! - [`message`]: the typed messages the two sides exchange.

pub mod init;
pub mod message;
pub mod parent;
pub mod signals;
pub mod supervisor;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("{0}: {1}")]
    Sys(&'static str, nix::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("setting up the isle failed: {0}")]
    Setup(String),
    #[error("command '{command}' not found in the isle (looked in PATH={path})")]
    CommandNotFound { command: String, path: String },
    #[error("command '{command}' cannot be executed in the isle: {reason}")]
    NotExecutable { command: String, reason: String },
    #[error(transparent)]
    Log(#[from] crate::logger::LoggerError),
    #[error("writing {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl ProcessError {
    /// The exit status islander reports for this error, as Docker does:
    /// 127 for a command that is not there, 126 for one that cannot run.
    pub fn exit_code(&self) -> i32 {
        match self {
            ProcessError::CommandNotFound { .. } => 127,
            ProcessError::NotExecutable { .. } => 126,
            _ => 125,
        }
    }
}

pub type Result<T, E = ProcessError> = std::result::Result<T, E>;
