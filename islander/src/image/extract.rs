//! Reading root filesystem tarballs: recognising them and unpacking them
//! with everything a root filesystem needs kept intact.
//!
//! The tar crate unpacks files, directories, symlinks and hard links with
//! their modes, owners, mtimes and (for files) xattrs. It writes device nodes
//! and FIFOs out as plain files, though, so those are made here with mknod,
//! as are xattrs on directories and device nodes.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, BufReader, Cursor, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::sys::stat::{self, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use tar::EntryType;

use super::{ImageError, Result};

const BLOCK: usize = 512;
const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// An archive stream whose first header has been checked.
pub(super) struct Archive {
    stream: Box<dyn Read>,
}

/// Opens `file` and checks that it holds a tar archive, gzip-compressed or
/// not (told apart by content, not by name).
pub(super) fn open_archive(file: &Path) -> Result<Archive> {
    let unreadable = |err| ImageError::FileUnreadable {
        path: file.to_path_buf(),
        err,
    };
    let not_tar = |reason: &str| ImageError::NotATar {
        path: file.to_path_buf(),
        reason: reason.to_string(),
    };

    let meta = fs::metadata(file).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(not_tar("it is a directory"));
    }
    let mut raw = File::open(file).map_err(unreadable)?;
    let mut magic = [0u8; 6];
    let got = read_full(&mut raw, &mut magic).map_err(unreadable)?;
    let magic = &magic[..got];
    if let Some(kind) = other_compression(magic) {
        return Err(not_tar(&format!(
            "it is {kind}-compressed; only plain and gzip-compressed tar are read"
        )));
    }
    let gzip = magic.starts_with(&[0x1f, 0x8b]);
    // Chain the sniffed bytes back on rather than seeking, so pipes work too.
    let raw = BufReader::new(Cursor::new(magic.to_vec()).chain(raw));
    let mut stream: Box<dyn Read> = if gzip {
        Box::new(MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };

    let mut header = [0u8; BLOCK];
    let got = match read_full(&mut stream, &mut header) {
        Ok(got) => got,
        Err(e) if gzip => return Err(not_tar(&format!("its gzip data is corrupt: {e}"))),
        Err(e) => return Err(unreadable(e)),
    };
    let inside = if gzip { " after gunzip" } else { "" };
    if got == 0 {
        return Err(not_tar(&format!("it is empty{inside}")));
    }
    if got < BLOCK {
        return Err(not_tar(&format!(
            "it is {got} bytes{inside}, shorter than one tar header"
        )));
    }
    if header.iter().all(|&b| b == 0) {
        return Err(ImageError::EmptyArchive {
            path: file.to_path_buf(),
        });
    }
    if !checksum_ok(&header) {
        return Err(not_tar(&format!("no tar header at its start{inside}")));
    }
    Ok(Archive {
        stream: Box::new(Cursor::new(header.to_vec()).chain(stream)),
    })
}

/// Unpacks `archive` (read from `file`, named in errors) into `dst`, which
/// must exist.
pub(super) fn unpack(archive: Archive, file: &Path, dst: &Path) -> Result<()> {
    let fail = |detail: String| ImageError::Extract {
        path: file.to_path_buf(),
        detail,
    };
    // Ownership needs CAP_CHOWN; an unprivileged import (tests, mostly) gets
    // files owned by the caller rather than failing.
    let as_root = nix::unistd::geteuid().is_root();
    let dst = fs::canonicalize(dst).map_err(|e| ImageError::io("open", dst, e))?;

    let mut tar = tar::Archive::new(archive.stream);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(as_root);
    tar.set_preserve_mtime(true);
    tar.set_unpack_xattrs(true);
    tar.set_overwrite(true);

    let mut count = 0usize;
    let mut directories = Vec::new();
    let entries = tar.entries().map_err(|e| fail(describe(&e, &dst)))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| fail(format!("archive corrupt after {count} entries: {}", describe(&e, &dst))))?;
        let rel = relative_path(&entry).map_err(&fail)?;
        let at = |e: io::Error| fail(format!("entry '{}': {}", rel.display(), describe(&e, &dst)));
        match entry.header().entry_type() {
            EntryType::XGlobalHeader => continue,
            // Last, parents after children, so a read-only directory cannot
            // block its own contents (as the tar crate's own unpack does).
            EntryType::Directory => directories.push((rel, entry)),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                make_special(&mut entry, &dst, &rel, as_root).map_err(at)?;
            }
            _ => {
                entry.unpack_in(&dst).map_err(at)?;
            }
        }
        count += 1;
    }
    if count == 0 {
        return Err(ImageError::EmptyArchive {
            path: file.to_path_buf(),
        });
    }

    directories.sort_by(|(a, _), (b, _)| b.as_os_str().as_bytes().cmp(a.as_os_str().as_bytes()));
    for (rel, mut entry) in directories {
        let at = |e: io::Error| fail(format!("entry '{}': {}", rel.display(), describe(&e, &dst)));
        if rel.as_os_str().is_empty() {
            // `./` itself: the tar crate skips it, but its mode and owner
            // are those of the isle's `/`.
            set_attributes(&mut entry, &dst, as_root, false).map_err(at)?;
        } else {
            entry.unpack_in(&dst).map_err(at)?;
            set_xattrs(&mut entry, &dst.join(&rel)).map_err(at)?;
        }
    }
    Ok(())
}

