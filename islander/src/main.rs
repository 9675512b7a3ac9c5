//! The `islander` command.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// Docker's code for "the engine failed", as opposed to the command.
const ENGINE_FAILURE: u8 = 125;

fn main() -> ExitCode {
    let cli = Cli::parse();
    islander::logging::init(cli.verbose);
    let root = cli.state_root();
    let result = match cli.command {
        Command::Run(args) => cli::run::run(&root, args),
        Command::Image { cmd } => cli::image::run(&root, cmd),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            // One line: the engine's errors already name the bad value and
            // what is accepted; the chain adds where it happened.
            let msg = err.chain().map(|e| e.to_string()).collect::<Vec<_>>().join(": ");
            eprintln!("islander: {msg}");
            let code = err
                .downcast_ref::<islander::Error>()
                .map(|e| match e {
                    islander::Error::Process(p) => p.exit_code() as u8,
                    _ => ENGINE_FAILURE,
                })
                .unwrap_or(ENGINE_FAILURE);
            ExitCode::from(code)
        }
    }
}
