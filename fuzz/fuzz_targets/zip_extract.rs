//! Code packages: `fleetfn_artifacts::validate_zip` and `extract` on arbitrary bytes (the
//! seeds are small zips: plain, with a `bootstrap`, a duplicated entry, a `../` traversal
//! name, symlinks inside and outside the package, a lying size header). Each input is extracted
//! into a fresh temporary directory, which is removed afterwards.
//!
//! Checks: no panic; `validate_zip` and `extract` agree (same summary, or the same package
//! error); a failed extraction leaves nothing behind; a successful one wrote nothing outside
//! its destination, and the tree on disk is exactly the summary: every path is a summary entry
//! of the same kind and size, symlinks are relative and resolve (lexically, from their own
//! directory) inside the tree, and no setuid, setgid or sticky bit is set.
#![no_main]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use fleetfn_artifacts::{EntryKind, Limits, StoreError, ZipSummary, extract, validate_zip};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_unzipped_bytes: 1 << 20,
    max_entries: 256,
};

/// Every path below `dir`, relative to `root`, `/`-separated (symlinks not followed).
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).expect("read extracted dir") {
        let path = e.expect("dir entry").path();
        let rel = path.strip_prefix(root).expect("below root");
        out.push(rel.to_str().expect("extracted names are UTF-8").to_owned());
        if fs::symlink_metadata(&path).expect("lstat").is_dir() {
            walk(root, &path, out);
        }
    }
}

/// Resolves `target` from the directory of the link at `link` (both relative to the package
/// root), lexically; `false` if it climbs above the root or is absolute.
fn stays_inside(link: &str, target: &str) -> bool {
    let mut stack: Vec<&str> = link.split('/').collect();
    stack.pop();
    for c in Path::new(target).components() {
        match c {
            Component::Normal(s) => stack.push(s.to_str().unwrap_or("?")),
            Component::CurDir => {}
            Component::ParentDir => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

fn check_tree(root: &Path, summary: &ZipSummary) {
    let mut on_disk = Vec::new();
    walk(root, root, &mut on_disk);
    on_disk.sort();
    let expected: Vec<&str> = summary.entries().map(|(p, _)| p).collect();
    assert_eq!(on_disk, expected, "extracted tree differs from the summary");
    for (path, entry) in summary.entries() {
        assert!(
            !path.is_empty()
                && Path::new(path)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))),
            "summary path {path:?} is not a plain relative path"
        );
        let full = root.join(path);
        let meta = fs::symlink_metadata(&full).expect("lstat");
        let mode = meta.permissions().mode();
        match &entry.kind {
            EntryKind::File => {
                assert!(meta.is_file(), "{path:?} should be a file");
                assert_eq!(meta.len(), entry.size, "{path:?}: size");
                assert_eq!(mode & 0o7000, 0, "{path:?}: special mode bits {mode:o}");
            }
            EntryKind::Dir => {
                assert!(meta.is_dir(), "{path:?} should be a directory");
                assert_eq!(mode & 0o7000, 0, "{path:?}: special mode bits {mode:o}");
            }
            EntryKind::Symlink { target } => {
                assert!(meta.is_symlink(), "{path:?} should be a symlink");
                let on_disk = fs::read_link(&full).expect("readlink");
                assert_eq!(on_disk.to_str(), Some(target.as_str()), "{path:?}: target");
                assert!(
                    stays_inside(path, target),
                    "symlink {path:?} -> {target:?} leaves the package"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let validated = validate_zip(data, &LIMITS);

    let base = tempfile::Builder::new()
        .prefix("fleetfn-fuzz-zip-")
        .tempdir()
        .expect("temp dir");
    let dest = base.path().join("pkg");
    let extracted = extract(data, &dest, &LIMITS);

    let mut left: Vec<_> = fs::read_dir(base.path())
        .expect("read base")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    left.sort();
    match (&validated, &extracted) {
        (Ok(v), Ok(x)) => {
            assert_eq!(v, x, "validate_zip and extract summarize differently");
            assert_eq!(left, ["pkg"], "extract wrote beside its destination");
            check_tree(&dest, x);
        }
        (Err(v), Err(StoreError::Package(x))) => {
            assert_eq!(v, x, "validate_zip and extract reject differently");
            assert!(left.is_empty(), "a failed extract left {left:?} behind");
        }
        (v, x) => panic!("validate_zip and extract disagree: {v:?} / {x:?}"),
    }
    // `base` (and the tree in it) is removed on drop; directories always keep u+rwx.
    drop(base);
});
