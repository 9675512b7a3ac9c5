//! `islander rm [-f] ISLE...` (also `islander delete`)

use clap::Args;
use islander::isle::remove;
use islander::paths::StateRoot;

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running isle first, instead of refusing it.
    #[arg(short, long)]
    pub force: bool,
    /// Isles to remove: names, ids or unambiguous id prefixes.
    #[arg(value_name = "ISLE", required = true)]
    pub isles: Vec<String>,
}

pub fn run(root: &StateRoot, args: RmArgs) -> anyhow::Result<i32> {
    remove::remove(root, &args.isles, args.force, |label| println!("{label}"))?;
    Ok(0)
}
