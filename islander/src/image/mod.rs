//! The image store: named root filesystems that isles start from.
//!
//! Each image is a directory `<images>/<name>/` holding the unpacked tree in
//! `rootfs/` and its metadata in `image.json`. Isles never write into an
//! image; they get an overlay on top of it (see `crate::rootfs`).
//!
//! Every change is staged in a `.tmp-<name>-<suffix>` directory inside the
//! store and made visible with one `rename(2)`, so a crash leaves either the
//! whole image or no image. A staging directory is `flock`ed by its owner for
//! as long as it is in use; any later store operation that finds one unlocked
//! knows its owner died and removes it (see [`staging`]).

mod debootstrap;
mod extract;
mod staging;
#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::paths::StateRoot;
use staging::Staging;

/// The image an isle gets when it names none.
pub const DEFAULT_IMAGE: &str = "default";

/// The Debian release the default image is built from.
pub const DEFAULT_SUITE: &str = "bookworm";

/// Environment variable: a rootfs tarball to import as `default` instead of
/// running debootstrap (lets CI and tests pre-seed the image).
pub const ENV_DEFAULT_TAR: &str = "ISLANDER_DEFAULT_IMAGE_TAR";

/// Environment variable: the Debian mirror debootstrap downloads from.
pub const ENV_DEBIAN_MIRROR: &str = "ISLANDER_DEBIAN_MIRROR";

const MAX_NAME_LEN: usize = 128;
const METADATA_FILE: &str = "image.json";
const ROOTFS_DIR: &str = "rootfs";

#[derive(Debug, Error)]
pub enum ImageError {
    #[error(
        "invalid image name '{0}': use lowercase letters, digits, '.', '_' and '-', \
         starting with a letter or digit, at most 128 characters"
    )]
    InvalidName(String),

    #[error(
        "no image named '{name}' (available: {available}; \
         import one with: islander image import FILE NAME)"
    )]
    NotFound { name: String, available: String },

    #[error("image '{0}' already exists; remove it first with: islander image rm {0}")]
    AlreadyExists(String),

    #[error("cannot read image file '{}': {err}", path.display())]
    FileUnreadable { path: PathBuf, err: io::Error },

    #[error(
        "'{}' is not a tar or tar.gz archive ({reason}); \
         give a root filesystem tarball such as `docker export` writes",
        path.display()
    )]
    NotATar { path: PathBuf, reason: String },

    #[error("'{}' is an empty tar archive; a root filesystem tarball holds at least one entry", path.display())]
    EmptyArchive { path: PathBuf },

    #[error("cannot extract '{}': {detail}", path.display())]
    Extract { path: PathBuf, detail: String },

    #[error("image '{name}' is damaged ({detail}); remove it with: islander image rm {name}")]
    Damaged { name: String, detail: String },

    #[error("cannot {action} '{}': {err}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        err: io::Error,
    },

    #[error("debootstrap is not installed; run: cargo xtask setup")]
    DebootstrapMissing,

    #[error(
        "invalid {ENV_DEBIAN_MIRROR} '{0}': use an http://, https://, ftp:// or file:// URL \
         of a Debian archive, e.g. http://deb.debian.org/debian"
    )]
    InvalidMirror(String),

    #[error("debootstrap of Debian {DEFAULT_SUITE} from {mirror} failed ({status}): {last_line}")]
    Debootstrap {
        mirror: String,
        status: String,
        last_line: String,
    },

    #[error(
        "the image built by debootstrap has no {0}; \
         check that {ENV_DEBIAN_MIRROR} serves a complete Debian {DEFAULT_SUITE}"
    )]
    DefaultIncomplete(&'static str),
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            action,
            path: path.into(),
            err: source,
        }
    }
}

/// What `image.json` records about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    /// When the image was added to the store, in seconds since the Unix epoch.
    pub created: u64,
    /// Bytes of file data in the rootfs, each hard-linked inode counted once.
    pub size_bytes: u64,
    /// Where the tree came from: the imported file, or how it was built.
    pub source: String,
}

