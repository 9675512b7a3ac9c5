//! `islander inspect ISLE...`

use std::io::Write;

use clap::Args;
use islander::isle::inspect;
use islander::paths::StateRoot;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Isles to inspect: names, ids or unambiguous id prefixes.
    #[arg(value_name = "ISLE", required = true)]
    pub isles: Vec<String>,
}

pub fn run(root: &StateRoot, args: InspectArgs) -> anyhow::Result<i32> {
    let found = inspect::inspect(root, &args.isles)?;
    let mut out = std::io::stdout().lock();
    let text = serde_json::to_string_pretty(&found)? + "\n";
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => other.map(|()| 0).map_err(Into::into),
    }
}