/// The entry's path inside the image, with leading `/` and `.` dropped;
/// empty for the root itself. `..` is refused outright (the tar crate would
/// skip such an entry silently).
fn relative_path<R: Read>(entry: &tar::Entry<'_, R>) -> std::result::Result<PathBuf, String> {
    let path = entry
        .path()
        .map_err(|e| format!("entry '{}': unreadable path: {e}", entry.path_bytes().escape_ascii()))?;
    let mut rel = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(part) => rel.push(part),
            Component::ParentDir => {
                return Err(format!(
                    "entry '{}' reaches outside the image through '..'",
                    path.display()
                ))
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(rel)
}

/// Creates a device node or FIFO, replacing whatever a previous entry left
/// at that path.
fn make_special<R: Read>(entry: &mut tar::Entry<'_, R>, dst: &Path, rel: &Path, as_root: bool) -> io::Result<()> {
    let Some(name) = rel.file_name() else {
        return Err(io::Error::other("a device node cannot be the image root"));
    };
    let parent = dst.join(rel.parent().unwrap_or(Path::new("")));
    fs::create_dir_all(&parent)?;
    // A symlinked directory earlier in the archive must not lead out of it.
    let parent = fs::canonicalize(&parent)?;
    if !parent.starts_with(dst) {
        return Err(io::Error::other(
            "its directory is a symlink that leads outside the image",
        ));
    }
    let target = parent.join(name);
    match fs::symlink_metadata(&target) {
        Ok(meta) if meta.is_dir() => fs::remove_dir(&target)?,
        Ok(_) => fs::remove_file(&target)?,
        Err(_) => {}
    }

    let header = entry.header();
    let (kind, dev) = match header.entry_type() {
        EntryType::Fifo => (SFlag::S_IFIFO, 0),
        kind => {
            let (Some(major), Some(minor)) = (header.device_major()?, header.device_minor()?) else {
                return Err(io::Error::other("device entry without device numbers"));
            };
            let flag = if kind == EntryType::Char {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            (flag, stat::makedev(major.into(), minor.into()))
        }
    };
    stat::mknod(&target, kind, Mode::empty(), dev).map_err(|e| {
        let hint = if e == nix::errno::Errno::EPERM {
            " (device nodes need root)"
        } else {
            ""
        };
        io::Error::other(format!("mknod: {e}{hint}"))
    })?;
    set_attributes(entry, &target, as_root, true)
}

/// Owner, mode, xattrs and (optionally) mtime from the entry's header onto
/// `path`, which is not a symlink.
fn set_attributes<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path, as_root: bool, mtime: bool) -> io::Result<()> {
    let header = entry.header();
    // Owner before mode: chown clears setuid and setgid bits.
    if as_root {
        let (uid, gid) = (header.uid()?, header.gid()?);
        let (uid, gid) = (to_id(uid)?, to_id(gid)?);
        nix::unistd::fchownat(
            None,
            path,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
    }
    let mode = Mode::from_bits_truncate((header.mode()? & 0o7777) as libc::mode_t);
    stat::fchmodat(None, path, mode, FchmodatFlags::FollowSymlink)?;
    if mtime {
        if let Ok(secs) = header.mtime() {
            let time = TimeSpec::new(secs as libc::time_t, 0);
            stat::utimensat(None, path, &time, &time, UtimensatFlags::NoFollowSymlink)?;
        }
    }
    set_xattrs(entry, path)
}

fn to_id(id: u64) -> io::Result<u32> {
    u32::try_from(id).map_err(|_| io::Error::other(format!("owner id {id} does not fit in 32 bits")))
}

/// Applies the entry's `SCHILY.xattr.*` PAX records to `path`.
fn set_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) -> io::Result<()> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(());
    };
    let cpath = CString::new(path.as_os_str().as_bytes())?;
    for ext in extensions {
        let ext = ext?;
        let Some(key) = ext.key_bytes().strip_prefix(XATTR_PREFIX) else {
            continue;
        };
        let ckey = CString::new(key)?;
        let value = ext.value_bytes();
        // SAFETY: both strings are NUL-terminated and outlive the call; the
        // value pointer and length describe one live slice.
        let rc = unsafe { libc::lsetxattr(cpath.as_ptr(), ckey.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::other(format!("xattr {}: {e}", key.escape_ascii())));
        }
    }
    Ok(())
}

/// An error and its causes, with the staging path stripped so paths read
/// as they will inside the isle.
fn describe(e: &io::Error, dst: &Path) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text.replace(dst.to_string_lossy().as_ref(), "")
}

/// Names the compression of formats that are not read, to say so plainly
/// instead of "not a tar".
fn other_compression(magic: &[u8]) -> Option<&'static str> {
    if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if magic.starts_with(b"BZh") {
        Some("bzip2")
    } else {
        None
    }
}

/// Verifies a header block's checksum: the byte sum with the checksum field
/// itself counted as spaces. Some old tars summed signed bytes; accept both.
fn checksum_ok(header: &[u8; BLOCK]) -> bool {
    let field = &header[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    let Ok(text) = std::str::from_utf8(&digits) else {
        return false;
    };
    let Ok(stored) = u32::from_str_radix(text, 8) else {
        return false;
    };
    let blanked = |i: usize, b: u8| if (148..156).contains(&i) { b' ' } else { b };
    let unsigned: u32 = header.iter().enumerate().map(|(i, &b)| blanked(i, b) as u32).sum();
    let signed: i32 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| blanked(i, b) as i8 as i32)
        .sum();
    stored == unsigned || i64::from(stored) == i64::from(signed)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
