//! Builds islander-ebpf for the BPF target and leaves the object in OUT_DIR,
//! where src/ebpf embeds it.
//!
//! rustup's toolchains here cannot target bpfel-unknown-none (no rust-src for
//! -Z build-std), so the build runs under Debian's rustc, linked into rustup
//! as the `debian-bpf` toolchain, which ships a prebuilt `core` for BPF. See
//! ../shared/TOOLCHAIN.md and `cargo xtask setup`.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use aya_build::{Package, Toolchain};

const TOOLCHAIN: &str = "debian-bpf";
const BPF_CORE: &str = "/usr/lib/rustlib/bpfel-unknown-none";

fn main() -> ExitCode {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("islander/ sits inside the workspace");
    let ebpf_dir = workspace.join("islander-ebpf");
    let common_dir = workspace.join("islander-common");

    // Re-run only when the programs or what they share with user space
    // change; aya-build adds the eBPF crate's directory itself as well.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    println!("cargo:rerun-if-changed={}", common_dir.display());

    if let Some(missing) = missing_toolchain_piece() {
        return fail(&format!(
            "the eBPF toolchain is missing ({missing}); run: cargo xtask setup"
        ));
    }

    // The nested cargo's stderr comes back as one `warning:` per line; keep
    // it to real diagnostics rather than every "Compiling" line.
    env::set_var("CARGO_TERM_QUIET", "true");

    let root_dir = ebpf_dir.to_str().expect("workspace path is UTF-8");
    let package = Package {
        name: "islander-ebpf",
        root_dir,
        ..Default::default()
    };
    if let Err(err) = aya_build::build_ebpf([package], Toolchain::Custom(TOOLCHAIN)) {
        // aya-build has already forwarded the compiler's messages as warnings.
        let err = format!("{err:#}").replace('\n', " ");
        return fail(&format!("building islander-ebpf failed: {err}"));
    }
    if let Err(message) = build_workload(&manifest_dir) {
        return fail(&message);
    }
    ExitCode::SUCCESS
}

/// Compiles `islander verify`'s workload helper (workloads/*.c) statically
/// into OUT_DIR, where src/verify embeds it: static, it runs in any image.
fn build_workload(manifest_dir: &Path) -> Result<(), String> {
    let source = manifest_dir.join("workloads/islander-workload.c");
    println!("cargo:rerun-if-changed={}", source.display());
    if find_in_path("gcc").is_none() {
        return Err("gcc is missing; run: cargo xtask setup".to_owned());
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("islander-workload");
    let result = Command::new("gcc")
        .args(["-static", "-O2", "-pthread", "-Wall", "-o"])
        .arg(&out)
        .arg(&source)
        .output()
        .map_err(|err| format!("running gcc: {err}"))?;
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr).replace('\n', " ");
        return Err(format!("compiling {} failed: {stderr}", source.display()));
    }
    Ok(())
}

/// The first piece of the eBPF toolchain that is not installed, if any.
fn missing_toolchain_piece() -> Option<String> {
    if !Path::new(BPF_CORE).is_dir() {
        return Some(format!(
            "{BPF_CORE} from the Debian package libstd-rust-web-dev-bpf"
        ));
    }
    if find_in_path("bpf-linker").is_none() {
        return Some("bpf-linker on PATH".to_owned());
    }
    match Command::new("rustup").args(["toolchain", "list"]).output() {
        Err(err) => Some(format!("rustup ({err})")),
        Ok(out) => {
            let listed = String::from_utf8_lossy(&out.stdout);
            let linked = listed
                .lines()
                .any(|line| line.split_whitespace().next() == Some(TOOLCHAIN));
            (!linked).then(|| format!("rustup toolchain {TOOLCHAIN}"))
        }
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Fails the build with one line in cargo's own error format. Exiting with
/// success keeps cargo from also dumping the script's whole stdout.
fn fail(message: &str) -> ExitCode {
    println!("cargo::error=islander: {message}");
    ExitCode::SUCCESS
}
