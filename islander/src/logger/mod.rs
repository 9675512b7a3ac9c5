//! The isle logger: an isle's stdout and stderr arrive through pipes and are
//! written, line by line, as Docker's json-file driver writes them: one JSON
//! object a line with `log`, `stream` and `time` (RFC 3339, nanoseconds),
//! into `<lib>/isles/<id>/log/isle.log`, rotated by size into `isle.log.1`,
//! `isle.log.2`, ... up to a maximum number of files.
//!
//! [`writer`] turns chunks of a stream into records ([`encode`]) and decides
//! the rotation; a thread of its own writes the files (`sink`);
//! [`reader`] reads them back, in order, for `islander logs`.

pub mod encode;
pub mod reader;
mod sink;
pub mod writer;

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoggerError {
    #[error("{op} {path}: {err}")]
    Io { op: &'static str, path: PathBuf, err: std::io::Error },
    #[error("the log writer thread has stopped")]
    WriterGone,
    #[error("invalid --log-max-size '{0}': use <number>[k|m|g], at least 4k")]
    BadMaxSize(String),
    #[error("invalid --log-max-file '{0}': use an integer from 1 to 100")]
    BadMaxFile(String),
    #[error("invalid {option} '{value}': use an RFC 3339 time (2026-12-01T20:00:00Z) or a duration such as 10m or 1h30m")]
    BadTime { option: &'static str, value: String },
}

pub type Result<T, E = LoggerError> = std::result::Result<T, E>;

/// Which of the isle's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Rotation policy: at most `max_files` files of at most `max_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rotation {
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for Rotation {
    /// Docker's `local` driver defaults: 20 MiB times 5 files.
    fn default() -> Self {
        Rotation { max_size: 20 * 1024 * 1024, max_files: 5 }
    }
}

impl Rotation {
    pub fn parse(max_size: Option<&str>, max_files: Option<&str>) -> Result<Rotation> {
        let mut r = Rotation::default();
        if let Some(s) = max_size {
            r.max_size = parse_size(s).filter(|&n| n >= 4096).ok_or_else(|| LoggerError::BadMaxSize(s.to_string()))?;
        }
        if let Some(s) = max_files {
            r.max_files = s
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| LoggerError::BadMaxFile(s.to_string()))?;
        }
        Ok(r)
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').filter(|x| !x.is_empty() && x.ends_with(['k', 'm', 'g'])).unwrap_or(&lower);
    let (digits, mult) = match lower.chars().last()? {
        'k' => (&lower[..lower.len() - 1], 1u64 << 10),
        'm' => (&lower[..lower.len() - 1], 1 << 20),
        'g' => (&lower[..lower.len() - 1], 1 << 30),
        c if c.is_ascii_digit() => (lower, 1),
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// Maps an I/O error on `path` to a [`LoggerError`].
fn io(op: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LoggerError {
    let path = path.to_path_buf();
    move |err| LoggerError::Io { op, path, err }
}

/// The log directory of an isle and the path of its n-th file (0 = current).
pub fn log_file(dir: &std::path::Path, n: u32) -> PathBuf {
    if n == 0 {
        dir.join("isle.log")
    } else {
        dir.join(format!("isle.log.{n}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_options_are_checked() {
        assert_eq!(Rotation::parse(Some("1m"), Some("3")).unwrap(), Rotation { max_size: 1 << 20, max_files: 3 });
        assert_eq!(Rotation::parse(Some("64kb"), None).unwrap().max_size, 65536);
        for bad in ["", "1x", "-1", "1k", "99999999999999g"] {
            assert!(Rotation::parse(Some(bad), None).is_err(), "{bad:?}");
        }
        for bad in ["0", "101", "x", ""] {
            assert!(Rotation::parse(None, Some(bad)).is_err(), "{bad:?}");
        }
    }
}
