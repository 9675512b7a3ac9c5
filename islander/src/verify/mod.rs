//! `islander verify`: start an isle with the given limits, push each limit
//! with a calibrated workload inside it, and say whether it held, measured
//! with islander's own figures (cgroup counters and the eBPF observer).
//!
//! The pieces, in the order a run uses them:
//! - [`plan`]: the limits as `islander run` would set them, and the loads
//!   that push them.
//! - [`stage`]: the workload helper (compiled by build.rs from
//!   `workloads/islander-workload.c`) and a file to read, put into the isle
//!   as an extra read-only overlay layer, so the image needs no tools.
//! - [`drive`]: runs each load through `islander exec`, sampling every
//!   [`SAMPLE_EVERY`], and turns the samples into [`Row`]s by the rules of
//!   [`verdict`].
//! - [`plot`]: measured use against each limit over time, as SVG.
//!
//! How the isle is started and entered is the front end's business (a
//! [`Launcher`]): the engine only ever runs single-threaded children, and
//! this process holds the eBPF observer's thread while it samples.

mod drive;
pub mod plan;
pub mod plot;
mod sample;
mod stage;
pub mod verdict;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::isle::run::RunRequest;
use crate::limits::LimitArgs;
use crate::paths::StateRoot;

pub use drive::{byte_rate, bytes};
pub use sample::Sample;
pub use verdict::Verdict;

/// Time between two samples of the isle's counters.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("invalid --plot '{}': {reason} (accepted: a path ending in .svg, in an existing directory)", path.display())]
    BadPlot { path: PathBuf, reason: String },
    #[error("starting the isle to verify: {0}")]
    Start(String),
    #[error("the {load} workload failed: {reason}")]
    Workload { load: &'static str, reason: String },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("interrupted; the isle was removed")]
    Interrupted,
}

pub type Result<T, E = VerifyError> = std::result::Result<T, E>;

fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> VerifyError {
    let path = path.into();
    move |source| VerifyError::Io { op, path, source }
}

/// What to verify: the isle's image and the limit options of `run`.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    pub image: Option<String>,
    pub rootfs: Option<PathBuf>,
    pub limits: LimitArgs,
}

/// How the isle is started and entered: the binary's `run -d` and `exec`.
pub trait Launcher {
    /// Starts `req` (its id chosen) detached and returns once the isle
    /// runs, or the one-line reason it did not start.
    fn start(&mut self, req: RunRequest) -> std::result::Result<(), String>;
    /// A command that runs `args` inside the running isle `id`, with the
    /// command's stdout as its own.
    fn exec(&self, id: &str, args: &[String]) -> Command;
}

/// Told as the run goes: the load now running and how far the whole run
/// is (0..1).
pub type Progress<'a> = &'a mut dyn FnMut(&str, f64);

/// One verified limit. Units: CPUs for CPU (0.5 is half a CPU), bytes per
/// second for rates, bytes for memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub limit: String,
    pub unit: &'static str,
    pub configured: f64,
    /// `None` when nothing could be measured (a device no load touches).
    pub measured: Option<f64>,
    pub verdict: Verdict,
    /// What the figure rests on, in words: the window, the counters, the
    /// OOM kill.
    pub detail: String,
}

/// A load's measured window on the common time line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub load: &'static str,
    pub start: f64,
    pub end: f64,
}

/// Everything a run found: the rows and the time line they come from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Every sample, in time order (`t` counts from the first).
    pub samples: Vec<Sample>,
    pub spans: Vec<Span>,
    pub limits: plot::Lines,
    /// Whether the eBPF observer counted the isle's block IO.
    pub ebpf: bool,
    /// Things the user should know that are not rows: limits with nothing
    /// to verify, a missing observer.
    pub notes: Vec<String>,
}

impl Report {
    pub fn any_exceeded(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Exceeded)
    }
}

/// Checks a `--plot` path before anything runs, so that a run is not
/// wasted on a plot that cannot be written.
pub fn check_plot_path(path: &Path) -> Result<()> {
    let bad = |reason: &str| VerifyError::BadPlot {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => {}
        Some(e) if e.eq_ignore_ascii_case("png") => return Err(bad("PNG is not drawn; only SVG")),
        _ => return Err(bad("not an .svg file name")),
    }
    if path.file_name().is_none() {
        return Err(bad("no file name"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(bad("its directory does not exist"));
    }
    if path.is_dir() {
        return Err(bad("is a directory"));
    }
    Ok(())
}

/// Writes the plot of `report` to `path` all at once: a temporary file
/// beside it, renamed into place, so no half-written plot is ever seen.
pub fn write_plot(report: &Report, path: &Path) -> Result<()> {
    let svg = plot::svg(report);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, svg.as_bytes()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err("writing the plot", path)(e));
    }
    Ok(())
}

/// Runs a whole verification: checks the limits, starts the isle through
/// `launcher`, runs the loads, removes the isle, and returns the report.
/// Setting `stop` (from a signal handler) ends it early, cleaned up, with
/// [`VerifyError::Interrupted`].
pub fn verify(
    root: &StateRoot,
    req: &VerifyRequest,
    launcher: &mut dyn Launcher,
    stop: &AtomicBool,
    progress: Progress,
) -> crate::Result<Report> {
    drive::run(root, req, launcher, stop, progress)
}
