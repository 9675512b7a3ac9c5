//! `islander image import|ls|rm`

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use islander::image::{ImageInfo, ImageStore};
use islander::paths::StateRoot;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a root filesystem tarball (tar or tar.gz, as `docker export` writes) as image NAME.
    Import {
        /// The tarball; gzip is recognised by content, whatever the file is called.
        file: PathBuf,
        /// Name for the image: lowercase letters, digits, '.', '_' and '-'.
        name: String,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Remove images.
    #[command(alias = "remove")]
    Rm {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
}

pub fn run(root: &StateRoot, cmd: ImageCommand) -> anyhow::Result<i32> {
    let store = ImageStore::new(root);
    match cmd {
        ImageCommand::Import { file, name } => {
            let info = store.import(&file, &name)?;
            println!("{}", info.name);
        }
        ImageCommand::Ls { format } => {
            let images = store.list()?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&images)?),
                _ => print!("{}", table(&images, now())),
            }
        }
        ImageCommand::Rm { names } => {
            // Like `docker rmi`: try every name. Each failure but the last is
            // printed as it happens; the last is returned, so the exit code
            // says something went wrong.
            let mut failed: Option<islander::image::ImageError> = None;
            for name in names {
                match store.remove(&name) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        if let Some(earlier) = failed.replace(e) {
                            eprintln!("islander: {earlier}");
                        }
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e.into());
            }
        }
    }
    Ok(0)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `NAME SIZE CREATED SOURCE` columns, padded to their widest cell.
fn table(images: &[ImageInfo], now: u64) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "SIZE".to_string(),
        "CREATED".to_string(),
        "SOURCE".to_string(),
    ]];
    rows.extend(images.iter().map(|i| {
        [
            i.name.clone(),
            human_size(i.size_bytes),
            relative_time(i.created, now),
            i.source.clone(),
        ]
    }));
    let width = |col: usize| rows.iter().map(|r| r[col].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let mut out = String::new();
    for row in &rows {
        for (cell, w) in row.iter().zip(widths) {
            out.push_str(&format!("{cell:<w$}   "));
        }
        out.push_str(&row[3]);
        out.push('\n');
    }
    out
}

/// Decimal units as docker prints them: 512B, 4.2MB, 126MB.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if value < 99.95 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// "3 minutes ago" and the like; a timestamp in the future (clock skew)
/// reads as "just now".
fn relative_time(then: u64, now: u64) -> String {
    let secs = now.saturating_sub(then);
    let (n, unit) = match secs {
        0 => return "just now".to_string(),
        1..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        86_400..=1_209_599 => (secs / 86_400, "day"),
        1_209_600..=5_183_999 => (secs / 604_800, "week"),
        5_184_000..=63_071_999 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_200_000), "4.2MB");
        assert_eq!(human_size(126_300_000), "126MB");
        assert_eq!(human_size(999_960), "1.0MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
    }

    #[test]
    fn times_read_relative() {
        assert_eq!(relative_time(100, 100), "just now");
        assert_eq!(relative_time(200, 100), "just now");
        assert_eq!(relative_time(99, 100), "1 second ago");
        assert_eq!(relative_time(0, 180), "3 minutes ago");
        assert_eq!(relative_time(0, 3600), "1 hour ago");
        assert_eq!(relative_time(0, 3 * 86_400), "3 days ago");
        assert_eq!(relative_time(0, 15 * 86_400), "2 weeks ago");
        assert_eq!(relative_time(0, 90 * 86_400), "3 months ago");
        assert_eq!(relative_time(0, 800 * 86_400), "2 years ago");
    }

    #[test]
    fn table_aligns_columns() {
        let images = [
            ImageInfo {
                name: "default".into(),
                created: 0,
                size_bytes: 126_300_000,
                source: "debootstrap".into(),
            },
            ImageInfo {
                name: "bb".into(),
                created: 170,
                size_bytes: 4_200_000,
                source: "/tmp/bb.tar".into(),
            },
        ];
        assert_eq!(
            table(&images, 180),
            "NAME      SIZE    CREATED          SOURCE\n\
             default   126MB   3 minutes ago    debootstrap\n\
             bb        4.2MB   10 seconds ago   /tmp/bb.tar\n"
        );
    }
}
