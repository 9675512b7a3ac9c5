//! `islander stats [ISLE...] [--no-stream] [--format table|json]`

use std::io::{self, Write};
use std::thread;
use std::time::Duration;

use clap::Args;
use islander::ebpf::Observer;
use islander::paths::StateRoot;
use islander::stats::{self, IsleStats, Sampler};

/// Time between two samples: the rates are averages over it.
const INTERVAL: Duration = Duration::from_secs(1);
/// Clear the screen and home the cursor, as `docker stats` does per refresh.
const CLEAR: &str = "\x1b[2J\x1b[H";

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Isles to show, by name, id or unambiguous id prefix [default: all running isles].
    #[arg(value_name = "ISLE")]
    pub isles: Vec<String>,
    /// Print one snapshot (rates over one second) and exit, instead of refreshing every second.
    #[arg(long)]
    pub no_stream: bool,
    /// Output format: an aligned table, or JSON (a list of objects; one list per line when streaming).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

pub fn run(root: &StateRoot, args: StatsArgs) -> anyhow::Result<i32> {
    let observer = match Observer::attach() {
        Ok(o) => Some(o),
        Err(e) => {
            // Not fatal: the cgroup figures need no BPF.
            tracing::warn!("eBPF figures unavailable, showing '-' for them: {e}");
            None
        }
    };
    let mut sampler = Sampler::new(root.clone(), observer);
    // Names and prefixes are resolved once, against the isles running now;
    // an isle that ends later just leaves the table.
    let only = if args.isles.is_empty() { None } else { Some(stats::select(root, &sampler.snapshot(), &args.isles)?) };
    let json = args.format == "json";
    sampler.sample(only.as_deref());
    let mut out = io::stdout().lock();
    loop {
        thread::sleep(INTERVAL);
        let rows = sampler.sample(only.as_deref());
        let text = match (json, args.no_stream) {
            (true, true) => serde_json::to_string_pretty(&rows)? + "\n",
            // One line per refresh, so a script can read the stream line by line.
            (true, false) => serde_json::to_string(&rows)? + "\n",
            (false, true) => table(&rows),
            (false, false) => format!("{CLEAR}{}", table(&rows)),
        };
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            // A reader that went away (`islander stats | head`) is a normal end.
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(0);
            }
            return Err(e.into());
        }
        if args.no_stream {
            return Ok(0);
        }
    }
}

const HEADERS: [&str; 10] = [
    "ISLE",
    "NAME",
    "CPU %",
    "CPUS",
    "MEM USAGE / LIMIT",
    "MEM %",
    "BLOCK R / W",
    "NET RX / TX",
    "PIDS",
    "TOP SYSCALLS",
];

/// The rows under [`HEADERS`], each column padded to its widest cell; the
/// last column is left ragged.
fn table(rows: &[IsleStats]) -> String {
    let mut cells: Vec<Vec<String>> = vec![HEADERS.iter().map(|h| h.to_string()).collect()];
    cells.extend(rows.iter().map(row));
    super::table::render(&cells)
}

/// Unknown figures show as `-`: a rate on first sight, the eBPF columns
/// without an observer.
const UNKNOWN: &str = "-";

fn row(s: &IsleStats) -> Vec<String> {
    let opt = |v: Option<String>| v.unwrap_or_else(|| UNKNOWN.to_string());
    let pair = |a: Option<f64>, b: Option<f64>, f: fn(f64) -> String| match (a, b) {
        (Some(a), Some(b)) => format!("{} / {}", f(a), f(b)),
        _ => UNKNOWN.to_string(),
    };
    vec![
        s.short_id.clone(),
        s.name.clone().unwrap_or_else(|| UNKNOWN.to_string()),
        opt(s.cpu_percent.map(percent)),
        format!(
            "{} / {}",
            opt(s.cpu_cpus.map(|c| format!("{c:.2}"))),
            opt(s.cpu_limit_cpus.map(|c| format!("{c:.2}")))
        ),
        format!("{} / {}", bytes(s.memory_usage_bytes as f64), opt(s.memory_limit_bytes.map(|l| bytes(l as f64)))),
        opt(s.memory_percent.map(percent)),
        pair(s.block_read_bytes_per_second, s.block_write_bytes_per_second, byte_rate),
        pair(s.network_receive_bytes_per_second, s.network_transmit_bytes_per_second, byte_rate),
        opt(s.pids.map(|p| p.to_string())),
        match &s.top_syscalls {
            None => UNKNOWN.to_string(),
            Some(top) => {
                top.iter().map(|t| format!("{} {}/s", t.syscall, count(t.per_second))).collect::<Vec<_>>().join(", ")
            }
        },
    ]
}

