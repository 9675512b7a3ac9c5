//! `islander kill [-s SIGNAL] ISLE...`

use clap::Args;
use islander::isle::kill;
use islander::paths::StateRoot;

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal: a name with or without SIG, in any case (TERM, sigterm), or a number.
    #[arg(
        short,
        long,
        value_name = "SIGNAL",
        default_value = "KILL",
        allow_hyphen_values = true
    )]
    pub signal: String,
    /// Isles to signal: names, ids or unambiguous id prefixes.
    #[arg(value_name = "ISLE", required = true)]
    pub isles: Vec<String>,
}

pub fn run(root: &StateRoot, args: KillArgs) -> anyhow::Result<i32> {
    let sig = kill::parse_signal(&args.signal).map_err(islander::Error::from)?;
    kill::kill(root, &args.isles, sig, |label| println!("{label}"))?;
    Ok(0)
}
