//! Staging directories, locks and the careful filesystem helpers the store
//! is built from.
//!
//! Locking protocol: the owner of a `.tmp-*` staging directory holds an
//! exclusive `flock` on it. [`sweep`] removes staging directories whose lock
//! it can take, because their owner has exited. Creating a staging directory
//! (mkdir, then lock) happens under a shared lock on `<store>/.store.lock` and
//! sweeping under an exclusive one, so a sweeper never sees a directory in
//! the gap between its mkdir and its lock.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, RenameFlags};

use super::{ImageError, Result, ROOTFS_DIR};
use crate::cgroups::mountinfo::unescape as unescape_mountinfo;

const STAGING_PREFIX: &str = ".tmp-";
const STORE_LOCK: &str = ".store.lock";

/// A directory being filled before it becomes an image, or an image being
/// deleted. Dropping it without [`commit`](Staging::commit) removes it.
pub(super) struct Staging {
    path: PathBuf,
    // Held for the directory's whole life; see the module docs.
    _lock: Flock<File>,
    committed: bool,
}

pub(super) enum CommitError {
    Exists,
    Io(ImageError),
}

impl Staging {
    /// Creates `<store>/.tmp-<name>-<suffix>/rootfs`.
    pub(super) fn create(store: &Path, name: &str) -> Result<Staging> {
        let _shared = lock_store(store, FlockArg::LockShared)?;
        let path = loop {
            let path = store.join(format!("{STAGING_PREFIX}{name}-{}", unique_suffix()));
            match fs::create_dir(&path) {
                Ok(()) => break path,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ImageError::io("create staging directory", path, e)),
            }
        };
        let locked = open_dir(&path).and_then(|dir| {
            Flock::lock(dir, FlockArg::LockExclusiveNonblock)
                .map_err(|(_, errno)| ImageError::io("lock", &path, errno.into()))
        });
        let lock = match locked {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir(&path);
                return Err(e);
            }
        };
        let stage = Staging {
            path,
            _lock: lock,
            committed: false,
        };
        // An image's root directory is world-readable, as `/` is, whatever
        // the umask; an archive entry for `./` may change it later.
        let rootfs = stage.rootfs();
        fs::create_dir(&rootfs)
            .and_then(|()| fs::set_permissions(&rootfs, fs::Permissions::from_mode(0o755)))
            .map_err(|e| ImageError::io("create", &rootfs, e))?;
        Ok(stage)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn rootfs(&self) -> PathBuf {
        self.path.join(ROOTFS_DIR)
    }

    /// Flushes everything under the staging directory to disk, then renames
    /// it to `target`, failing if `target` exists.
    pub(super) fn commit(mut self, target: &Path) -> std::result::Result<(), CommitError> {
        // One syncfs instead of an fsync per extracted file: after the rename
        // below nothing may be left only in the page cache.
        let dir = open_dir(&self.path).map_err(CommitError::Io)?;
        nix::unistd::syncfs(dir.as_raw_fd())
            .map_err(|e| CommitError::Io(ImageError::io("sync", &self.path, e.into())))?;
        rename_noreplace(&self.path, target).map_err(|e| match e {
            Errno::EEXIST | Errno::ENOTEMPTY => CommitError::Exists,
            e => CommitError::Io(ImageError::io("rename staging directory", &self.path, e.into())),
        })?;
        self.committed = true;
        if let Some(parent) = target.parent() {
            fsync_dir(parent).map_err(CommitError::Io)?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = remove_tree(&self.path) {
                tracing::warn!("could not remove staging directory {}: {e}", self.path.display());
            }
        }
    }
}

/// Moves image `name` to a staging name and deletes it. Returns false if the
/// image vanished first (a concurrent remover).
pub(super) fn retire(store: &Path, name: &str) -> Result<bool> {
    let path = store.join(name);
    let dir = match open_dir(&path) {
        Ok(dir) => dir,
        Err(ImageError::Io { err, .. }) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    // Locking before the rename means the staging name is never seen
    // unlocked, so a sweeper cannot race this removal.
    let lock =
        Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, errno)| ImageError::io("lock", &path, errno.into()))?;
    // The name may now belong to a different directory, or to none.
    let same = match (fs::symlink_metadata(&path), lock.metadata()) {
        (Ok(named), Ok(held)) => named.ino() == held.ino() && named.dev() == held.dev(),
        _ => false,
    };
    if !same {
        return Ok(false);
    }
    let _shared = lock_store(store, FlockArg::LockShared)?;
    let staged = loop {
        let staged = store.join(format!("{STAGING_PREFIX}{name}-rm-{}", unique_suffix()));
        match rename_noreplace(&path, &staged) {
            Ok(()) => break staged,
            Err(Errno::EEXIST) => continue,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(ImageError::io("rename", &path, e.into())),
        }
    };
    drop(_shared);
    fsync_dir(store)?;
    // The image is gone as far as anyone can see. Should deleting the files
    // fail, the staging directory unlocks when `lock` drops and the next
    // sweep retries it.
    remove_tree(&staged).map_err(|e| ImageError::io("remove", &staged, e))?;
    drop(lock);
    Ok(true)
}

