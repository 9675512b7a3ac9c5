//! What the host sees: mount table, cgroup hierarchies, namespaces, devices.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One line of `/proc/<pid>/mountinfo`, fields unescaped.
#[derive(Debug, Clone)]
pub struct Mount {
    pub mount_point: String,
    pub options: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
    /// The line as the kernel wrote it, for error messages and substring checks.
    pub raw: String,
}

/// Parses mountinfo text (from the host or read inside an isle).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 6 || right.len() < 3 {
                return None;
            }
            Some(Mount {
                mount_point: unescape(left[4]),
                options: left[5].to_string(),
                fstype: right[0].to_string(),
                source: unescape(right[1]),
                super_options: right[2].to_string(),
                raw: line.to_string(),
            })
        })
        .collect()
}

/// The kernel writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let digit = |k: usize| u32::from(bytes[i + k] - b'0');
            out.push((digit(1) * 64 + digit(2) * 8 + digit(3)) as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host's mount table, as seen by the test process.
pub fn host_mounts() -> Vec<Mount> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_else(|e| panic!("cannot read /proc/self/mountinfo: {e}"));
    parse_mountinfo(&text)
}

/// Every cgroup hierarchy mounted on the host: v1 ones (`cgroup`) and the
/// unified one (`cgroup2`).
pub fn cgroup_mounts() -> Vec<Mount> {
    host_mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect()
}

/// Where the v1 hierarchy holding `controller` is mounted ("unified" means
/// the cgroup2 tree). Found by mount options, not by assuming a path, since
/// the engine may mount a missing controller (net_cls) itself.
pub fn cgroup_mount(controller: &str) -> Option<PathBuf> {
    cgroup_mounts()
        .into_iter()
        .find(|m| {
            if controller == "unified" {
                m.fstype == "cgroup2"
            } else {
                m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == controller)
            }
        })
        .map(|m| PathBuf::from(m.mount_point))
}

/// `<hierarchy of controller>/islander/<id>`; panics if the controller is not
/// mounted at all, since the contract has islander use it for every isle.
pub fn isle_cgroup(controller: &str, id: &str) -> PathBuf {
    let mount = cgroup_mount(controller).unwrap_or_else(|| {
        panic!("no cgroup hierarchy with the '{controller}' controller is mounted on the host")
    });
    mount.join("islander").join(id)
}

/// The trimmed content of a cgroup file of a (running) isle.
pub fn read_isle_cgroup(controller: &str, id: &str, file: &str) -> String {
    let path = isle_cgroup(controller, id).join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} of the running isle: {e}", path.display()))
        .trim()
        .to_string()
}

/// Every `islander/*` directory in every cgroup hierarchy: a snapshot to
/// diff around a command whose isle id is unknown (one that must fail).
pub fn islander_cgroup_entries() -> BTreeSet<PathBuf> {
    let mut roots: BTreeSet<PathBuf> = cgroup_mounts()
        .into_iter()
        .map(|m| PathBuf::from(m.mount_point))
        .collect();
    // Also look at the usual place, in case a hierarchy was unmounted after
    // the engine made directories in it (they would be invisible otherwise,
    // but an unmounted hierarchy keeps nothing).
    if let Ok(dir) = fs::read_dir("/sys/fs/cgroup") {
        roots.extend(
            dir.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir()),
        );
    }
    let mut entries = BTreeSet::new();
    for root in roots {
        if let Ok(dir) = fs::read_dir(root.join("islander")) {
            entries.extend(
                dir.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_dir()),
            );
        }
    }
    entries
}

/// `major:minor` of the block device holding the host's `/`, as blkio's
/// `throttle.*_bps_device` files print it.
pub fn root_device() -> String {
    device_of(Path::new("/"))
}

/// `major:minor` of the device holding `path`.
pub fn device_of(path: &Path) -> String {
    let dev = fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    format!("{major}:{minor}")
}

/// Target of `/proc/<pid>/ns/<ns>`, e.g. `ipc:[4026531839]`.
pub fn ns_link(pid: &str, ns: &str) -> String {
    let path = format!("/proc/{pid}/ns/{ns}");
    fs::read_link(&path)
        .unwrap_or_else(|e| panic!("readlink {path}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// The host's hostname.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read /proc/sys/kernel/hostname")
        .trim()
        .to_string()
}

/// Host pids listed in a cgroup's `cgroup.procs`.
pub fn cgroup_procs(dir: &Path) -> Vec<i32> {
    let path = dir.join("cgroup.procs");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The pid of `pid` in its innermost pid namespace (`NSpid`'s last field).
pub fn innermost_pid(pid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// The field `name` of `/proc/<pid>/status`, e.g. `CapEff`.
pub fn status_field(pid: &str, name: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {name}"))
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    40 1 0:33 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].mount_point, "/mnt two");
        assert_eq!(mounts[0].fstype, "ext3");
        assert_eq!(mounts[0].source, "/dev/root");
        assert_eq!(mounts[1].super_options, "rw,memory");
    }
}