/// Checks an image name against the store's rules. Names become directory
/// names, so the rules keep out `/`, `..` and the store's own dot-files.
pub fn validate_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if first_ok && rest_ok && bytes.len() <= MAX_NAME_LEN {
        Ok(())
    } else {
        Err(ImageError::InvalidName(name.to_string()))
    }
}

/// The images of one [`StateRoot`].
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    pub fn new(root: &StateRoot) -> ImageStore {
        ImageStore { dir: root.images() }
    }

    /// The store directory, `<lib>/images`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unpacks a root filesystem tarball (plain or gzip-compressed, as
    /// `docker export` writes) as image `name`.
    pub fn import(&self, file: &Path, name: &str) -> Result<ImageInfo> {
        validate_name(name)?;
        // Open before touching the store so a bad file changes nothing.
        let archive = extract::open_archive(file)?;
        if self.image_dir(name).symlink_metadata().is_ok() {
            return Err(ImageError::AlreadyExists(name.to_string()));
        }
        self.create_dir()?;
        staging::sweep(&self.dir);

        let stage = Staging::create(&self.dir, name)?;
        extract::unpack(archive, file, &stage.rootfs())?;
        let source = fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        self.commit(stage, name, source.display().to_string())
    }

    /// All images, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let mut images: Vec<ImageInfo> = self
            .names()?
            .into_iter()
            .filter_map(|name| match self.info(&name) {
                Ok(info) => Some(info),
                // Removed between read_dir and here.
                Err(ImageError::NotFound { .. }) => None,
                Err(e) => {
                    tracing::warn!("leaving image '{name}' out of the list: {e}");
                    None
                }
            })
            .collect();
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// The metadata of image `name`.
    pub fn info(&self, name: &str) -> Result<ImageInfo> {
        validate_name(name)?;
        let path = self.image_dir(name).join(METADATA_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(if self.image_dir(name).is_dir() {
                    ImageError::Damaged {
                        name: name.to_string(),
                        detail: format!("no {METADATA_FILE}"),
                    }
                } else {
                    self.not_found(name)
                });
            }
            Err(e) => return Err(ImageError::io("read", path, e)),
        };
        serde_json::from_str(&text).map_err(|e| ImageError::Damaged {
            name: name.to_string(),
            detail: format!("{}: {e}", path.display()),
        })
    }

    /// Removes image `name`. The image first moves to a staging name, so a
    /// crash halfway through deleting leaves no partial image behind.
    pub fn remove(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let dir = self.image_dir(name);
        if !dir.is_dir() {
            return Err(self.not_found(name));
        }
        staging::sweep(&self.dir);
        match staging::retire(&self.dir, name)? {
            true => Ok(()),
            // Another remover got there first.
            false => Err(self.not_found(name)),
        }
    }

    /// The root filesystem of image `name`.
    pub fn rootfs(&self, name: &str) -> Result<PathBuf> {
        self.info(name)?;
        Ok(self.image_dir(name).join(ROOTFS_DIR))
    }

    /// The root filesystem of the `default` image, building it first when it
    /// is missing; progress goes to stderr.
    pub fn ensure_default(&self) -> Result<PathBuf> {
        self.ensure_default_with(&mut |line| eprintln!("islander: {line}"))
    }

    /// [`ensure_default`](Self::ensure_default) with progress lines handed to
    /// `progress` instead of stderr.
    pub fn ensure_default_with(&self, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
        if let Ok(rootfs) = self.rootfs(DEFAULT_IMAGE) {
            return Ok(rootfs);
        }
        self.create_dir()?;
        // Two first runs at once must not both spend minutes building it.
        let _lock = staging::lock_file(&self.dir.join(".default.lock"), || {
            progress(&format!(
                "waiting for another islander to finish building image '{DEFAULT_IMAGE}'"
            ))
        })?;
        if let Ok(rootfs) = self.rootfs(DEFAULT_IMAGE) {
            return Ok(rootfs);
        }
        staging::sweep(&self.dir);

        let started = Instant::now();
        let built = match std::env::var_os(ENV_DEFAULT_TAR).filter(|v| !v.is_empty()) {
            Some(tar) => {
                let tar = PathBuf::from(tar);
                progress(&format!(
                    "importing image '{DEFAULT_IMAGE}' from {} (set by {ENV_DEFAULT_TAR})",
                    tar.display()
                ));
                self.import(&tar, DEFAULT_IMAGE)
            }
            None => self.build_default(progress),
        };
        let info = match built {
            Ok(info) => info,
            // Someone ran `image import ... default` meanwhile; theirs wins.
            Err(ImageError::AlreadyExists(_)) => return self.rootfs(DEFAULT_IMAGE),
            Err(e) => return Err(e),
        };
        progress(&format!(
            "image '{DEFAULT_IMAGE}' ready ({:.0} MB) in {:.0?}",
            info.size_bytes as f64 / 1e6,
            started.elapsed()
        ));
        self.rootfs(DEFAULT_IMAGE)
    }

    fn build_default(&self, progress: &mut dyn FnMut(&str)) -> Result<ImageInfo> {
        let tool = debootstrap::find().ok_or(ImageError::DebootstrapMissing)?;
        let mirror = debootstrap::pick_mirror()?;
        progress(&format!(
            "building image '{DEFAULT_IMAGE}': debootstrap --variant=minbase {DEFAULT_SUITE} from {mirror} \
             (takes a few minutes, once)"
        ));
        let stage = Staging::create(&self.dir, DEFAULT_IMAGE)?;
        let rootfs = stage.rootfs();
        debootstrap::run(&tool, &rootfs, &mirror, &mut |line| {
            progress(&format!("building image '{DEFAULT_IMAGE}': {line}"))
        })?;
        for (path, what) in [("bin/bash", "/bin/bash"), ("bin/ls", "coreutils (/bin/ls)")] {
            if !rootfs.join(path).exists() {
                return Err(ImageError::DefaultIncomplete(what));
            }
        }
        debootstrap::clean_apt_caches(&rootfs)?;
        self.commit(
            stage,
            DEFAULT_IMAGE,
            format!("debootstrap --variant=minbase {DEFAULT_SUITE} {mirror}"),
        )
    }

    /// Writes the metadata of a fully unpacked staging directory and moves
    /// it to its final name.
    fn commit(&self, stage: Staging, name: &str, source: String) -> Result<ImageInfo> {
        let rootfs = stage.rootfs();
        let info = ImageInfo {
            name: name.to_string(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            size_bytes: staging::tree_size(&rootfs).map_err(|e| ImageError::io("measure", &rootfs, e))?,
            source,
        };
        let json = serde_json::to_vec_pretty(&info).expect("ImageInfo always serializes");
        staging::write_durably(&stage.path().join(METADATA_FILE), &json)?;
        stage.commit(&self.image_dir(name)).map_err(|e| match e {
            staging::CommitError::Exists => ImageError::AlreadyExists(name.to_string()),
            staging::CommitError::Io(e) => e,
        })?;
        Ok(info)
    }

    fn image_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn create_dir(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| ImageError::io("create image store", &self.dir, e))
    }

    /// Names of the image directories, unsorted; staging and lock files are
    /// skipped because their names are not valid image names.
    fn names(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io("read image store", &self.dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("read image store", &self.dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if validate_name(&name).is_ok() && entry.file_type().is_ok_and(|t| t.is_dir()) {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn not_found(&self, name: &str) -> ImageError {
        let mut names = self.names().unwrap_or_default();
        names.sort();
        let available = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        ImageError::NotFound {
            name: name.to_string(),
            available,
        }
    }
}
