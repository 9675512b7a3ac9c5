//! The `islander` command.

mod cli;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use cli::{Cli, Command};

/// Docker's code for "the engine failed", as opposed to the command.
const ENGINE_FAILURE: u8 = 125;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    islander::logging::init(cli.verbose);
    let root = cli.state_root();
    let result = match cli.command {
        Command::Run(args) => cli::run::run(&root, args),
        Command::Image { cmd } => cli::image::run(&root, cmd),
        Command::Supervise => cli::supervise::run(),
        Command::Ps(args) => cli::ps::run(&root, args),
        Command::Logs(args) => cli::logs::run(&root, args),
        Command::Stop(args) => cli::stop::run(&root, args),
        Command::Kill(args) => cli::kill::run(&root, args),
        Command::Rm(args) => cli::rm::run(&root, args),
        Command::Inspect(args) => cli::inspect::run(&root, args),
        Command::Exec(args) => cli::exec::run(&root, args),
        Command::Attach(args) => cli::attach::run(&root, args),
        Command::Stats(args) => cli::stats::run(&root, args),
        Command::Verify(args) => cli::verify::run(&root, args),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            // One line: the engine's errors already name the bad value and
            // what is accepted; the chain adds where it happened.
            let msg = err.chain().map(|e| e.to_string()).collect::<Vec<_>>().join(": ");
            eprintln!("islander: {msg}");
            ExitCode::from(err.downcast_ref::<islander::Error>().map(exit_code).unwrap_or(ENGINE_FAILURE))
        }
    }
}

/// The exit status for an engine error, as Docker's: 127 for a command that
/// is not in the isle, 126 for one that cannot run, 125 for all else.
pub fn exit_code(e: &islander::Error) -> u8 {
    match e {
        islander::Error::Process(p) => p.exit_code() as u8,
        _ => ENGINE_FAILURE,
    }
}

/// An engine error as the one line islander prints.
pub fn error_line(e: &islander::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
        src = s.source();
    }
    msg
}

/// Help and version go to stdout with status 0; a usage mistake becomes one
/// `islander:` line (clap's first line, with its hint) and status 125, as
/// every other bad input does.
fn usage_error(err: clap::Error) -> ExitCode {
    if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let rendered = err.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let hint = lines
        .find(|l| l.starts_with("tip:") || l.starts_with("[possible values:"))
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    eprintln!("islander: {first}{hint}; see 'islander --help'");
    ExitCode::from(ENGINE_FAILURE)
}