/// Removes staging directories left by islanders that exited mid-way.
/// Best effort: a failure here must not fail the caller's own operation.
pub(super) fn sweep(store: &Path) {
    let Ok(_exclusive) = lock_store(store, FlockArg::LockExclusive) else {
        return;
    };
    let Ok(entries) = fs::read_dir(store) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(STAGING_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(dir) = open_dir(&path) else { continue };
        // Locked means its owner is alive and still working on it.
        let Ok(_lock) = Flock::lock(dir, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        tracing::info!("removing leftover staging directory {}", path.display());
        if let Err(e) = remove_tree(&path) {
            tracing::warn!("could not remove leftover staging directory {}: {e}", path.display());
        }
    }
}

/// Takes an exclusive lock on `path` (created if needed), calling `waiting`
/// once if another process holds it. The lock lasts as long as the value.
pub(super) fn lock_file(path: &Path, waiting: impl FnOnce()) -> Result<Flock<File>> {
    match Flock::lock(open_lock(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, Errno::EWOULDBLOCK)) => {
            waiting();
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| ImageError::io("lock", path, errno.into()))
        }
        Err((_, errno)) => Err(ImageError::io("lock", path, errno.into())),
    }
}

fn lock_store(store: &Path, how: FlockArg) -> Result<Flock<File>> {
    let path = store.join(STORE_LOCK);
    Flock::lock(open_lock(&path)?, how).map_err(|(_, errno)| ImageError::io("lock", path, errno.into()))
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| ImageError::io("open lock file", path, e))
}

/// Replaces `path` with `data` so that a reader (or a crash) sees the old
/// content or the new, never a mix: write a sibling, fsync, rename, fsync
/// the directory.
pub(super) fn write_durably(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(ImageError::io("write", path, e));
    }
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Bytes of file and symlink data under `root`, each inode counted once.
pub(super) fn tree_size(root: &Path) -> io::Result<u64> {
    fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>, total: &mut u64) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(&entry.path(), seen, total)?;
            } else if (meta.is_file() || meta.is_symlink())
                && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino())))
            {
                *total += meta.len();
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(root, &mut HashSet::new(), &mut total)?;
    Ok(total)
}

/// Deletes the tree at `path` without ever leaving its filesystem.
///
/// debootstrap mounts /proc and /sys (and in containers binds /dev) inside
/// its target; if it was killed those mounts may still be there, and a plain
/// recursive delete would walk into them and delete the host's files. So
/// first detach every mount under `path`, then refuse to cross into any
/// other device that is still there.
pub(super) fn remove_tree(path: &Path) -> io::Result<()> {
    let root = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !root.is_dir() {
        return fs::remove_file(path);
    }
    unmount_under(path);
    remove_dir_on_device(path, root.dev())
}

fn remove_dir_on_device(dir: &Path, dev: u64) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if meta.dev() != dev {
        return Err(io::Error::other(format!(
            "{} is still a mount point; not removing it",
            dir.display()
        )));
    }
    // An unwritable directory (mode 0555 in an image, say) cannot be emptied
    // by a non-root owner; root is not stopped by modes.
    if meta.permissions().mode() & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let result = if entry.file_type()?.is_dir() {
            remove_dir_on_device(&path, dev)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Lazily unmounts every mount at or below `path`, deepest first.
fn unmount_under(path: &Path) {
    let Ok(canonical) = fs::canonicalize(path) else { return };
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut targets: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|target| target.starts_with(&canonical))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
    for target in targets {
        if let Err(e) = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!("could not unmount {}: {e}", target.display());
        }
    }
}

fn rename_noreplace(from: &Path, to: &Path) -> std::result::Result<(), Errno> {
    match nix::fcntl::renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        // Filesystems without RENAME_NOREPLACE: plain rename(2) still refuses
        // a non-empty target directory, and every image directory has files.
        Err(Errno::EINVAL) => {
            if to.symlink_metadata().is_ok() {
                return Err(Errno::EEXIST);
            }
            fs::rename(from, to).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        }
        other => other,
    }
}

fn open_dir(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| ImageError::io("open", path, e))
}

fn fsync_dir(path: &Path) -> Result<()> {
    open_dir(path)?.sync_all().map_err(|e| ImageError::io("sync", path, e))
}

/// Random, so concurrent islanders do not collide; callers retry on the
/// rare clash anyway.
fn unique_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[cfg(test)]
pub(super) fn staging_dirs(store: &Path) -> Vec<String> {
    fs::read_dir(store)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(STAGING_PREFIX))
                .collect()
        })
        .unwrap_or_default()
}
