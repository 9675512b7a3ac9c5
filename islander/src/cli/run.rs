//! `islander run [OPTIONS] [CMD [ARG...]]`

use std::path::PathBuf;

use clap::Args;
use islander::isle::run::{self, RunRequest};
use islander::logger::Rotation;
use islander::paths::StateRoot;

use super::limits::LimitOptions;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Image to run (created on first use when it is `default`).
    #[arg(long, value_name = "NAME", conflicts_with = "rootfs")]
    pub image: Option<String>,
    /// A directory to use as the isle's (read-only) lower layer instead of an image.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// A unique name for the isle.
    #[arg(long)]
    pub name: Option<String>,
    /// Host name inside the isle [default: the isle's short id].
    #[arg(long)]
    pub hostname: Option<String>,
    /// Keep stdin open and connected to the isle.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the isle a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Run in the background: print the isle's id and return at once.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the isle (record, layer, logs, cgroups) once it ends. A
    /// foreground isle always is; with -d, its logger removes it.
    #[arg(long = "rm")]
    pub auto_remove: bool,
    /// Rotate the isle's log when a file reaches SIZE (<number>[k|m|g]). [default: 20m]
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub log_max_size: Option<String>,
    /// Serve Prometheus metrics of this root's running isles on ADDR
    /// (`:9100`, `127.0.0.1:9100`, `[::1]:9100`) while the isle runs.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Keep at most N log files. [default: 5]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub log_max_file: Option<String>,
    /// Set an environment variable in the isle (repeatable).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the isle.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Run in a user namespace: root in the isle is host uid/gid 100000 (range 65536).
    #[arg(long)]
    pub userns: bool,
    /// Lift the hardening: all capabilities, all devices, no masked paths.
    #[arg(long)]
    pub privileged: bool,

    #[command(flatten)]
    pub limits: LimitOptions,

    /// The command and its arguments [default: /bin/bash, else /bin/sh].
    #[arg(value_name = "CMD", trailing_var_arg = true)]
    pub command: Vec<String>,
}

pub fn run(root: &StateRoot, args: RunArgs) -> anyhow::Result<i32> {
    let req = RunRequest {
        image: args.image,
        rootfs: args.rootfs,
        args: args.command,
        env: args.env,
        workdir: args.workdir,
        hostname: args.hostname,
        name: args.name,
        interactive: args.interactive,
        tty: args.tty,
        userns: args.userns,
        privileged: args.privileged,
        detach: args.detach,
        auto_remove: args.auto_remove,
        log_rotation: Rotation::parse(args.log_max_size.as_deref(), args.log_max_file.as_deref())
            .map_err(islander::Error::from)?,
        id: None,
        extra_lower: None,
        metrics: args.metrics,
        limits: args.limits.into_limit_args(args.privileged),
    };
    if req.detach {
        return detach(root, req);
    }
    let outcome = run::run(root, req)?;
    if outcome.oom_kills > 0 {
        let limit = outcome.memory_limit.map(|l| format!(" (memory limit {l} bytes)")).unwrap_or_default();
        eprintln!(
            "islander: isle {} was OOM-killed{limit}: the kernel ended {} of its processes",
            outcome.short_id(),
            outcome.oom_kills
        );
    }
    Ok(outcome.exit.status())
}

/// `run -d`: hands the request to a new supervisor in a session of its own
/// and waits only for its answer: the isle's id, or why it did not start.
fn detach(root: &StateRoot, mut req: RunRequest) -> anyhow::Result<i32> {
    use std::io::{BufRead, Write};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use super::supervise::{Answer, Launch};

    let id = islander::isle::new_id();
    req.id = Some(id.clone());
    let launch = Launch { lib: root.lib().to_path_buf(), run: root.run().to_path_buf(), request: req };
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("supervise").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    // SAFETY: setsid is async-signal-safe; the supervisor must not belong to
    // the CLI's session, whose end (a closed terminal, a SIGHUP) it outlives.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    {
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(serde_json::to_string(&launch)?.as_bytes())?;
    }
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    match serde_json::from_str::<Answer>(line.trim()) {
        Ok(Answer::Started { id }) => {
            println!("{id}");
            Ok(0)
        }
        Ok(Answer::Failed { message, code }) => {
            let _ = child.wait();
            eprintln!("islander: {message}");
            Ok(code)
        }
        Err(_) => {
            let status = child.wait()?;
            anyhow::bail!("the supervisor of isle {} exited without starting it ({status})", &id[..12])
        }
    }
}
