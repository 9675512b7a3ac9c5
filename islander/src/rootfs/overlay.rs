//! The copy-on-write layer of one isle: `upper` takes its writes, `work` is
//! overlayfs' scratch space, `merged` is where the isle's root is mounted (in
//! the isle's own mount namespace). The image below is never written.

use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{fs_err, Result};

#[derive(Debug, Clone)]
pub struct Layers {
    pub dir: PathBuf,
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    /// A directory laid over `lower` as a second read-only layer, so that
    /// files can be put into an isle without touching its image
    /// (`islander verify` brings its workload this way).
    pub extra_lower: Option<PathBuf>,
}

impl Layers {
    /// The layer paths of an isle whose layer directory is `dir`.
    pub fn at(dir: &Path, lower: &Path) -> Layers {
        Layers {
            dir: dir.to_path_buf(),
            lower: lower.to_path_buf(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
            extra_lower: None,
        }
    }

    /// The same layers with `extra` (if any) above the lower one.
    pub fn with_extra_lower(self, extra: Option<PathBuf>) -> Layers {
        Layers { extra_lower: extra, ..self }
    }

    /// Creates the directories. `owner` is the host uid/gid that root in the
    /// isle maps to (user namespaces): overlayfs writes the upper layer with
    /// the mounter's credentials, so it must own it.
    pub fn create(&self, owner: Option<(u32, u32)>) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(fs_err("creating", &self.dir))?;
        for d in [&self.upper, &self.work, &self.merged] {
            fs::create_dir(d).map_err(fs_err("creating", d))?;
        }
        // The merged root takes the upper directory's mode and owner, so
        // give it the image root's (usually 0755 root:root).
        let meta = fs::metadata(&self.lower).map_err(fs_err("reading", &self.lower))?;
        fs::set_permissions(&self.upper, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(fs_err("setting the mode of", &self.upper))?;
        let (uid, gid) = match owner {
            Some((u, g)) => (u + meta.uid(), g + meta.gid()),
            None => (meta.uid(), meta.gid()),
        };
        if owner.is_some() {
            let lower_mnt = self.dir.join("lower");
            fs::create_dir(&lower_mnt).map_err(fs_err("creating", &lower_mnt))?;
            for d in [&self.dir, &self.work, &self.merged, &lower_mnt] {
                chown(d, Some(owner.unwrap().0), Some(owner.unwrap().1)).map_err(fs_err("chown", d))?;
            }
        }
        chown(&self.upper, Some(uid), Some(gid)).map_err(fs_err("chown", &self.upper))?;
        Ok(())
    }

    /// The same layers over the idmapped view of the image that `--userns`
    /// isles mount at `<dir>/lower` (see `rootfs::idmap`).
    pub fn mapped_lower(&self) -> Layers {
        Layers { lower: self.dir.join("lower"), ..self.clone() }
    }

    /// The overlay mount's option string.
    pub fn mount_data(&self) -> String {
        // overlayfs lists lower layers top first.
        let lower = match &self.extra_lower {
            Some(extra) => format!("{}:{}", escape(extra), escape(&self.lower)),
            None => escape(&self.lower),
        };
        format!(
            "lowerdir={lower},upperdir={},workdir={}",
            escape(&self.upper),
            escape(&self.work)
        )
    }

    /// Removes the layer with everything the isle wrote. Missing is fine.
    pub fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(fs_err("removing", &self.dir)(e)),
        }
    }
}

/// overlayfs splits its options on ',' and lower layers on ':'; a path
/// containing either must have them escaped with a backslash.
fn escape(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_string_escapes_separators() {
        let l = Layers::at(Path::new("/s/a,b"), Path::new("/img:x"));
        assert_eq!(
            l.mount_data(),
            "lowerdir=/img\\:x,upperdir=/s/a\\,b/upper,workdir=/s/a\\,b/work"
        );
    }

    #[test]
    fn an_extra_lower_layer_goes_above_the_image() {
        let l = Layers::at(Path::new("/s"), Path::new("/img"))
            .with_extra_lower(Some(PathBuf::from("/x:y")));
        assert_eq!(
            l.mount_data(),
            "lowerdir=/x\\:y:/img,upperdir=/s/upper,workdir=/s/work"
        );
        assert_eq!(l.mapped_lower().extra_lower, Some(PathBuf::from("/x:y")));
    }
}
