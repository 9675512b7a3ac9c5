//! A busybox rootfs (and two tarballs of it), built once per machine.
//!
//! Built from Debian's static busybox, so it needs nothing from the network
//! and starts in milliseconds. The build goes to a temporary directory that
//! is renamed into place, under an exclusive flock, so parallel test threads
//! and processes never see half a rootfs; a stamp naming the busybox binary
//! tells a stale cache from a good one.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::lock::FileLock;

const BUSYBOX: &str = "/bin/busybox";
/// Bumped whenever the layout built below changes, to invalidate old caches.
const LAYOUT_VERSION: u32 = 1;

/// `/var/tmp/islander-tests`: outlives reboots of tmpfs /tmp, and lives on
/// the same disk as the isles' layers.
pub fn cache_dir() -> PathBuf {
    PathBuf::from("/var/tmp/islander-tests")
}

/// The busybox rootfs: `bin/busybox`, a symlink per applet, `/etc/passwd`
/// with root, and empty `proc sys dev tmp root mnt` for the engine to use.
/// Tests must treat it as read-only: it is the lower layer of their isles.
pub fn busybox_rootfs() -> PathBuf {
    cached().join("busybox-rootfs")
}

/// `busybox-rootfs` as a plain tar whose members are named `./bin/...`.
pub fn busybox_tar() -> PathBuf {
    cached().join("busybox.tar")
}

/// The same as a gzip-compressed tar.
pub fn busybox_tar_gz() -> PathBuf {
    cached().join("busybox.tar.gz")
}

/// Builds the cache if needed (once per process) and returns its directory.
fn cached() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let base = cache_dir();
        let _lock = FileLock::exclusive(&base.join("busybox.lock"));
        let stamp_path = base.join("busybox.stamp");
        let want = stamp();
        let have = fs::read_to_string(&stamp_path).unwrap_or_default();
        if have == want && base.join("busybox-rootfs/bin/busybox").is_file() {
            return base;
        }
        build_all(&base);
        let tmp_stamp = base.join("busybox.stamp.tmp");
        fs::write(&tmp_stamp, &want).unwrap_or_else(|e| panic!("cannot write stamp: {e}"));
        fs::rename(&tmp_stamp, &stamp_path).unwrap_or_else(|e| panic!("cannot rename stamp: {e}"));
        base
    })
    .clone()
}

fn stamp() -> String {
    let meta = fs::metadata(BUSYBOX).unwrap_or_else(|e| {
        panic!(
            "{BUSYBOX}: {e}; the tests build their rootfs from Debian's busybox-static \
             (apt-get install busybox-static)"
        )
    });
    format!(
        "layout {LAYOUT_VERSION}, {BUSYBOX} size {} mtime {}\n",
        meta.len(),
        meta.mtime()
    )
}

/// Builds rootfs and tarballs next to their final names, then swaps them in.
/// Called with the build lock held, so leftovers of an earlier crashed build
/// cannot belong to anyone and are removed first.
fn build_all(base: &Path) {
    fs::create_dir_all(base).unwrap_or_else(|e| panic!("cannot create {}: {e}", base.display()));
    for entry in fs::read_dir(base).unwrap_or_else(|e| panic!("{}: {e}", base.display())) {
        let path = entry.expect("readdir").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.contains(".building-") || name.contains(".stale-") {
            remove_any(&path);
        }
    }

    let tag = format!("{}-{}", std::process::id(), crate::harness::random_hex(4));
    let tmp_rootfs = base.join(format!("busybox-rootfs.building-{tag}"));
    build_rootfs(&tmp_rootfs);
    let tmp_tar = base.join(format!("busybox.tar.building-{tag}"));
    let tmp_tgz = base.join(format!("busybox.tar.gz.building-{tag}"));
    make_tar(&tmp_rootfs, &tmp_tar, false);
    make_tar(&tmp_rootfs, &tmp_tgz, true);

    let final_rootfs = base.join("busybox-rootfs");
    if final_rootfs.exists() {
        // A directory cannot be renamed over a non-empty one; move the old one
        // aside first, so the new one appears in a single rename.
        let stale = base.join(format!("busybox-rootfs.stale-{tag}"));
        fs::rename(&final_rootfs, &stale).unwrap_or_else(|e| panic!("cannot move old rootfs: {e}"));
        remove_any(&stale);
    }
    for (from, to) in [
        (tmp_rootfs, final_rootfs),
        (tmp_tar, base.join("busybox.tar")),
        (tmp_tgz, base.join("busybox.tar.gz")),
    ] {
        fs::rename(&from, &to).unwrap_or_else(|e| {
            panic!("cannot rename {} to {}: {e}", from.display(), to.display())
        });
    }
}

fn remove_any(path: &Path) {
    let result = if path.is_dir() && !path.is_symlink() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.unwrap_or_else(|e| panic!("cannot remove {}: {e}", path.display()));
}

fn build_rootfs(root: &Path) {
    let mkdir = |rel: &str, mode: u32| {
        let dir = root.join(rel);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // Explicit modes: the test runner's umask must not shape the rootfs.
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    };
    mkdir("", 0o755);
    for dir in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "etc", "mnt", "var",
    ] {
        mkdir(dir, 0o755);
    }
    mkdir("root", 0o700);
    mkdir("tmp", 0o1777);

    let bin = root.join("bin/busybox");
    fs::copy(BUSYBOX, &bin).unwrap_or_else(|e| panic!("cannot copy {BUSYBOX}: {e}"));
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod busybox");

    // `--list-full` names each applet with its usual directory, the same
    // layout `busybox --install -s` makes.
    let list = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BUSYBOX} --list-full: {e}"));
    assert!(
        list.status.success(),
        "{BUSYBOX} --list-full failed: {list:?}"
    );
    let list = String::from_utf8(list.stdout).expect("applet list is not UTF-8");
    for rel in list.lines().map(str::trim).filter(|l| l.contains('/')) {
        let link = root.join(rel);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(dir) = link.parent() {
            fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        symlink("/bin/busybox", &link)
            .unwrap_or_else(|e| panic!("cannot link {}: {e}", link.display()));
    }
    for applet in [
        "sh", "true", "cat", "sleep", "ps", "ip", "dd", "mount", "hostname", "id",
    ] {
        let found = ["bin", "sbin", "usr/bin", "usr/sbin"]
            .iter()
            .any(|d| root.join(d).join(applet).symlink_metadata().is_ok());
        assert!(
            found,
            "{BUSYBOX} lacks the applet '{applet}' the tests need"
        );
    }

    let etc = |name: &str, text: &str| {
        let path = root.join("etc").join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod etc file");
    };
    etc(
        "passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    );
    etc("group", "root:x:0:\nnogroup:x:65534:\n");
}

fn make_tar(dir: &Path, out: &Path, gzip: bool) {
    let mut cmd = Command::new("tar");
    cmd.arg("--numeric-owner").arg("-C").arg(dir);
    cmd.arg(if gzip { "-czf" } else { "-cf" }).arg(out).arg(".");
    let result = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run tar: {e}"));
    assert!(
        result.status.success(),
        "tar of {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&result.stderr)
    );
}
