//! Building the default image with debootstrap.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{ImageError, Result, DEFAULT_SUITE, ENV_DEBIAN_MIRROR};

const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";
/// Lines of debootstrap's own log shown when it fails; the log itself goes
/// away with the staging directory.
const LOG_TAIL: usize = 10;

/// Where debootstrap is: on PATH, or in the sbin directories a non-login
/// root shell may leave off it.
pub(super) fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join("debootstrap"))
        .find(|candidate| candidate.is_file())
}

/// The caller's PATH plus the system directories, since debootstrap runs
/// chroot, mount and the like from sbin, which `sudo` or cron may leave out.
fn child_path() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !dirs.iter().any(|d| d == Path::new(dir)) {
            dirs.push(dir.into());
        }
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
}

/// The mirror to build from: `ISLANDER_DEBIAN_MIRROR`, else the host's own
/// Debian mirror (likely near, maybe a local cache), else deb.debian.org.
pub(super) fn pick_mirror() -> Result<String> {
    if let Some(mirror) = std::env::var_os(ENV_DEBIAN_MIRROR).filter(|m| !m.is_empty()) {
        let mirror = mirror.to_string_lossy().into_owned();
        let known = ["http://", "https://", "ftp://", "file:/"]
            .iter()
            .any(|s| mirror.starts_with(s));
        if !known || mirror.chars().any(char::is_whitespace) {
            return Err(ImageError::InvalidMirror(mirror));
        }
        return Ok(mirror);
    }
    Ok(host_mirror(Path::new("/etc/apt")).unwrap_or_else(|| FALLBACK_MIRROR.to_string()))
}

/// The first plain-http Debian archive in apt's sources, in the order apt
/// reads them: `sources.list`, then `sources.list.d/*` by name.
pub(super) fn host_mirror(etc_apt: &Path) -> Option<String> {
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(entries) = fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        let sources = match file.extension().and_then(|e| e.to_str()) {
            Some("list") => one_line_sources(&text),
            Some("sources") => deb822_sources(&text),
            // apt ignores other names (*.disabled, backups, ...); so do we.
            _ => continue,
        };
        if let Some(uri) = sources
            .into_iter()
            .find_map(|(uri, suites)| is_debian_archive(&uri, &suites).then_some(uri))
        {
            return Some(uri.trim_end_matches('/').to_string());
        }
    }
    None
}

/// A source that debootstrap can build bookworm from: plain http (https
/// would need CA certificates inside the new tree) and the main archive, not
/// security or a third party: it carries the suite, or lives at `/debian`.
fn is_debian_archive(uri: &str, suites: &[String]) -> bool {
    uri.starts_with("http://")
        && (suites.iter().any(|s| s == DEFAULT_SUITE) || uri.trim_end_matches('/').ends_with("/debian"))
}

/// `deb [options] URI suite [components]` lines.
fn one_line_sources(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ").or_else(|| line.strip_prefix("deb\t")) else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            let Some(end) = rest.find(']') else { continue };
            rest = &rest[end + 1..];
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push((uri.to_string(), vec![suite.to_string()]));
        }
    }
    out
}

/// deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Enabled:`), one source per URI.
fn deb822_sources(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut types, mut uris, mut suites, mut enabled) = (Vec::new(), Vec::new(), Vec::new(), true);
        for line in stanza.lines() {
            if line.starts_with('#') || line.starts_with(char::is_whitespace) {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let words = || value.split_whitespace().map(str::to_string).collect::<Vec<_>>();
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types = words(),
                "uris" => uris = words(),
                "suites" => suites = words(),
                "enabled" => enabled = !value.trim().eq_ignore_ascii_case("no"),
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") {
            out.extend(uris.into_iter().map(|uri| (uri, suites.clone())));
        }
    }
    out
}

/// Runs `debootstrap --variant=minbase bookworm TARGET MIRROR`, handing its
/// `I:`/`W:`/`E:` lines to `progress` as they come.
pub(super) fn run(tool: &Path, target: &Path, mirror: &str, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let spawn_err = |e| ImageError::io("run", tool, e);
    let (reader, writer) = io::pipe().map_err(spawn_err)?;
    let mut child = {
        // One pipe for both streams keeps the lines in the order written. The
        // Command holds write ends too, so it must be gone before we read to EOF.
        let mut command = Command::new(tool);
        command
            .arg("--variant=minbase")
            .arg(DEFAULT_SUITE)
            .arg(target)
            .arg(mirror)
            .env("PATH", child_path())
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(writer.try_clone().map_err(spawn_err)?)
            .stderr(writer);
        // If islander dies, debootstrap must not carry on filling a staging
        // directory the next sweep will delete; SIGTERM lets it run its exit
        // trap, which unmounts the /proc and /sys it mounted in the target.
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            });
        }
        command.spawn().map_err(spawn_err)?
    };

    let mut other = VecDeque::new();
    let mut last_error = None;
    let mut lines = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if line.starts_with("I: ") || line.starts_with("W: ") || line.starts_with("E: ") {
            progress(line);
            if line.starts_with("E: ") {
                last_error = Some(line.to_string());
            }
        } else if !line.is_empty() {
            if other.len() == LOG_TAIL {
                other.pop_front();
            }
            other.push_back(line.to_string());
        }
    }
    let status = child.wait().map_err(spawn_err)?;
    if status.success() {
        return Ok(());
    }

    for line in &other {
        progress(line);
    }
    let log = target.join("debootstrap/debootstrap.log");
    if let Ok(text) = fs::read_to_string(&log) {
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
            progress(&format!("debootstrap.log: {line}"));
        }
    }
    Err(ImageError::Debootstrap {
        mirror: mirror.to_string(),
        status: status.to_string(),
        last_line: last_error
            .or_else(|| other.back().cloned())
            .unwrap_or_else(|| "no output".to_string()),
    })
}

/// Drops what only a package download needs: the fetched .debs and the
/// package lists (`apt-get update` fetches fresh ones), about 80 MB.
pub(super) fn clean_apt_caches(rootfs: &Path) -> Result<()> {
    let clean = |dir: &str, keep: &dyn Fn(&str) -> bool| -> Result<()> {
        let dir = rootfs.join(dir);
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
                fs::remove_file(entry.path()).map_err(|e| ImageError::io("clean", entry.path(), e))?;
            }
        }
        Ok(())
    };
    clean("var/cache/apt/archives", &|name| !name.ends_with(".deb"))?;
    clean("var/cache/apt/archives/partial", &|_| false)?;
    clean("var/lib/apt/lists", &|name| name == "lock")?;
    clean("var/lib/apt/lists/partial", &|_| false)
}
