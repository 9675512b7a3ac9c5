//! `islander image import|ls|rm`, and running isles from imported images.

use std::fs;

use islander_tests::{busybox_tar, busybox_tar_gz, Islander, OutputExt};

/// Image names `image ls --format json` reports. Accepts a bare array of
/// objects with a `name`, or an object holding such an array under `images`.
fn json_names(isl: &Islander) -> Vec<String> {
    let out = isl.run(&["image", "ls", "--format", "json"]);
    out.assert_success("image ls --format json");
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "image ls --format json is not JSON ({e}): {}",
            out.describe()
        )
    });
    let list = match &value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(map) => map
            .get("images")
            .and_then(|v| v.as_array())
            .unwrap_or_else(|| panic!("image ls JSON object has no 'images' array: {value}")),
        _ => panic!("image ls JSON is neither an array nor an object: {value}"),
    };
    list.iter()
        .map(|item| {
            item.get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_else(|| panic!("image entry without a string 'name': {item}"))
                .to_string()
        })
        .collect()
}

/// Image names in the table: the first column of each line but the header.
fn table_names(isl: &Islander) -> Vec<String> {
    let out = isl.run(&["image", "ls"]);
    out.assert_success("image ls");
    out.stdout_str()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// A failed image command: non-zero, one `islander: ` line naming `needle`.
fn assert_refused(out: &std::process::Output, what: &str, needle: &str) {
    assert_ne!(
        out.code(),
        Some(0),
        "{what}: expected failure, got {}",
        out.describe()
    );
    let stderr = out.stderr_str();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one stderr line, got {}",
        out.describe()
    );
    assert!(
        lines[0].starts_with("islander: "),
        "{what}: error line without 'islander: ': {}",
        lines[0]
    );
    assert!(
        lines[0].contains(needle),
        "{what}: error line does not name {needle}: {}",
        lines[0]
    );
}

fn image_entries(isl: &Islander) -> Vec<String> {
    match fs::read_dir(isl.lib_dir().join("images")) {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn import_a_tar_list_it_and_run_it() {
    let isl = Islander::new("image-tar");
    isl.import_busybox("busybox");
    assert_eq!(table_names(&isl), ["busybox"], "image ls table");
    assert_eq!(json_names(&isl), ["busybox"], "image ls --format json");
    let out = isl.run(&["run", "--image", "busybox", "cat", "/etc/passwd"]);
    out.assert_success("run --image busybox");
    assert!(
        out.stdout_str().starts_with("root:x:0:0:"),
        "the image's /etc/passwd: {}",
        out.describe()
    );
}

#[test]
fn import_a_tar_gz() {
    let isl = Islander::new("image-tgz");
    let tgz = busybox_tar_gz();
    isl.run(&["image", "import", tgz.to_str().unwrap(), "bbgz"])
        .assert_success("image import of a .tar.gz");
    let out = isl.run(&["run", "--image", "bbgz", "sh", "-c", "echo from-gz"]);
    out.assert_success("run --image bbgz");
    assert_eq!(out.stdout_str(), "from-gz\n");
}

#[test]
fn empty_store_lists_nothing() {
    let isl = Islander::new("image-empty");
    assert!(json_names(&isl).is_empty(), "a fresh root lists images");
    assert!(
        table_names(&isl).is_empty(),
        "a fresh root lists images in the table"
    );
}

#[test]
fn rm_removes_images() {
    let isl = Islander::new("image-rm");
    for name in ["one", "two", "three"] {
        isl.import_busybox(name);
    }
    isl.run(&["image", "rm", "one", "three"])
        .assert_success("image rm one three");
    assert_eq!(
        json_names(&isl),
        ["two"],
        "images after removing one and three"
    );
    assert!(
        !isl.image_dir("one").exists(),
        "{} remains",
        isl.image_dir("one").display()
    );
    let out = isl.run(&["run", "--image", "one", "/bin/true"]);
    out.assert_code(125, "run --image of a removed image");
    assert!(out.stderr_str().contains("'one'"), "{}", out.describe());
}

#[test]
fn rm_of_a_missing_image_fails() {
    let isl = Islander::new("image-rm-missing");
    isl.import_busybox("busybox");
    let out = isl.run(&["image", "rm", "nope"]);
    assert_refused(&out, "image rm nope", "'nope'");
    assert_eq!(
        json_names(&isl),
        ["busybox"],
        "a failed rm touched other images"
    );
}

#[test]
fn duplicate_name_is_refused() {
    let isl = Islander::new("image-dup");
    isl.import_busybox("busybox");
    let tar = busybox_tar();
    let out = isl.run(&["image", "import", tar.to_str().unwrap(), "busybox"]);
    assert_refused(&out, "a second import as busybox", "'busybox'");
    isl.run(&["run", "--image", "busybox", "/bin/true"])
        .assert_success("the first image after a refused duplicate");
}

#[test]
fn import_of_a_missing_file_fails() {
    let isl = Islander::new("image-nofile");
    let out = isl.run(&["image", "import", "/nonexistent/islander-tests.tar", "x"]);
    assert_refused(
        &out,
        "import of a missing file",
        "/nonexistent/islander-tests.tar",
    );
    assert!(
        image_entries(&isl).is_empty(),
        "a failed import left {:?}",
        image_entries(&isl)
    );
}

#[test]
fn import_of_garbage_fails_and_leaves_nothing() {
    let isl = Islander::new("image-garbage");
    let junk = isl.root().join("junk.tar");
    fs::write(&junk, "this is not a tar archive\n".repeat(100)).unwrap();
    let out = isl.run(&["image", "import", junk.to_str().unwrap(), "junk"]);
    assert_refused(&out, "import of a non-tar file", "junk");
    assert!(
        image_entries(&isl).is_empty(),
        "a failed import left {:?}",
        image_entries(&isl)
    );
    assert!(json_names(&isl).is_empty(), "a failed import is listed");
}

#[test]
fn bad_image_names_are_refused() {
    let isl = Islander::new("image-badname");
    let tar = busybox_tar();
    for name in ["../escape", "a/b", "", "."] {
        let out = isl.run(&["image", "import", tar.to_str().unwrap(), name]);
        assert_refused(&out, &format!("import as '{name}'"), &format!("'{name}'"));
    }
    assert!(
        !isl.lib_dir().join("escape").exists(),
        "an import escaped the image store"
    );
    assert!(
        image_entries(&isl).is_empty(),
        "refused imports left {:?}",
        image_entries(&isl)
    );
}

#[test]
fn unknown_ls_format_is_refused() {
    let isl = Islander::new("image-ls-format");
    let out = isl.run(&["image", "ls", "--format", "yaml"]);
    assert_refused(&out, "image ls --format yaml", "'yaml'");
}
