//! `islander ps [-a] [--format table|json] [-q]`

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use islander::isle::ps::{self, PsRow};
use islander::isle::short_id;
use islander::paths::StateRoot;

/// How much of the command the table shows.
const COMMAND_WIDTH: usize = 24;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every isle, the exited ones too.
    #[arg(short, long)]
    pub all: bool,
    /// Output format: an aligned table, or JSON (a list of objects).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Print only the isles' ids, one per line.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(root: &StateRoot, args: PsArgs) -> anyhow::Result<i32> {
    let rows = ps::list(root, args.all);
    let text = if args.quiet {
        rows.iter()
            .map(|r| format!("{}\n", short_id(&r.id)))
            .collect()
    } else if args.format == "json" {
        serde_json::to_string_pretty(&rows)? + "\n"
    } else {
        table(&rows)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // `islander ps | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => other.map(|()| 0).map_err(Into::into),
    }
}

fn table(rows: &[PsRow]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = [
        "ID", "NAME", "PID", "IMAGE", "COMMAND", "STATUS", "CREATED", "UPTIME", "LIMITS",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                short_id(&r.id).to_string(),
                r.name.clone().unwrap_or_else(|| "-".into()),
                r.pid.map_or_else(|| "-".into(), |p| p.to_string()),
                r.image
                    .clone()
                    .unwrap_or_else(|| r.rootfs.display().to_string()),
                command(&r.command),
                r.status.clone(),
                format!("{} ago", duration(now.saturating_sub(r.created_unix))),
                r.uptime_seconds.map_or_else(|| "-".into(), duration),
                r.limits_summary.clone(),
            ]
        })
        .collect();
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    rows.extend(cells.into_iter().map(Vec::from));
    super::table::render(&rows)
}

/// The command line, quoted as Docker's table shows it, cut to fit.
fn command(args: &[String]) -> String {
    let joined = args.join(" ");
    let cut: String = if joined.chars().count() > COMMAND_WIDTH {
        joined
            .chars()
            .take(COMMAND_WIDTH - 1)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        joined
    };
    format!("\"{cut}\"")
}

/// `5 seconds`, `3 minutes`, `2 hours`, `4 days`: the largest whole unit.
fn duration(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86399 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_commands_read_well() {
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(59), "59 seconds");
        assert_eq!(duration(61), "1 minute");
        assert_eq!(duration(7200), "2 hours");
        assert_eq!(duration(86400 * 3), "3 days");
        assert_eq!(command(&["sleep".into(), "10".into()]), "\"sleep 10\"");
        let long = command(&[
            "sh".into(),
            "-c".into(),
            "i=0; while [ $i -lt 100000 ]; do".into(),
        ]);
        assert_eq!(long.chars().count(), COMMAND_WIDTH + 2);
        assert!(long.ends_with("…\""));
    }
}
