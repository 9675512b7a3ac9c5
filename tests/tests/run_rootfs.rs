//! The isle's filesystem: an overlay over the image (writes never reach the
//! image and vanish at exit), with /dev, /proc and /sys set up for it.

use std::fs;
use std::path::{Path, PathBuf};

use islander_tests::{busybox_rootfs, Islander, OutputExt};

/// Every path under `dir` whose file name is `name`.
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(find_named(&path, name));
        }
    }
    found
}

fn write_then_look_again(isl: &Islander, opts: &[&str], probe: &str) {
    let out = isl.run_isle(
        opts,
        &[
            "sh",
            "-c",
            &format!(
                "echo written > /root/{probe} && cat /root/{probe} && rm /bin/ls && test ! -e /bin/ls && echo removed"
            ),
        ],
    );
    out.assert_success("writing in the isle");
    assert_eq!(out.stdout_str(), "written\nremoved\n", "{}", out.describe());

    let again = isl.run_isle(
        opts,
        &[
            "sh",
            "-c",
            &format!("test -e /root/{probe} && echo present || echo absent; test -e /bin/ls && echo ls-back"),
        ],
    );
    again.assert_success("the next isle");
    assert_eq!(
        again.stdout_str(),
        "absent\nls-back\n",
        "the next isle sees the previous one's changes: {}",
        again.describe()
    );
}

#[test]
fn writes_to_a_rootfs_stay_in_the_isle() {
    let isl = Islander::new("overlay-rootfs");
    let probe = format!("overlay-probe-{}", std::process::id());
    write_then_look_again(&isl, &[], &probe);
    let rootfs = busybox_rootfs();
    assert!(
        !rootfs.join("root").join(&probe).exists(),
        "a file written in the isle landed in --rootfs"
    );
    assert!(
        rootfs.join("bin/ls").symlink_metadata().is_ok(),
        "a file removed in the isle vanished from --rootfs"
    );
}

#[test]
fn writes_to_an_image_stay_in_the_isle() {
    let isl = Islander::new("overlay-image");
    isl.import_busybox("busybox");
    let probe = format!("overlay-probe-{}", std::process::id());
    write_then_look_again(&isl, &["--image", "busybox"], &probe);
    let images = isl.lib_dir().join("images");
    let found = find_named(&images, &probe);
    assert!(
        found.is_empty(),
        "a file written in the isle landed in the image store: {found:?}"
    );
    let ls = find_named(&images, "ls");
    assert!(
        !ls.is_empty(),
        "a file removed in the isle vanished from the image"
    );
}

#[test]
fn isle_has_the_usual_devices() {
    let isl = Islander::new("dev");
    let out = isl.run_isle(
        &[],
        &[
            "sh",
            "-c",
            "for d in null zero full random urandom tty ptmx; do test -c /dev/$d && echo $d; done; \
             echo x > /dev/null && echo wrote-null; head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; \
             test -d /dev/pts && echo pts; test -d /dev/shm && echo shm",
        ],
    );
    out.assert_success("device checks");
    let want = "null\nzero\nfull\nrandom\nurandom\ntty\nptmx\nwrote-null\n4\n4\npts\nshm\n";
    let got: String = out
        .stdout_str()
        .lines()
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    assert_eq!(got, want, "devices in the isle: {}", out.describe());
}

#[test]
fn sensitive_proc_and_sys_paths_are_masked_or_read_only() {
    let isl = Islander::new("masked");
    // Masked files read as empty; a masked directory lists nothing.
    let out = isl.run_isle(
        &[],
        &[
            "sh",
            "-c",
            "for f in /proc/kcore /proc/keys /proc/timer_list; do echo $f $(head -c 64 $f 2>/dev/null | wc -c); done; \
             echo /sys/firmware $(ls /sys/firmware 2>/dev/null | wc -l); echo @@; cat /proc/self/mountinfo",
        ],
    );
    out.assert_success("masked paths");
    let text = out.stdout_str();
    let (sizes, mountinfo) = text.split_once("@@\n").expect("marker in output");
    for line in sizes.lines() {
        let (path, n) = line.rsplit_once(' ').expect("path and count");
        assert_eq!(
            n, "0",
            "{path} is readable in the isle (masked in the contract):\n{text}"
        );
    }
    let mounts = islander_tests::host::parse_mountinfo(mountinfo);
    for path in ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"] {
        if !Path::new(path).exists() {
            continue; // the host kernel lacks it, so the isle does too
        }
        let m = mounts.iter().rev().find(|m| m.mount_point == path).unwrap_or_else(|| {
            panic!("{path} is not mounted over in the isle (read-only in the contract):\n{mountinfo}")
        });
        assert!(
            m.options.split(',').any(|o| o == "ro"),
            "{path} is writable in the isle: {}",
            m.raw
        );
    }
}
