//! islander's developer tasks, run as `cargo xtask <task>` (an alias in
//! .cargo/config.toml).
//!
//! This crate must not depend on islander: `setup` is what installs the eBPF
//! toolchain that islander's build script needs, so it has to build without it.

mod bench;
mod setup;

use std::{
    env,
    ffi::OsString,
    io::IsTerminal as _,
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitCode, ExitStatus},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "islander's developer tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and the tests need, skipping what is there:
    /// Debian packages, the debian-bpf rustup toolchain, bpf-linker 0.13.0
    Setup,
    /// Set up, then build islander
    Build {
        /// Build with the release profile
        #[arg(long)]
        release: bool,
    },
    /// Set up, build islander (release) and start bash in an isle on the
    /// default image
    Run {
        /// Options for `islander run`, given after `--`; they go before the
        /// command
        #[arg(last = true, value_name = "ISLANDER_RUN_ARGS")]
        args: Vec<OsString>,
    },
    /// Set up, build islander and run the whole test suite (as root)
    Test {
        /// Arguments for `cargo test`, given after `--`
        #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
        args: Vec<OsString>,
    },
    /// Run a benchmark
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run().map(|()| ExitCode::SUCCESS),
        Task::Build { release } => build(release).map(|()| ExitCode::SUCCESS),
        Task::Run { args } => run(&args),
        Task::Test { args } => test(&args),
        Task::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints one step of a task, so the user sees what is being done.
macro_rules! step {
    ($($arg:tt)*) => { println!("xtask: {}", format_args!($($arg)*)) };
}
pub(crate) use step;

fn build(release: bool) -> Result<()> {
    setup::run()?;
    cargo_build(release)
}

fn run(islander_args: &[OsString]) -> Result<ExitCode> {
    build(true)?;
    let islander = target_dir().join("release/islander");
    let mut command = Command::new(&islander);
    command.args(["run", "-i"]);
    // Without a terminal on stdin (a pipe, CI) a pty would only get in the way.
    if std::io::stdin().is_terminal() {
        command.arg("-t");
    }
    command.args(islander_args).arg("/bin/bash");
    step!("run: {}", show(&command));
    let err = command.exec();
    Err(err).with_context(|| format!("executing {}", islander.display()))
}

fn test(cargo_test_args: &[OsString]) -> Result<ExitCode> {
    setup::run()?;
    cargo_build(false)?;
    let islander = target_dir().join("debug/islander");
    let mut command = cargo();
    command
        .args(["test", "--workspace"])
        .args(cargo_test_args)
        .env("ISLANDER_BIN", &islander);
    step!(
        "test: ISLANDER_BIN={} {}",
        islander.display(),
        show(&command)
    );
    let status = command.status().context("running cargo test")?;
    Ok(exit_code(status))
}

fn cargo_build(release: bool) -> Result<()> {
    let mut command = cargo();
    command.args(["build", "--package", "islander"]);
    if release {
        command.arg("--release");
    }
    step!("build: {}", show(&command));
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

/// The cargo that is running xtask, so builds use the same toolchain.
fn cargo() -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ sits inside the workspace")
}

fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The status to exit with so that a caller sees what the child saw.
fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    }
}

/// A command line as it would be typed, for the step lines.
fn show(command: &Command) -> String {
    let program = Path::new(command.get_program());
    // Show `cargo`, not the full path of the toolchain's cargo.
    let program = if program.file_name() == Some("cargo".as_ref()) {
        "cargo".into()
    } else {
        program.display().to_string()
    };
    std::iter::once(program)
        .chain(
            command
                .get_args()
                .map(|arg| arg.to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ")
}
