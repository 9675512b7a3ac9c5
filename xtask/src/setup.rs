//! `cargo xtask setup`: installs, only where missing, what building and
//! testing islander needs. See ../shared/TOOLCHAIN.md for why each piece.

use std::{
    env,
    path::PathBuf,
    process::{Command, Output},
};

use anyhow::{bail, Context as _, Result};

use crate::step;

/// Every Debian package the project uses, and what for.
const PACKAGES: &[&str] = &[
    // rustc 1.96 with LLVM 22 and a prebuilt `core` for bpfel/bpfeb: builds islander-ebpf.
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    // LLVM 22, which bpf-linker is built against to match rustc-web's bitcode.
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    // The default image.
    "debootstrap",
    // The tests' small image.
    "busybox-static",
    // The benchmarks' peers: runc for start-up, bpftrace for eBPF overhead.
    "runc",
    "bpftrace",
    // The metrics tests: a real Prometheus scraping islander, and promtool.
    "prometheus",
    // Static helper programs compiled for the tests (getpid loops, writers).
    "gcc",
    "libc6-dev",
    "iproute2",
    // Terminal tests (attach) drive islander under tmux.
    "tmux",
];

/// The rustup name islander/build.rs runs Debian's toolchain under.
const TOOLCHAIN: &str = "debian-bpf";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

pub fn run() -> Result<()> {
    debian_packages()?;
    rustup_toolchain()?;
    bpf_linker()
}

fn debian_packages() -> Result<()> {
    let mut missing = Vec::new();
    for &package in PACKAGES {
        if !is_installed(package)? {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        step!("setup: Debian packages: all {} installed", PACKAGES.len());
        return Ok(());
    }
    let missing = missing.join(" ");
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        bail!("installing Debian packages needs root; missing: {missing}");
    }
    step!("setup: Debian packages: installing {missing}");
    apt_get(&["update"])?;
    apt_get(
        &["install", "-y"]
            .into_iter()
            .chain(missing.split(' '))
            .collect::<Vec<_>>(),
    )
}

fn is_installed(package: &str) -> Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .context("running dpkg-query (is this a Debian system?)")?;
    // An unknown package is a non-zero exit with nothing on stdout; it is
    // missing all the same.
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).ends_with(" installed"))
}

fn apt_get(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn rustup_toolchain() -> Result<()> {
    let list = checked_output(Command::new("rustup").args(["toolchain", "list"])).context(
        "listing rustup toolchains (islander's build runs Debian's rustc through rustup)",
    )?;
    let linked = String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|line| line.split_whitespace().next() == Some(TOOLCHAIN));
    if linked {
        step!("setup: rustup toolchain {TOOLCHAIN}: linked");
        return Ok(());
    }
    step!("setup: rustup toolchain {TOOLCHAIN}: running rustup toolchain link {TOOLCHAIN} /usr");
    checked_output(Command::new("rustup").args(["toolchain", "link", TOOLCHAIN, "/usr"]))?;
    Ok(())
}

fn bpf_linker() -> Result<()> {
    if let Some(version) = bpf_linker_version() {
        if version
            .split_whitespace()
            .any(|word| word == BPF_LINKER_VERSION)
        {
            step!("setup: bpf-linker {BPF_LINKER_VERSION}: installed");
            return Ok(());
        }
        step!("setup: bpf-linker: found {version:?}, replacing it with {BPF_LINKER_VERSION}");
    }
    step!(
        "setup: bpf-linker {BPF_LINKER_VERSION}: cargo install bpf-linker --version {BPF_LINKER_VERSION} \
         --no-default-features --features llvm-22 --locked (about 1.5 minutes on 2 cores)"
    );
    // bpf-linker's build finds LLVM through llvm-config, which has to be
    // LLVM 22's rather than whatever /usr/bin offers.
    let path = env::var_os("PATH").unwrap_or_default();
    let path =
        env::join_paths(std::iter::once(PathBuf::from(LLVM_BIN)).chain(env::split_paths(&path)))
            .context("building PATH for the bpf-linker build")?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22", "--locked"])
        // --force replaces a different version already in ~/.cargo/bin.
        .arg("--force")
        .env("PATH", path)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed ({status})");
    }
    if bpf_linker_version().is_none() {
        bail!("bpf-linker was installed but is not on PATH; add cargo's bin directory (usually ~/.cargo/bin) to PATH");
    }
    Ok(())
}

/// What `bpf-linker --version` prints, or None when it does not run.
fn bpf_linker_version() -> Option<String> {
    let out = Command::new("bpf-linker").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs a command to completion, failing with its stderr when it fails.
fn checked_output(command: &mut Command) -> Result<Output> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = command
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("{program} failed ({}): {}", out.status, stderr.trim());
    }
    Ok(out)
}
