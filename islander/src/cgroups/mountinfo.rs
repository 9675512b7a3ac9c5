//! Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo.
//!
//! Hosts differ: controllers may share a hierarchy (`cpu,cpuacct`), live at
//! unusual paths, or be missing. Reading mountinfo instead of assuming
//! `/sys/fs/cgroup/<controller>` copes with all of them.

use std::path::PathBuf;

pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One cgroup v1 hierarchy: where it is mounted and which controllers
/// (plus any `name=` tag) it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    pub v1: Vec<Hierarchy>,
    /// The cgroup2 mount, if any.
    pub unified: Option<PathBuf>,
}

impl Mounts {
    pub fn v1_with(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1.iter().find(|h| h.has(controller))
    }
}

/// Mount options of a v1 cgroup mount that are not controller names.
fn is_controller(option: &str) -> bool {
    !matches!(
        option,
        "rw" | "ro" | "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode" | "favordynmods"
    ) && !option.starts_with("release_agent=")
        && !option.starts_with("name=")
}

/// Parses mountinfo text. Only mounts of a hierarchy's root count: a bind
/// mount of a subtree (as inside another container) would put our
/// directories somewhere the kernel does not treat as that path.
pub fn parse(text: &str) -> Mounts {
    let mut mounts = Mounts::default();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount_point), Some(fstype)) =
            (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        if *root != "/" {
            continue;
        }
        let mount = PathBuf::from(unescape(mount_point));
        match *fstype {
            "cgroup2" if mounts.unified.is_none() => mounts.unified = Some(mount),
            "cgroup" => {
                let options = right.get(2).copied().unwrap_or("");
                let controllers: Vec<String> = options
                    .split(',')
                    .filter(|o| is_controller(o))
                    .map(str::to_string)
                    .collect();
                // The same hierarchy mounted twice: the first mount serves.
                let seen = mounts.v1.iter().any(|h| h.controllers == controllers);
                if !controllers.is_empty() && !seen {
                    mounts.v1.push(Hierarchy { mount, controllers });
                }
            }
            _ => {}
        }
    }
    mounts
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal;
/// every reader of mountinfo in islander undoes it here.
pub(crate) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of the machine islander is developed on.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn separate_hierarchies() {
        let m = parse(HYBRID);
        assert_eq!(m.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            m.v1_with("cpu").unwrap().mount,
            PathBuf::from("/sys/fs/cgroup/cpu")
        );
        assert_eq!(
            m.v1_with("cpuacct").unwrap().mount,
            PathBuf::from("/sys/fs/cgroup/cpuacct")
        );
        assert!(m.v1_with("net_cls").is_none());
        // name=systemd has no controller, so it is not a hierarchy we use.
        assert_eq!(m.v1.len(), 3);
    }

    #[test]
    fn co_mounted_and_escaped() {
        let text = "\
25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
26 20 0:23 / /sys/fs/cgroup/net_cls,net_prio rw shared:10 master:3 - cgroup cgroup rw,net_cls,net_prio,release_agent=/x
27 20 0:24 / /mnt/my\\040cgroups rw - cgroup cgroup rw,xattr,memory
28 20 0:24 / /mnt/again rw - cgroup cgroup rw,xattr,memory
29 20 0:25 /docker/abc /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio
30 20 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate
";
        let m = parse(text);
        let cpu = m.v1_with("cpu").unwrap();
        assert_eq!(cpu, m.v1_with("cpuacct").unwrap());
        assert_eq!(cpu.mount, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(
            m.v1_with("net_prio").unwrap().controllers,
            ["net_cls", "net_prio"]
        );
        assert_eq!(
            m.v1_with("memory").unwrap().mount,
            PathBuf::from("/mnt/my cgroups")
        );
        assert!(
            m.v1_with("blkio").is_none(),
            "a subtree bind mount is not the hierarchy root"
        );
        assert_eq!(m.unified, Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(m.v1.len(), 3);
    }

    #[test]
    fn unescape_octal() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("\\999"), "\\999");
    }
}
