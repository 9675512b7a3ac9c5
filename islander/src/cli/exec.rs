//! `islander exec [-i] [-t] [-e KEY=VALUE] [-w DIR] ISLE CMD [ARG...]`

use std::path::PathBuf;

use clap::Args;
use islander::isle::exec::{self, ExecRequest};
use islander::isle::lookup;
use islander::paths::StateRoot;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open and connected to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (repeatable); the isle's own are kept.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the isle [default: the isle's].
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// The isle: a name, a full id or an unambiguous id prefix.
    pub isle: String,
    /// The command and its arguments.
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true)]
    pub command: Vec<String>,
}

pub fn run(root: &StateRoot, args: ExecArgs) -> anyhow::Result<i32> {
    let rec = lookup::find(root, &args.isle)?;
    let req = ExecRequest {
        args: args.command,
        env: args.env,
        workdir: args.workdir,
        interactive: args.interactive,
        tty: args.tty,
    };
    Ok(exec::exec(root, &rec, req)?)
}