fn percent(p: f64) -> String {
    format!("{p:.2}%")
}

/// `n` with three significant digits at most, trailing zeros dropped.
fn short(n: f64) -> String {
    let text = if n >= 100.0 {
        format!("{n:.0}")
    } else if n >= 10.0 {
        format!("{n:.1}")
    } else {
        format!("{n:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Bytes in binary units, as the limits are given (`64M` is 64 MiB).
fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut n = n.max(0.0);
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    format!("{}{}", short(n), UNITS[unit])
}

fn byte_rate(n: f64) -> String {
    format!("{}/s", bytes(n))
}

/// A count in decimal units (syscalls are not bytes).
fn count(n: f64) -> String {
    const UNITS: [&str; 5] = ["", "k", "M", "G", "T"];
    let mut n = n.max(0.0);
    let mut unit = 0;
    while n >= 1000.0 && unit + 1 < UNITS.len() {
        n /= 1000.0;
        unit += 1;
    }
    format!("{}{}", short(n), UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use islander::stats::SyscallRate;

    fn stats() -> IsleStats {
        IsleStats {
            id: "ab".repeat(32),
            short_id: "abababababab".into(),
            name: Some("web".into()),
            image: None,
            pid: Some(7),
            cpu_cpus: Some(0.25),
            cpu_limit_cpus: Some(0.5),
            cpu_percent: Some(50.0),
            memory_usage_bytes: 12 << 20,
            memory_limit_bytes: Some(64 << 20),
            memory_percent: Some(18.75),
            pids: Some(2),
            oom_kills: 0,
            ebpf: true,
            block_read_bytes_per_second: Some(0.0),
            block_write_bytes_per_second: Some(1536.0 * 1024.0),
            network_receive_bytes_per_second: Some(10.0),
            network_transmit_bytes_per_second: Some(2048.0),
            syscalls_per_second: Some(1_250_000.0),
            top_syscalls: Some(vec![
                SyscallRate { syscall: "getpid".into(), per_second: 1_234_567.0 },
                SyscallRate { syscall: "read".into(), per_second: 12.0 },
            ]),
        }
    }

    #[test]
    fn units_read_like_docker_stats() {
        assert_eq!(bytes(0.0), "0B");
        assert_eq!(bytes((64 << 20) as f64), "64MiB");
        assert_eq!(bytes(1536.0), "1.5KiB");
        assert_eq!(bytes(123.0 * 1024.0 * 1024.0 * 1024.0), "123GiB");
        assert_eq!(count(1_234_567.0), "1.23M");
        assert_eq!(count(999.0), "999");
        assert_eq!(percent(12.345), "12.35%");
    }

    #[test]
    fn a_row_shows_every_column() {
        let text = table(&[stats()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ISLE "), "{text}");
        for want in [
            "abababababab",
            "web",
            "50.00%",
            "0.25 / 0.50",
            "12MiB / 64MiB",
            "18.75%",
            "0B/s / 1.5MiB/s",
            "10B/s / 2KiB/s",
            "getpid 1.23M/s, read 12/s",
        ] {
            assert!(lines[1].contains(want), "no '{want}' in {:?}", lines[1]);
        }
        // Columns line up: each header starts where its cells start.
        let at = lines[0].find("MEM %").unwrap();
        assert_eq!(&lines[1][at..at + 6], "18.75%");
    }

    #[test]
    fn unknown_figures_are_dashes() {
        let mut s = stats();
        s.ebpf = false;
        s.cpu_cpus = None;
        s.cpu_percent = None;
        s.block_read_bytes_per_second = None;
        s.block_write_bytes_per_second = None;
        s.network_receive_bytes_per_second = None;
        s.network_transmit_bytes_per_second = None;
        s.top_syscalls = None;
        s.name = None;
        let cells = row(&s);
        assert_eq!(cells[1], "-");
        assert_eq!(cells[2], "-");
        assert_eq!(cells[3], "- / 0.50");
        assert_eq!(cells[6], "-");
        assert_eq!(cells[7], "-");
        assert_eq!(cells[9], "-");
    }

    #[test]
    fn an_empty_table_is_just_the_header() {
        assert_eq!(table(&[]).lines().count(), 1);
    }
}
