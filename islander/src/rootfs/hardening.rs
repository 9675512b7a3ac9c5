//! Masked and read-only kernel paths, applied inside the isle after
//! `pivot_root` (the paths are the isle's own `/proc` and `/sys`).

use std::io::ErrorKind;
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::mounts::{bind, remount_readonly};
use super::{Result, RootfsError};

/// Hides each path: `/dev/null` over a file, an empty read-only tmpfs over a
/// directory. Paths the kernel does not have are skipped.
pub fn mask(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(RootfsError::Fs { op: "inspecting", path: path.into(), source: e }),
        };
        if meta.is_dir() {
            mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0,mode=755"))
                .map_err(|source| RootfsError::Mount { what: "masking tmpfs".into(), target: path.into(), source })?;
        } else {
            bind(Path::new("/dev/null"), path, false)?;
        }
    }
    Ok(())
}

/// Makes each path a read-only bind of itself.
pub fn readonly(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        bind(path, path, false)?;
        remount_readonly(path)?;
    }
    Ok(())
}
