//! `islander attach [--any-pid] [--detach-keys KEYS] [--no-stdin] ISLE|PID`

use clap::Args;
use islander::attach::{self, AttachRequest, DetachKeys, Outcome, UserIo};
use islander::paths::StateRoot;

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Attach to a pid that is in no isle of this islander (any host
    /// process), which is refused otherwise.
    #[arg(long)]
    pub any_pid: bool,
    /// The keys that detach, in Docker's format: comma-separated ctrl-<x>
    /// or single characters [default: ctrl-p,ctrl-q].
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Leave the process's stdin alone: only relay its output.
    #[arg(long)]
    pub no_stdin: bool,
    /// The isle (a name, a full id or an unambiguous id prefix; its PID 1
    /// is attached to), or the host pid of a process inside an isle.
    #[arg(value_name = "ISLE|PID")]
    pub target: String,
}

pub fn run(root: &StateRoot, args: AttachArgs) -> anyhow::Result<i32> {
    let detach_keys = match &args.detach_keys {
        Some(k) => k.parse::<DetachKeys>().map_err(islander::Error::from)?,
        None => DetachKeys::default(),
    };
    let req = AttachRequest { target: args.target, any_pid: args.any_pid, detach_keys, no_stdin: args.no_stdin };
    Ok(match attach::attach(root, &req, UserIo::standard())? {
        Outcome::Detached => 0,
        // As Docker: the process's end ends the attach with its status.
        Outcome::Exited(status) => status.unwrap_or(0),
    })
}
