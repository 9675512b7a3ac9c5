//! `islander stop [-t SECS] ISLE...`

use std::time::Duration;

use clap::Args;
use islander::isle::stop;
use islander::paths::StateRoot;

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = stop::DEFAULT_TIMEOUT.as_secs())]
    pub time: u64,
    /// Isles to stop: names, ids or unambiguous id prefixes.
    #[arg(value_name = "ISLE", required = true)]
    pub isles: Vec<String>,
}

pub fn run(root: &StateRoot, args: StopArgs) -> anyhow::Result<i32> {
    stop::stop(root, &args.isles, Duration::from_secs(args.time), |label| {
        println!("{label}")
    })?;
    Ok(0)
}
