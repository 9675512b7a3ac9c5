//! `islander verify [--image NAME|--rootfs DIR] [LIMIT OPTIONS] [--format table|json] [--plot FILE.svg]`

use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use islander::isle::run::RunRequest;
use islander::paths::StateRoot;
use islander::verify::{self, Launcher, Report, Row, VerifyError, VerifyRequest};

use super::limits::LimitOptions;
use super::supervise::{Answer, Launch};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Image of the isle to verify in (created on first use when it is `default`).
    #[arg(long, value_name = "NAME", conflicts_with = "rootfs")]
    pub image: Option<String>,
    /// A directory to use as the isle's (read-only) lower layer instead of an image.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,

    /// The limits to verify, as `islander run` takes them. `--cpu-shares` and
    /// `--net-cls-classid` are set but not verified: a weight shows only
    /// against other isles, a class id only to a traffic classifier.
    #[command(flatten)]
    pub limits: LimitOptions,

    /// Output format: an aligned table, or JSON (a list of objects with
    /// limit, unit, configured, measured, verdict and detail).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Also draw measured use against each limit over time into FILE (SVG).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// Set by SIGINT, SIGTERM or SIGHUP: the run stops and cleans up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The status of an interrupted run, as a shell reports ^C.
const INTERRUPTED: i32 = 130;

pub fn run(root: &StateRoot, args: VerifyArgs) -> anyhow::Result<i32> {
    if let Some(plot) = &args.plot {
        verify::check_plot_path(plot).map_err(islander::Error::from)?;
    }
    let req = VerifyRequest {
        image: args.image,
        rootfs: args.rootfs,
        limits: args.limits.into_limit_args(false),
    };
    catch_stop_signals()?;
    let mut launcher = CliLauncher::new(root)?;
    let mut bar = Bar::new(io::stderr().is_terminal());
    let result = verify::verify(root, &req, &mut launcher, &STOP, &mut |load, done| bar.show(load, done));
    bar.clear();
    drop(launcher);
    let report = match result {
        Err(islander::Error::Verify(VerifyError::Interrupted)) => {
            eprintln!("islander: verify interrupted; the isle was removed");
            return Ok(INTERRUPTED);
        }
        other => other?,
    };
    for note in &report.notes {
        eprintln!("islander: note: {note}");
    }
    let text = if args.format == "json" {
        serde_json::to_string_pretty(&report.rows)? + "\n"
    } else {
        table(&report.rows)
    };
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    if let Some(plot) = &args.plot {
        verify::write_plot(&report, plot).map_err(islander::Error::from)?;
    }
    Ok(exit_status(&report))
}

/// 0 when no limit was exceeded, 1 when one was: a script can tell.
fn exit_status(report: &Report) -> i32 {
    i32::from(report.any_exceeded())
}

fn catch_stop_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_stop_signal), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// Starts the verify isle the way `run -d` does, through `islander
/// supervise`, and enters it with `islander exec`. The supervisor is a
/// child of verify that dies with it (PR_SET_PDEATHSIG), taking the isle
/// along, and the isle is not marked detached, so the next islander
/// command removes what a killed verify left.
struct CliLauncher {
    exe: PathBuf,
    root: StateRoot,
    root_args: Vec<OsString>,
    supervisor: Option<Child>,
}

/// How long the supervisor may take to exit once its isle was removed.
const SUPERVISOR_GRACE: Duration = Duration::from_secs(10);

impl CliLauncher {
    fn new(root: &StateRoot) -> anyhow::Result<CliLauncher> {
        Ok(CliLauncher {
            exe: std::env::current_exe()?,
            root: root.clone(),
            root_args: root_args(root),
            supervisor: None,
        })
    }
}

/// The `--root` that names `root` to another islander: none for the
/// system's, else the directory holding its lib/ and run/ (the only other
/// way the command line makes a root).
fn root_args(root: &StateRoot) -> Vec<OsString> {
    let system = StateRoot::system();
    if root.lib() == system.lib() && root.run() == system.run() {
        return Vec::new();
    }
    let dir = root.lib().parent().unwrap_or(Path::new("/"));
    vec!["--root".into(), dir.as_os_str().to_owned()]
}

