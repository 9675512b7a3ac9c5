//! `islander supervise` (hidden): the supervisor of one detached isle.
//!
//! `islander run -d` starts it in a session of its own and hands it the run
//! request on stdin. It creates and starts the isle, answers on stdout with
//! one JSON line (the id, or the error and exit status), then lets go of the
//! CLI: stdin and stdout become `/dev/null`, stderr the isle's supervisor
//! log. It holds the read ends of the isle's stdout and stderr pipes and its
//! exit status, so it outlives the CLI (a `kill -9` of the CLI stops neither
//! the isle nor its logging) and never stops draining.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use islander::isle::run::{self, RunRequest};
use islander::paths::StateRoot;
use serde::{Deserialize, Serialize};

/// What `run -d` sends its supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub struct Launch {
    pub lib: PathBuf,
    pub run: PathBuf,
    pub request: RunRequest,
}

/// The supervisor's one answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    Started { id: String },
    Failed { message: String, code: i32 },
}

pub fn run() -> anyhow::Result<i32> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let launch: Launch = serde_json::from_str(&input)?;
    let root = StateRoot::from_dirs(launch.lib, launch.run);
    let supervisor_log = launch.request.id.as_ref().map(|id| root.isle_layers(id).join("supervisor.log"));
    let result = run::run_detached(&root, launch.request, |outcome| {
        let answer = match outcome {
            Ok(id) => Answer::Started { id: id.to_string() },
            Err(e) => Answer::Failed { message: crate::error_line(e), code: crate::exit_code(e) as i32 },
        };
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{}", serde_json::to_string(&answer).expect("answers serialize"));
        let _ = out.flush();
        release_stdio(supervisor_log.as_deref());
    });
    Ok(if result.is_ok() { 0 } else { 1 })
}

/// Lets go of the CLI's pipes: nothing the supervisor does later may block
/// on, or die of, a CLI that has gone.
fn release_stdio(log: Option<&std::path::Path>) {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null");
    if let Ok(null) = null {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        let err = log
            .and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok())
            .unwrap_or(null);
        let _ = nix::unistd::dup2(err.as_raw_fd(), 2);
    }
}
