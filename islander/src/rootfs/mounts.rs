//! Mounting the spec's file systems inside the new root, and `pivot_root`.

use std::fs;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, pivot_root};
use oci_spec::runtime::Mount;

use super::overlay::Layers;
use super::{fs_err, Result, RootfsError};

fn mount_err(what: impl Into<String>, target: &Path) -> impl FnOnce(nix::Error) -> RootfsError {
    let what = what.into();
    let target = target.to_path_buf();
    move |source| RootfsError::Mount { what, target, source }
}

/// Cuts the isle's mount namespace off from the host's, so that no mount
/// made here propagates back (the host's `/` is usually shared).
pub fn make_private() -> Result<()> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(mount_err("private propagation", Path::new("/")))
}

pub fn mount_overlay(layers: &Layers) -> Result<()> {
    let data = layers.mount_data();
    mount(Some("overlay"), &layers.merged, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .map_err(mount_err(format!("overlay ({data})"), &layers.merged))
}

/// `root` joined with an absolute in-isle path, refusing `..` so that no
/// destination can climb out of the root.
pub fn in_root(root: &Path, dest: &Path) -> Result<PathBuf> {
    if !dest.is_absolute() {
        return Err(RootfsError::BadDestination(dest.to_path_buf()));
    }
    let mut out = root.to_path_buf();
    for c in dest.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(RootfsError::BadDestination(dest.to_path_buf()))
            }
        }
    }
    Ok(out)
}

/// Splits OCI mount options into mount flags and the file system's data.
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Mounts every spec mount under `root`, creating mount points as needed.
pub fn mount_all(root: &Path, mounts: &[Mount]) -> Result<()> {
    for m in mounts {
        let target = in_root(root, m.destination())?;
        fs::create_dir_all(&target).map_err(fs_err("creating mount point", &target))?;
        let (flags, data) = parse_options(m.options().as_deref().unwrap_or(&[]));
        let typ = m.typ().as_deref();
        let source = m.source().as_deref().map(Path::as_os_str);
        let data = (!data.is_empty()).then_some(data);
        mount(source, &target, typ, flags, data.as_deref())
            .map_err(mount_err(typ.unwrap_or("bind").to_string(), &target))?;
    }
    Ok(())
}

/// Bind-mounts `source` on `target`, read-only when asked. A read-only bind
/// needs a second, remounting call; it keeps the flags the kernel locked on
/// the mount (in a user namespace it refuses to drop them).
pub fn bind(source: &Path, target: &Path, readonly: bool) -> Result<()> {
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(mount_err(format!("bind of {}", source.display()), target))?;
    if readonly {
        remount_readonly(target)?;
    }
    Ok(())
}

pub fn remount_readonly(target: &Path) -> Result<()> {
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if let Ok(st) = statvfs(target) {
        let f = st.flags();
        for (fs_flag, ms_flag) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ] {
            if f.contains(fs_flag) {
                flags |= ms_flag;
            }
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(mount_err("read-only remount", target))
}

/// Makes `new_root` the root of this mount namespace and drops the old root
/// entirely. Stacking the old root under the new one and detaching it avoids
/// needing a `.pivot` directory in the image.
pub fn pivot(new_root: &Path) -> Result<()> {
    chdir(new_root).map_err(|source| RootfsError::Sys { op: "chdir to the new root", source })?;
    pivot_root(".", ".").map_err(|source| RootfsError::Sys { op: "pivot_root", source })?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|source| RootfsError::Sys { op: "detaching the old root", source })?;
    chdir("/").map_err(|source| RootfsError::Sys { op: "chdir /", source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_stay_inside_the_root() {
        assert_eq!(in_root(Path::new("/r"), Path::new("/dev/pts")).unwrap(), Path::new("/r/dev/pts"));
        assert!(in_root(Path::new("/r"), Path::new("/../etc")).is_err());
        assert!(in_root(Path::new("/r"), Path::new("dev")).is_err());
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["nosuid", "ro", "mode=755", "size=1k"].iter().map(|s| s.to_string()).collect();
        let (flags, data) = parse_options(&opts);
        assert_eq!(flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY);
        assert_eq!(data, "mode=755,size=1k");
    }
}