impl Launcher for CliLauncher {
    fn start(&mut self, req: RunRequest) -> Result<(), String> {
        let launch = Launch {
            lib: self.root.lib().to_path_buf(),
            run: self.root.run().to_path_buf(),
            request: req,
        };
        let mut cmd = Command::new(&self.exe);
        cmd.arg("supervise")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("starting islander supervise: {e}"))?;
        let request = serde_json::to_string(&launch).expect("launches serialize");
        let sent = child.stdin.take().expect("piped").write_all(request.as_bytes());
        let mut line = String::new();
        let read = io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
        match serde_json::from_str::<Answer>(line.trim()) {
            Ok(Answer::Started { .. }) => {
                self.supervisor = Some(child);
                Ok(())
            }
            Ok(Answer::Failed { message, .. }) => {
                let _ = child.wait();
                Err(message)
            }
            Err(_) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                let cause = sent.err().or(read.err()).map(|e| format!(": {e}")).unwrap_or_default();
                Err(format!(
                    "the supervisor exited without starting the isle ({status}){cause}"
                ))
            }
        }
    }

    fn exec(&self, id: &str, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.env_remove("ISLANDER_ROOT")
            .args(&self.root_args)
            .arg("exec")
            .arg(id)
            .args(args);
        cmd
    }
}

impl Drop for CliLauncher {
    fn drop(&mut self) {
        let Some(mut child) = self.supervisor.take() else {
            return;
        };
        // The isle is gone by now, and its supervisor with it; reap it, and
        // end one that lingers rather than leave it behind.
        let deadline = Instant::now() + SUPERVISOR_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The progress bar on stderr, drawn only on a terminal.
struct Bar {
    on: bool,
    last: String,
}

const BAR_WIDTH: usize = 30;

impl Bar {
    fn new(on: bool) -> Bar {
        Bar {
            on,
            last: String::new(),
        }
    }

    fn show(&mut self, load: &str, done: f64) {
        if !self.on {
            return;
        }
        let filled = ((done.clamp(0.0, 1.0) * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
        let text = format!(
            "verify [{}{}] {:3.0}%  {load}",
            "#".repeat(filled),
            "-".repeat(BAR_WIDTH - filled),
            done.clamp(0.0, 1.0) * 100.0
        );
        if text != self.last {
            eprint!("\r\x1b[K{text}");
            self.last = text;
        }
    }

    fn clear(&mut self) {
        if self.on && !self.last.is_empty() {
            eprint!("\r\x1b[K");
            self.last.clear();
        }
    }
}

const HEADERS: [&str; 5] = ["LIMIT", "CONFIGURED", "MEASURED", "VERDICT", "DETAIL"];

/// The rows under [`HEADERS`], each column padded to its widest cell; the
/// detail column is left ragged.
fn table(rows: &[Row]) -> String {
    let mut cells: Vec<Vec<String>> = vec![HEADERS.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        cells.push(vec![
            r.limit.clone(),
            value(r.configured, r.unit),
            r.measured.map_or_else(|| "-".to_string(), |m| value(m, r.unit)),
            r.verdict.as_str().to_string(),
            r.detail.clone(),
        ]);
    }
    super::table::render(&cells)
}

fn value(v: f64, unit: &str) -> String {
    match unit {
        "CPUs" => format!("{v:.2} CPUs"),
        "bytes" => verify::bytes(v),
        "bytes/s" => verify::byte_rate(v),
        other => format!("{v} {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_flag_names_the_directory_of_lib_and_run() {
        assert!(root_args(&StateRoot::system()).is_empty());
        let args = root_args(&StateRoot::under(Path::new("/tmp/x")));
        assert_eq!(args, vec![OsString::from("--root"), OsString::from("/tmp/x")]);
    }

    #[test]
    fn table_pads_columns_and_formats_units() {
        let rows = vec![
            Row {
                limit: "cpu".into(),
                unit: "CPUs",
                configured: 0.5,
                measured: Some(0.4987),
                verdict: verify::Verdict::Holds,
                detail: "d".into(),
            },
            Row {
                limit: "device-read-bps 8:16".into(),
                unit: "bytes/s",
                configured: 1048576.0,
                measured: None,
                verdict: verify::Verdict::NotReached,
                detail: "x".into(),
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("cpu                    0.50 CPUs    0.50 CPUs   holds"),
            "{t}"
        );
        assert!(
            lines[2].contains("1.0 MiB/s    -           could not be reached   x"),
            "{t}"
        );
    }
}
