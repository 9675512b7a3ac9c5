//! The command line. Argument structs live here, one file per subcommand;
//! each turns its arguments into engine calls. The engine knows no clap.

pub mod image;
pub mod run;
pub mod supervise;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use islander::paths::StateRoot;

#[derive(Debug, Parser)]
#[command(name = "islander", version, about = "Run isles: containers in namespaces and cgroup v1 limits, seen through eBPF")]
pub struct Cli {
    /// Keep all state under DIR (DIR/lib and DIR/run) instead of
    /// /var/lib/islander and /run/islander.
    #[arg(long, global = true, env = "ISLANDER_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// More of islander's own logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new isle.
    Run(run::RunArgs),
    /// Manage images.
    Image {
        #[command(subcommand)]
        cmd: image::ImageCommand,
    },
    /// The supervisor of a detached isle (started by `run -d`).
    #[command(hide = true)]
    Supervise,
}

impl Cli {
    pub fn state_root(&self) -> StateRoot {
        match &self.root {
            Some(dir) => StateRoot::under(dir),
            None => StateRoot::system(),
        }
    }
}
