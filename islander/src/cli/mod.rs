//! The command line. Argument structs live here, one file per subcommand;
//! each turns its arguments into engine calls. The engine knows no clap.

pub mod attach;
pub mod exec;
pub mod image;
pub mod limits;
pub mod inspect;
pub mod kill;
pub mod logs;
pub mod ps;
pub mod rm;
pub mod run;
pub mod stop;
pub mod stats;
pub mod supervise;
pub mod table;
pub mod verify;

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
    /// Run a command in a running isle.
    Exec(exec::ExecArgs),
    /// Attach your terminal to a running isle (or a process in one); detach
    /// with ctrl-p ctrl-q.
    Attach(attach::AttachArgs),
    /// A live table of the isles' use against their limits.
    Stats(stats::StatsArgs),
    /// Check that limits hold: start an isle with them, push each with a
    /// calibrated workload, and measure with islander's cgroup and eBPF figures.
    Verify(verify::VerifyArgs),
    /// List isles (running ones; -a for all).
    Ps(ps::PsArgs),
    /// Print an isle's logs.
    Logs(logs::LogsArgs),
    /// Stop running isles: SIGTERM, then SIGKILL after a grace time.
    Stop(stop::StopArgs),
    /// Send a signal to running isles' PID 1.
    Kill(kill::KillArgs),
    /// Remove isles and everything they left (state, cgroups, layer, logs).
    #[command(alias = "delete")]
    Rm(rm::RmArgs),
    /// Everything known about isles, as JSON.
    Inspect(inspect::InspectArgs),
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
