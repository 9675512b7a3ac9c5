use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use flate2::write::GzEncoder;
use tar::{EntryType, Header};

use super::staging::staging_dirs;
use super::*;

/// A private state root under the system temp dir, removed on drop.
struct TestRoot {
    dir: PathBuf,
    root: StateRoot,
}

impl TestRoot {
    fn new() -> TestRoot {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "islander-image-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create test dir");
        let root = StateRoot::under(&dir);
        TestRoot { dir, root }
    }

    fn store(&self) -> ImageStore {
        ImageStore::new(&self.root)
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, data).expect("write test file");
        path
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        let _ = staging::remove_tree(&self.dir);
    }
}

fn as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn header(path: &str, kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// A PAX record `LEN key=value\n`, whose LEN counts its own digits.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while (len.to_string().len() + body.len()) != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// A small root filesystem: directories (one private), files (one setuid,
/// one with an xattr), a symlink, a hard link, a FIFO and (as root) a
/// device node owned like a real one.
fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |h: &mut Header, data: &[u8]| {
        h.set_cksum();
        b.append(h, data).unwrap();
    };
    add(&mut header("./", EntryType::Directory, 0o755, 0), b"");
    add(&mut header("bin/", EntryType::Directory, 0o755, 0), b"");
    add(&mut header("bin/tool", EntryType::Regular, 0o4755, 5), b"#!sh\n");
    let mut link = header("bin/sh", EntryType::Symlink, 0o777, 0);
    link.set_link_name("tool").unwrap();
    add(&mut link, b"");
    let mut hard = header("bin/tool2", EntryType::Link, 0o755, 0);
    hard.set_link_name("bin/tool").unwrap();
    add(&mut hard, b"");
    let dir_pax = pax_record("SCHILY.xattr.user.dir", "on");
    add(
        &mut header("PaxHeaders/etc", EntryType::XHeader, 0o644, dir_pax.len() as u64),
        &dir_pax,
    );
    add(&mut header("etc/", EntryType::Directory, 0o755, 0), b"");
    let pax = pax_record("SCHILY.xattr.user.islander", "yes");
    add(
        &mut header("etc/PaxHeaders/hostname", EntryType::XHeader, 0o644, pax.len() as u64),
        &pax,
    );
    let mut owned = header("etc/hostname", EntryType::Regular, 0o644, 5);
    owned.set_uid(1000);
    owned.set_gid(1001);
    add(&mut owned, b"isle\n");
    add(&mut header("secret/", EntryType::Directory, 0o500, 0), b"");
    add(&mut header("secret/key", EntryType::Regular, 0o400, 3), b"k3y");
    add(&mut header("run/", EntryType::Directory, 0o755, 0), b"");
    add(&mut header("run/fifo", EntryType::Fifo, 0o620, 0), b"");
    if as_root() {
        add(&mut header("dev/", EntryType::Directory, 0o755, 0), b"");
        let mut null = header("dev/null", EntryType::Char, 0o666, 0);
        null.set_device_major(1).unwrap();
        null.set_device_minor(3).unwrap();
        add(&mut null, b"");
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn assert_no_leftovers(t: &TestRoot) {
    let left = staging_dirs(&t.store().dir);
    assert!(left.is_empty(), "staging directories left behind: {left:?}");
}

#[test]
fn import_keeps_modes_links_fifos_devices_owners_and_xattrs() {
    let t = TestRoot::new();
    let tar = t.file("rootfs.tar", &rootfs_tar());
    let info = t.store().import(&tar, "base").expect("import");
    assert_eq!(info.name, "base");
    assert_eq!(info.source, fs::canonicalize(&tar).unwrap().display().to_string());
    assert!(info.created > 1_700_000_000, "created {}", info.created);

    let rootfs = t.store().rootfs("base").unwrap();
    assert_eq!(rootfs, t.root.images().join("base/rootfs"));
    assert!(t.root.images().join("base/image.json").is_file());
    assert_eq!(fs::read(rootfs.join("etc/hostname")).unwrap(), b"isle\n");
    assert_eq!(fs::read_link(rootfs.join("bin/sh")).unwrap(), Path::new("tool"));
    let tool = fs::metadata(rootfs.join("bin/tool")).unwrap();
    let tool2 = fs::metadata(rootfs.join("bin/tool2")).unwrap();
    assert_eq!(tool.ino(), tool2.ino(), "hard link became a copy");
    assert_eq!(tool.mtime(), 1_700_000_000);
    // Hard-linked data counts once: "#!sh\n" + "isle\n" + "k3y" + the symlink.
    assert_eq!(info.size_bytes, 5 + 5 + 3 + 4);
    assert_eq!(
        fs::metadata(rootfs.join("secret")).unwrap().permissions().mode() & 0o7777,
        0o500
    );
    assert_eq!(fs::metadata(&rootfs).unwrap().permissions().mode() & 0o7777, 0o755);
    let fifo = fs::symlink_metadata(rootfs.join("run/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo(), "FIFO became {:?}", fifo.file_type());
    assert_eq!(fifo.permissions().mode() & 0o7777, 0o620);
    match xattr_of(&rootfs.join("etc/hostname"), "user.islander") {
        Some(value) => assert_eq!(value, b"yes"),
        None => panic!("xattr user.islander missing on etc/hostname"),
    }
    assert_eq!(
        xattr_of(&rootfs.join("etc"), "user.dir").as_deref(),
        Some(&b"on"[..]),
        "directory xattr lost"
    );

    if as_root() {
        assert_eq!(tool.permissions().mode() & 0o7777, 0o4755, "setuid bit lost");
        let host = fs::metadata(rootfs.join("etc/hostname")).unwrap();
        assert_eq!((host.uid(), host.gid()), (1000, 1001));
        let null = fs::symlink_metadata(rootfs.join("dev/null")).unwrap();
        assert!(
            null.file_type().is_char_device(),
            "dev/null became {:?}",
            null.file_type()
        );
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
        assert_eq!(null.permissions().mode() & 0o7777, 0o666);
    }
    assert_no_leftovers(&t);
}

fn xattr_of(path: &Path, name: &str) -> Option<Vec<u8>> {
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let cname = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: NUL-terminated strings and a buffer of the length passed.
    let n = unsafe { libc::lgetxattr(cpath.as_ptr(), cname.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn gzip_is_recognised_by_content_not_name() {
    let t = TestRoot::new();
    // Deliberately misnamed both ways.
    let gz = t.file("plain.tar", &gzip(&rootfs_tar()));
    let plain = t.file("packed.tar.gz", &rootfs_tar());
    t.store().import(&gz, "from-gz").expect("gzip import");
    t.store().import(&plain, "from-plain").expect("plain import");
    let rootfs = t.store().rootfs("from-gz").unwrap();
    assert_eq!(fs::read_link(rootfs.join("bin/sh")).unwrap(), Path::new("tool"));
    assert_eq!(fs::read(rootfs.join("secret/key")).unwrap(), b"k3y");
}

#[test]
fn list_is_sorted_and_skips_staging_and_lock_files() {
    let t = TestRoot::new();
    let store = t.store();
    assert!(
        store.list().unwrap().is_empty(),
        "a store that does not exist yet lists nothing"
    );
    let tar = t.file("r.tar", &rootfs_tar());
    for name in ["zeta", "alpha", "mid.1"] {
        store.import(&tar, name).unwrap();
    }
    // A staging directory owned by a live process: the test holds its lock.
    let busy = store.dir.join(".tmp-busy-1234");
    fs::create_dir(&busy).unwrap();
    let _held = nix::fcntl::Flock::lock(fs::File::open(&busy).unwrap(), nix::fcntl::FlockArg::LockExclusive).unwrap();
    let names: Vec<String> = store.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["alpha", "mid.1", "zeta"]);
}

#[test]
fn missing_image_error_lists_what_is_available() {
    let t = TestRoot::new();
    let store = t.store();
    let err = store.rootfs("nope").unwrap_err().to_string();
    assert_eq!(
        err,
        "no image named 'nope' (available: none; import one with: islander image import FILE NAME)"
    );
    let tar = t.file("r.tar", &rootfs_tar());
    store.import(&tar, "busybox").unwrap();
    store.import(&tar, "default").unwrap();
    let err = store.rootfs("foo").unwrap_err().to_string();
    assert_eq!(
        err,
        "no image named 'foo' (available: busybox, default; import one with: islander image import FILE NAME)"
    );
}

#[test]
fn remove_deletes_the_image_and_refuses_a_missing_one() {
    let t = TestRoot::new();
    let store = t.store();
    let tar = t.file("r.tar", &rootfs_tar());
    store.import(&tar, "gone").unwrap();
    store.import(&tar, "kept").unwrap();
    store.remove("gone").expect("remove");
    assert!(!store.dir.join("gone").exists());
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(matches!(store.rootfs("gone"), Err(ImageError::NotFound { .. })));
    let err = store.remove("gone").unwrap_err().to_string();
    assert!(err.starts_with("no image named 'gone' (available: kept;"), "{err}");
    assert_no_leftovers(&t);
}

#[test]
fn duplicate_name_is_refused_and_the_original_kept() {
    let t = TestRoot::new();
    let store = t.store();
    let tar = t.file("r.tar", &rootfs_tar());
    let first = store.import(&tar, "twice").unwrap();
    let err = store.import(&tar, "twice").unwrap_err().to_string();
    assert_eq!(
        err,
        "image 'twice' already exists; remove it first with: islander image rm twice"
    );
    assert_eq!(store.info("twice").unwrap(), first);
    assert_no_leftovers(&t);
}

#[test]
fn names_follow_the_rules() {
    for good in ["a", "0", "debian-12", "my_image.v2", &"x".repeat(128)] {
        assert!(validate_name(good).is_ok(), "{good} should be valid");
    }
    for bad in [
        "",
        "Foo/x",
        "UPPER",
        ".hidden",
        "-dash",
        "_under",
        "a/b",
        "..",
        "a b",
        "é",
        &"x".repeat(129),
    ] {
        assert!(
            matches!(validate_name(bad), Err(ImageError::InvalidName(_))),
            "{bad} should be invalid"
        );
    }
    assert_eq!(
        validate_name("Foo/x").unwrap_err().to_string(),
        "invalid image name 'Foo/x': use lowercase letters, digits, '.', '_' and '-', \
         starting with a letter or digit, at most 128 characters"
    );
    let t = TestRoot::new();
    let tar = t.file("r.tar", &rootfs_tar());
    assert!(matches!(
        t.store().import(&tar, "../escape"),
        Err(ImageError::InvalidName(_))
    ));
    assert!(matches!(t.store().remove("Bad"), Err(ImageError::InvalidName(_))));
    assert!(!t.store().dir.exists(), "a rejected name must not create the store");
}

#[test]
fn files_that_are_not_tar_archives_are_refused() {
    let t = TestRoot::new();
    let store = t.store();
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            t.file("notes.tar", &b"just some text, long enough to not be short ".repeat(20)),
            "no tar header at its start",
        ),
        (
            t.file("text.gz", &gzip(&b"hello ".repeat(200))),
            "no tar header at its start after gunzip",
        ),
        (t.file("empty.tar", b""), "it is empty"),
        (
            t.file("short.tar", b"tiny"),
            "it is 4 bytes, shorter than one tar header",
        ),
        (
            t.file("packed.tar.xz", &[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2]),
            "it is xz-compressed",
        ),
        (t.dir.clone(), "it is a directory"),
    ];
    for (path, reason) in cases {
        let err = store.import(&path, "x").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ImageError::NotATar { .. }), "{}: {text}", path.display());
        assert!(
            text.starts_with(&format!("'{}' is not a tar or tar.gz archive (", path.display())),
            "{text}"
        );
        assert!(text.contains(reason), "{text} should say {reason}");
    }
    let zeros = t.file("zeros.tar", &[0u8; 1024]);
    assert!(matches!(
        store.import(&zeros, "x"),
        Err(ImageError::EmptyArchive { .. })
    ));
    assert!(store.list().unwrap().is_empty());
    assert_no_leftovers(&t);
}

#[test]
fn missing_file_is_named_in_the_error() {
    let t = TestRoot::new();
    let missing = t.dir.join("no-such.tar");
    let err = t.store().import(&missing, "x").unwrap_err();
    assert!(matches!(err, ImageError::FileUnreadable { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot read image file '{}': ", missing.display())),
        "{text}"
    );
    assert!(text.contains("No such file"), "{text}");
}

#[test]
fn failed_imports_leave_nothing_behind() {
    let t = TestRoot::new();
    let store = t.store();

    // Cut off in the middle of a file's data.
    let mut truncated = rootfs_tar();
    truncated.truncate(512 * 3 + 2);
    let file = t.file("cut.tar", &truncated);
    let err = store.import(&file, "cut").unwrap_err();
    assert!(matches!(err, ImageError::Extract { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot extract '{}': ", file.display())),
        "{err}"
    );

    // The same, gzip-compressed and cut.
    let mut gz = gzip(&rootfs_tar());
    gz.truncate(gz.len() / 2);
    let file = t.file("cut.tar.gz", &gz);
    assert!(store.import(&file, "cutgz").is_err());

    // An entry that climbs out of the image.
    let mut b = tar::Builder::new(Vec::new());
    let mut ok = header("etc/", EntryType::Directory, 0o755, 0);
    ok.set_cksum();
    b.append(&ok, &b""[..]).unwrap();
    let mut evil = header("x", EntryType::Regular, 0o644, 2);
    evil.as_old_mut().name[..9].copy_from_slice(b"../escape");
    evil.set_cksum();
    b.append(&evil, &b"hi"[..]).unwrap();
    let file = t.file("evil.tar", &b.into_inner().unwrap());
    let err = store.import(&file, "evil").unwrap_err().to_string();
    assert!(err.contains("entry '../escape' reaches outside the image"), "{err}");
    assert!(!t.dir.join("lib/escape").exists() && !t.root.images().join("escape").exists());

    assert!(store.list().unwrap().is_empty());
    for name in ["cut", "cutgz", "evil"] {
        assert!(!store.dir.join(name).exists(), "{name} exists after a failed import");
    }
    assert_no_leftovers(&t);
}

#[test]
fn abandoned_staging_directories_are_swept() {
    let t = TestRoot::new();
    let store = t.store();
    fs::create_dir_all(store.dir.join(".tmp-dead-0001/rootfs/sub")).unwrap();
    fs::write(store.dir.join(".tmp-dead-0001/rootfs/sub/f"), b"x").unwrap();
    let busy = store.dir.join(".tmp-busy-0002");
    fs::create_dir(&busy).unwrap();
    let held = nix::fcntl::Flock::lock(fs::File::open(&busy).unwrap(), nix::fcntl::FlockArg::LockExclusive).unwrap();

    store.import(&t.file("r.tar", &rootfs_tar()), "fresh").unwrap();
    assert_eq!(
        staging_dirs(&store.dir),
        [".tmp-busy-0002"],
        "only the locked staging dir survives"
    );
    drop(held);
    store.remove("fresh").unwrap();
    assert_no_leftovers(&t);
}

#[test]
fn remove_tree_detaches_mounts_instead_of_emptying_them() {
    if !as_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    let t = TestRoot::new();
    let tree = t.dir.join("tree");
    let mnt = tree.join("proc");
    fs::create_dir_all(&mnt).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    fs::write(mnt.join("precious"), b"host data").unwrap();
    // Keep a handle on the mounted tmpfs to see that its file survives.
    let outside = fs::File::open(&mnt).unwrap();
    staging::remove_tree(&tree).expect("remove_tree");
    assert!(!tree.exists());
    let fd = std::os::fd::AsRawFd::as_raw_fd(&outside);
    assert!(
        Path::new(&format!("/proc/self/fd/{fd}/precious")).exists(),
        "remove_tree deleted files inside a mount"
    );
}

#[test]
fn ensure_default_imports_the_seed_tarball_once() {
    let t = TestRoot::new();
    let tar = t.file("seed.tar.gz", &gzip(&rootfs_tar()));
    // The only test that touches this variable.
    std::env::set_var(ENV_DEFAULT_TAR, &tar);
    let mut lines = Vec::new();
    let rootfs = t.store().ensure_default_with(&mut |l| lines.push(l.to_string()));
    std::env::remove_var(ENV_DEFAULT_TAR);
    let rootfs = rootfs.expect("ensure_default");
    assert_eq!(rootfs, t.root.images().join("default/rootfs"));
    assert!(rootfs.join("bin/tool").is_file());
    assert!(
        lines.iter().any(|l| l.contains("importing image 'default' from")),
        "{lines:?}"
    );
    assert_eq!(
        t.store().info("default").unwrap().source,
        fs::canonicalize(&tar).unwrap().display().to_string()
    );

    let mut again = Vec::new();
    assert_eq!(
        t.store()
            .ensure_default_with(&mut |l| again.push(l.to_string()))
            .unwrap(),
        rootfs
    );
    assert!(again.is_empty(), "an existing default image is used as is: {again:?}");
    assert_no_leftovers(&t);
}

#[test]
fn host_mirror_is_the_first_plain_http_debian_archive() {
    let t = TestRoot::new();
    let apt = t.dir.join("apt");
    fs::create_dir_all(apt.join("sources.list.d")).unwrap();
    fs::write(
        apt.join("sources.list.d/debian.sources"),
        "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
         URIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
         Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n",
    )
    .unwrap();
    fs::write(
        apt.join("sources.list.d/a-node.sources"),
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n",
    )
    .unwrap();
    fs::write(
        apt.join("sources.list.d/0-off.list.disabled"),
        "deb http://off.example/debian bookworm main\n",
    )
    .unwrap();
    assert_eq!(
        debootstrap::host_mirror(&apt).as_deref(),
        Some("http://mirror.example/debian")
    );

    fs::write(
        apt.join("sources.list"),
        "# deb http://commented.example/debian bookworm main\n\
         deb-src http://src.example/debian bookworm main\n\
         deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm main\n",
    )
    .unwrap();
    assert_eq!(
        debootstrap::host_mirror(&apt).as_deref(),
        Some("http://list.example/debian")
    );
    assert_eq!(debootstrap::host_mirror(&t.dir.join("none")), None);
}

#[test]
fn a_bad_mirror_setting_is_refused() {
    // The only test that touches this variable.
    std::env::set_var(ENV_DEBIAN_MIRROR, "deb.debian.org/debian");
    let result = debootstrap::pick_mirror();
    std::env::set_var(ENV_DEBIAN_MIRROR, "http://127.0.0.1:3142/debian");
    let good = debootstrap::pick_mirror();
    std::env::remove_var(ENV_DEBIAN_MIRROR);
    assert_eq!(
        result.unwrap_err().to_string(),
        "invalid ISLANDER_DEBIAN_MIRROR 'deb.debian.org/debian': use an http://, https://, ftp:// or file:// URL \
         of a Debian archive, e.g. http://deb.debian.org/debian"
    );
    assert_eq!(good.unwrap(), "http://127.0.0.1:3142/debian");
}

#[test]
fn image_json_round_trips() {
    let info = ImageInfo {
        name: "a".into(),
        created: 1,
        size_bytes: 2,
        source: "s".into(),
    };
    let text = serde_json::to_string(&info).unwrap();
    assert_eq!(text, r#"{"name":"a","created":1,"size_bytes":2,"source":"s"}"#);
    assert_eq!(serde_json::from_str::<ImageInfo>(&text).unwrap(), info);
}
