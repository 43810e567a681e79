//! End-to-end tests of validation, extraction and the store, with zips built by the `zip`
//! crate's writer (and byte-patched where a hostile archive cannot be written directly).

use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fleetfn_artifacts::{
    ArtifactStore, Bootstrap, Digest, EntryKind, Limits, StoreError, UNREADABLE_ZIP_MESSAGE,
    ZipError, extract, validate_zip,
};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

enum E<'a> {
    /// Name, contents, unix permission bits.
    File(&'a str, &'a [u8], u32),
    /// Name, contents, raw external attributes (mode << 16).
    Raw(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
    Link(&'a str, &'a str),
}

fn zip_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for e in entries {
        match *e {
            E::File(name, data, mode) => {
                w.start_file(name, opts.unix_permissions(mode)).unwrap();
                w.write_all(data).unwrap();
            }
            E::Raw(name, data, attrs) => {
                w.start_file(name, opts.external_attributes(attrs)).unwrap();
                w.write_all(data).unwrap();
            }
            E::Dir(name, mode) => w.add_directory(name, opts.unix_permissions(mode)).unwrap(),
            E::Link(name, target) => w.add_symlink(name, target, opts).unwrap(),
        }
    }
    w.finish().unwrap().into_inner()
}

fn package() -> Vec<u8> {
    zip_of(&[
        E::File("bootstrap", b"#!/bin/sh\necho hi\n", 0o755),
        E::File("app.py", b"def handler(e, c):\n    return 1\n", 0o644),
        E::Dir("lib/", 0o750),
        E::File("lib/util/helper.py", b"X = 1\n", 0o600),
        E::File("lib/util/deep/data.bin", &[7u8; 3000], 0o644),
    ])
}

fn small(max_unzipped_bytes: u64) -> Limits {
    Limits {
        max_unzipped_bytes,
        ..Limits::LAMBDA
    }
}

fn reject(bytes: &[u8]) -> ZipError {
    validate_zip(bytes, &Limits::LAMBDA).expect_err("package should be rejected")
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Offsets of every local (`PK\3\4`) and central (`PK\1\2`) header.
fn headers(zip: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let find = |sig: &[u8]| {
        zip.windows(4)
            .enumerate()
            .filter(|(_, w)| *w == sig)
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    (find(b"PK\x03\x04"), find(b"PK\x01\x02"))
}

fn put_u32(zip: &mut [u8], at: usize, v: u32) {
    zip[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn assert_no_leftovers(dir: &Path) {
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[test]
fn valid_package_summary() {
    let s = validate_zip(&package(), &Limits::LAMBDA).unwrap();
    assert_eq!(s.entry_count(), 5);
    let expected =
        "#!/bin/sh\necho hi\n".len() + "def handler(e, c):\n    return 1\n".len() + 6 + 3000;
    assert_eq!(s.total_uncompressed_size(), expected as u64);
    assert_eq!(s.bootstrap(), Bootstrap::Executable);
    assert!(s.file_exists("app.py"));
    assert!(s.file_exists("./lib/util/helper.py"));
    assert!(!s.file_exists("index.js"));
    assert!(!s.file_exists("lib"));
    assert!(s.dir_exists("lib/util/deep") && s.dir_exists(""));
    assert_eq!(
        s.first_existing_file(&["index.mjs", "app.py"]),
        Some("app.py")
    );
    assert_eq!(s.entry("lib").unwrap().mode, 0o750);
    assert!(s.entry("lib/util").unwrap().implicit);
    assert_eq!(s.entry("lib/util/deep/data.bin").unwrap().size, 3000);
}

#[test]
fn bootstrap_missing_or_not_executable() {
    let s = validate_zip(
        &zip_of(&[E::File("index.mjs", b"x", 0o644)]),
        &Limits::LAMBDA,
    )
    .unwrap();
    assert_eq!(s.bootstrap(), Bootstrap::Missing);
    let s = validate_zip(
        &zip_of(&[E::File("bootstrap", b"x", 0o644)]),
        &Limits::LAMBDA,
    )
    .unwrap();
    assert_eq!(s.bootstrap(), Bootstrap::NotExecutable);
    // Only the root counts.
    let s = validate_zip(
        &zip_of(&[E::File("bin/bootstrap", b"x", 0o755)]),
        &Limits::LAMBDA,
    )
    .unwrap();
    assert_eq!(s.bootstrap(), Bootstrap::Missing);
}

#[test]
fn rejects_parent_traversal_with_actionable_message() {
    let err = reject(&zip_of(&[E::File("../evil", b"x", 0o644)]));
    assert_eq!(
        err.to_string(),
        "zip entry '../evil' escapes the package root; remove absolute and '..' paths"
    );
    for name in ["a/../../evil", "a/../b", "lib/.."] {
        let err = reject(&zip_of(&[E::File(name, b"x", 0o644)]));
        assert!(
            matches!(err, ZipError::PathEscapes { .. }),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn rejects_absolute_path() {
    let err = reject(&zip_of(&[E::File(
        "/etc/passwd",
        b"root::0:0::/:/bin/sh",
        0o644,
    )]));
    assert_eq!(
        err,
        ZipError::PathEscapes {
            entry: "/etc/passwd".into()
        }
    );
}

#[test]
fn rejects_backslash_traversal_and_drive_letters() {
    for name in [
        "..\\evil",
        "a\\..\\..\\evil",
        "\\evil",
        "C:\\evil",
        "c:/evil",
    ] {
        let err = reject(&zip_of(&[E::File(name, b"x", 0o644)]));
        assert!(
            matches!(err, ZipError::PathEscapes { .. }),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn backslash_separators_become_directories() {
    let bytes = zip_of(&[E::File("src\\app.py", b"x", 0o644)]);
    assert!(
        validate_zip(&bytes, &Limits::LAMBDA)
            .unwrap()
            .file_exists("src/app.py")
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");
    extract(&bytes, &dest, &Limits::LAMBDA).unwrap();
    assert_eq!(fs::read(dest.join("src/app.py")).unwrap(), b"x");
}

#[test]
fn rejects_nul_in_name() {
    let err = reject(&zip_of(&[E::File("a\0b.py", b"x", 0o644)]));
    assert!(matches!(err, ZipError::InvalidName { .. }), "{err:?}");
    assert!(err.to_string().contains("a\\u{0}b.py"), "{err}");
}

#[test]
fn rejects_garbage_and_empty_input_with_aws_message() {
    for bytes in [
        &b"this is not a zip file at all"[..],
        b"",
        b"PK\x03\x04garbage",
    ] {
        let err = reject(bytes);
        assert!(matches!(err, ZipError::Unreadable { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "Could not unzip uploaded file. Please check your file, then try to upload again."
        );
        assert_eq!(err.to_string(), UNREADABLE_ZIP_MESSAGE);
    }
}

#[test]
fn rejects_truncated_archive() {
    let bytes = package();
    let err = reject(&bytes[..bytes.len() / 2]);
    assert!(matches!(err, ZipError::Unreadable { .. }), "{err:?}");
}

#[test]
fn rejects_empty_zip_and_directory_only_zip() {
    assert_eq!(reject(&zip_of(&[])), ZipError::Empty);
    assert_eq!(reject(&zip_of(&[E::Dir("lib/", 0o755)])), ZipError::Empty);
}

#[test]
fn rejects_bomb_over_the_limit_on_validate_and_extract() {
    let bytes = zip_of(&[E::File("bomb.bin", &vec![0u8; 4 << 20], 0o644)]);
    assert!(
        bytes.len() < 64 * 1024,
        "bomb should be small: {}",
        bytes.len()
    );
    let limits = small(1 << 20);
    let err = validate_zip(&bytes, &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Unzipped size must be smaller than 1048576 bytes"
    );

    let dir = tempfile::tempdir().unwrap();
    let err = extract(&bytes, &dir.path().join("pkg"), &limits).unwrap_err();
    assert!(
        matches!(err.as_package_error(), Some(ZipError::TooLarge { .. })),
        "{err:?}"
    );
    assert_no_leftovers(dir.path());
}

#[test]
fn lambda_limit_message_is_awss() {
    let err = ZipError::TooLarge {
        limit: Limits::LAMBDA.max_unzipped_bytes,
        at_least: 0,
    };
    assert_eq!(
        err.to_string(),
        "Unzipped size must be smaller than 262144000 bytes"
    );
}

#[test]
fn declared_sizes_add_up_across_entries() {
    let bytes = zip_of(&[
        E::File("a", &[1; 600], 0o644),
        E::File("b", &[2; 600], 0o644),
    ]);
    assert!(validate_zip(&bytes, &small(1200)).is_ok());
    assert!(matches!(
        validate_zip(&bytes, &small(1199)),
        Err(ZipError::TooLarge { limit: 1199, .. })
    ));
}

/// Headers claim 10 bytes; the data inflates to 100 000. Both the declared-size check and
/// the byte cap would pass it; counting the real bytes catches it.
#[test]
fn rejects_lying_header() {
    let mut bytes = zip_of(&[E::File("liar.bin", &vec![0u8; 100_000], 0o644)]);
    let (local, central) = headers(&bytes);
    assert_eq!((local.len(), central.len()), (1, 1));
    put_u32(&mut bytes, local[0] + 22, 10);
    put_u32(&mut bytes, central[0] + 24, 10);
    let limits = small(1000);
    let s_err = validate_zip(&bytes, &limits).unwrap_err();
    assert!(
        matches!(&s_err, ZipError::CorruptEntry { entry, .. } if entry == "liar.bin"),
        "{s_err:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");
    let err = extract(&bytes, &dest, &limits).unwrap_err();
    assert!(
        matches!(err.as_package_error(), Some(ZipError::CorruptEntry { .. })),
        "{err:?}"
    );
    assert_no_leftovers(dir.path());
}

#[test]
fn rejects_corrupted_data() {
    let mut bytes = zip_of(&[E::File("a.txt", b"hello hello hello hello", 0o644)]);
    let (local, _) = headers(&bytes);
    // Flip a byte inside the compressed data (after the 30-byte header and 5-byte name).
    bytes[local[0] + 30 + 5 + 2] ^= 0xff;
    let err = reject(&bytes);
    assert!(matches!(err, ZipError::CorruptEntry { .. }), "{err:?}");
}

#[test]
fn rejects_too_many_entries() {
    let bytes = zip_of(&[
        E::File("a", b"", 0o644),
        E::File("b", b"", 0o644),
        E::File("c", b"", 0o644),
        E::File("d", b"", 0o644),
    ]);
    let limits = Limits {
        max_entries: 3,
        ..Limits::LAMBDA
    };
    assert_eq!(
        validate_zip(&bytes, &limits).unwrap_err(),
        ZipError::TooManyEntries { count: 4, max: 3 }
    );
}

#[test]
fn rejects_unsupported_compression() {
    let mut bytes = zip_of(&[E::File("a.txt", b"hello", 0o644)]);
    let (local, central) = headers(&bytes);
    bytes[local[0] + 8..local[0] + 10].copy_from_slice(&12u16.to_le_bytes()); // bzip2
    bytes[central[0] + 10..central[0] + 12].copy_from_slice(&12u16.to_le_bytes());
    let err = reject(&bytes);
    assert!(
        matches!(err, ZipError::UnsupportedCompression { .. }),
        "{err:?}"
    );
}

#[test]
fn rejects_special_files() {
    let err = reject(&zip_of(&[E::Raw("fifo", b"", 0o010_644 << 16)]));
    assert!(
        matches!(err, ZipError::UnsupportedEntryType { .. }),
        "{err:?}"
    );
}

#[test]
fn rejects_duplicate_and_clashing_paths() {
    // The writer refuses duplicates, so rename the second entry in place.
    let mut bytes = zip_of(&[E::File("a.txt", b"1", 0o644), E::File("b.txt", b"2", 0o644)]);
    let (local, central) = headers(&bytes);
    bytes[local[1] + 30] = b'a';
    bytes[central[1] + 46] = b'a';
    let err = reject(&bytes);
    assert!(
        matches!(&err, ZipError::PathClash { entry, other } if entry == "a.txt" && other == "a.txt"),
        "{err:?}"
    );
    assert!(err.to_string().contains("'a.txt'"), "{err}");

    for entries in [
        vec![
            E::File("a.txt", b"1", 0o644),
            E::File("./a.txt", b"2", 0o644),
        ],
        vec![
            E::File("lib", b"1", 0o644),
            E::File("lib/x.py", b"2", 0o644),
        ],
        vec![E::Link("lib", "real"), E::File("lib/x.py", b"2", 0o644)],
        vec![E::File("lib/x.py", b"2", 0o644), E::Link("lib", "real")],
    ] {
        let err = reject(&zip_of(&entries));
        assert!(matches!(err, ZipError::PathClash { .. }), "{err:?}");
    }
}

#[test]
fn symlinks_inside_the_package_are_extracted() {
    let bytes = zip_of(&[
        E::File("lib/libfoo.so.1", b"ELF", 0o755),
        E::Link("lib/libfoo.so", "libfoo.so.1"),
        E::File("node_modules/pkg/cli.js", b"js", 0o755),
        E::Link("node_modules/.bin/cli", "../pkg/cli.js"),
        E::Link("bootstrap", "lib/libfoo.so.1"),
    ]);
    let s = validate_zip(&bytes, &Limits::LAMBDA).unwrap();
    assert_eq!(
        s.entry("lib/libfoo.so").unwrap().kind,
        EntryKind::Symlink {
            target: "libfoo.so.1".into()
        }
    );
    assert!(s.file_exists("node_modules/.bin/cli"));
    assert_eq!(s.bootstrap(), Bootstrap::Executable);

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");
    extract(&bytes, &dest, &Limits::LAMBDA).unwrap();
    assert_eq!(
        fs::read_link(dest.join("node_modules/.bin/cli")).unwrap(),
        Path::new("../pkg/cli.js")
    );
    assert_eq!(fs::read(dest.join("node_modules/.bin/cli")).unwrap(), b"js");
    assert_eq!(fs::read(dest.join("lib/libfoo.so")).unwrap(), b"ELF");
}

#[test]
fn rejects_symlinks_leaving_the_package() {
    // Relative to the link's directory `sub/`.
    for target in ["../../outside", "/etc/passwd", "a/../../../x", "../.."] {
        let bytes = zip_of(&[E::File("f", b"x", 0o644), E::Link("sub/link", target)]);
        let err = reject(&bytes);
        assert!(
            matches!(err, ZipError::SymlinkEscapes { .. }),
            "{target}: {err:?}"
        );
    }
    for target in ["../f", ".", "..", "a/../../f"] {
        let bytes = zip_of(&[E::File("f", b"x", 0o644), E::Link("sub/link", target)]);
        assert!(validate_zip(&bytes, &Limits::LAMBDA).is_ok(), "{target}");
    }
    let err = reject(&zip_of(&[E::Link("evil", "../etc/shadow")]));
    assert_eq!(
        err.to_string(),
        "zip entry 'evil' is a symlink to '../etc/shadow', which points outside the package \
         root; replace the link with the file it points to, or use a relative link that stays \
         inside the package"
    );
}

/// `sub/up -> ..` is the root, so `x -> sub/up/..` would really be the parent of the root,
/// although it looks like `sub` lexically.
#[test]
fn rejects_dotdot_through_another_symlink() {
    let bytes = zip_of(&[
        E::File("sub/f", b"x", 0o644),
        E::Link("sub/up", ".."),
        E::Link("x", "sub/up/.."),
    ]);
    let err = reject(&bytes);
    assert!(
        matches!(&err, ZipError::InvalidSymlink { entry, .. } if entry == "x"),
        "{err:?}"
    );
    // Passing through a symlink without `..` afterwards is fine.
    let ok = zip_of(&[
        E::File("real/f", b"x", 0o644),
        E::Link("alias", "real"),
        E::Link("g", "alias/f"),
    ]);
    assert!(validate_zip(&ok, &Limits::LAMBDA).unwrap().file_exists("g"));
}

#[test]
fn extraction_preserves_permission_bits() {
    let bytes = zip_of(&[
        E::File("bootstrap", b"#!/bin/sh\n", 0o755),
        E::File("ro.txt", b"r", 0o444),
        E::Raw("suid", b"s", 0o104_755 << 16),
        E::Raw("nomode.txt", b"n", 0),
        E::Dir("private/", 0o700),
        E::Dir("readonly/", 0o555),
        E::File("readonly/inner.txt", b"i", 0o640),
        E::Raw("dosdir/", b"", 0),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");
    let summary = extract(&bytes, &dest, &Limits::LAMBDA).unwrap();
    assert_eq!(summary.bootstrap(), Bootstrap::Executable);
    assert_eq!(mode_of(&dest.join("bootstrap")), 0o755);
    assert_eq!(mode_of(&dest.join("ro.txt")), 0o444);
    assert_eq!(mode_of(&dest.join("suid")), 0o755);
    assert_eq!(mode_of(&dest.join("nomode.txt")), 0o644);
    assert_eq!(mode_of(&dest.join("private")), 0o700);
    // Owner keeps rwx on directories so the tree can be deleted.
    assert_eq!(mode_of(&dest.join("readonly")), 0o755);
    assert_eq!(mode_of(&dest.join("readonly/inner.txt")), 0o640);
    assert_eq!(mode_of(&dest.join("dosdir")), 0o755);
    assert_eq!(mode_of(&dest), 0o755);
    assert_eq!(fs::read(dest.join("readonly/inner.txt")).unwrap(), b"i");
    fs::remove_dir_all(&dest).unwrap();
}

#[test]
fn extract_refuses_existing_destination_and_leaves_nothing_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pkg");
    fs::create_dir(&dest).unwrap();
    let err = extract(&package(), &dest, &Limits::LAMBDA).unwrap_err();
    assert!(
        matches!(err, StoreError::DestinationExists { .. }),
        "{err:?}"
    );
    fs::remove_dir(&dest).unwrap();

    let evil = zip_of(&[
        E::File("ok.txt", b"x", 0o644),
        E::File("../evil", b"x", 0o644),
    ]);
    assert!(extract(&evil, &dest, &Limits::LAMBDA).is_err());
    assert_no_leftovers(dir.path());
    assert!(!dir.path().parent().unwrap().join("evil").exists());
}

#[test]
fn store_put_is_idempotent_and_content_addressed() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let bytes = package();
    let d1 = store.put(&bytes).unwrap();
    let d2 = store.put(&bytes).unwrap();
    assert_eq!(d1, d2);
    assert_eq!(d1, Digest::of(&bytes));
    assert_eq!(d1.size(), bytes.len() as u64);
    assert_eq!(
        store.blob_path(&d1),
        dir.path().join("sha256").join(d1.hex())
    );
    assert_eq!(mode_of(&store.blob_path(&d1)), 0o444);
    assert_eq!(store.get(&d1).unwrap(), bytes);
    assert!(store.exists(&d1).unwrap());
    assert_eq!(store.list().unwrap(), vec![d1]);

    let hello = store.put(b"hello").unwrap();
    assert_eq!(
        hello.base64(),
        "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="
    );
    assert_eq!(
        hello.hex(),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(store.list().unwrap().len(), 2);

    // Reopening sees the same content.
    let again = ArtifactStore::open(dir.path()).unwrap();
    assert_eq!(again.get(&hello).unwrap(), b"hello");
}

#[test]
fn store_get_reports_missing_and_truncated_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let missing = Digest::of(b"never stored");
    assert!(matches!(
        store.get(&missing),
        Err(StoreError::NotFound { .. })
    ));
    assert!(!store.exists(&missing).unwrap());
    assert!(matches!(
        store.ensure_extracted(&missing),
        Err(StoreError::NotFound { .. })
    ));

    let d = store.put(b"hello").unwrap();
    let wrong_size = Digest::new(*d.sha256(), 4);
    assert!(matches!(
        store.get(&wrong_size),
        Err(StoreError::Corrupt {
            expected: 4,
            actual: 5,
            ..
        })
    ));
}

#[test]
fn concurrent_puts_of_the_same_bytes_are_safe() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let bytes = package();
    let digests: Vec<Digest> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| store.put(&bytes).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(digests.iter().all(|d| *d == digests[0]));
    let names: Vec<_> = fs::read_dir(dir.path().join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(digests[0].hex())]);
    assert_eq!(store.get(&digests[0]).unwrap(), bytes);
}

#[test]
fn ensure_extracted_extracts_once_and_reuses_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let d = store.put(&package()).unwrap();

    let paths: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| store.ensure_extracted(&d).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let path = &paths[0];
    assert!(paths.iter().all(|p| p == path));
    assert_eq!(*path, dir.path().join("extracted").join(d.hex()));
    assert_eq!(mode_of(&path.join("bootstrap")), 0o755);
    assert_eq!(
        fs::read(path.join("lib/util/deep/data.bin")).unwrap(),
        [7u8; 3000]
    );

    // A marker survives the next call: the tree is reused, not rebuilt.
    fs::write(path.join("marker"), b"m").unwrap();
    assert_eq!(store.ensure_extracted(&d).unwrap(), *path);
    assert!(path.join("marker").exists());
    // No temporaries from the losing extractions remain.
    let extracted: Vec<_> = fs::read_dir(dir.path().join("extracted"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(extracted, vec![std::ffi::OsString::from(d.hex())]);
}

#[test]
fn ensure_extracted_rejects_bad_packages_and_respects_store_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open_with_limits(dir.path(), small(1000)).unwrap();
    let evil = store
        .put(&zip_of(&[E::File("../evil", b"x", 0o644)]))
        .unwrap();
    let err = store.ensure_extracted(&evil).unwrap_err();
    assert!(
        matches!(err.as_package_error(), Some(ZipError::PathEscapes { .. })),
        "{err:?}"
    );
    let big = store
        .put(&zip_of(&[E::File("big", &[0u8; 5000], 0o644)]))
        .unwrap();
    let err = store.ensure_extracted(&big).unwrap_err();
    assert!(
        matches!(
            err.as_package_error(),
            Some(ZipError::TooLarge { limit: 1000, .. })
        ),
        "{err:?}"
    );
    assert_no_leftovers(&dir.path().join("extracted"));
}

#[test]
fn delete_removes_blob_and_extracted_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    let d = store
        .put(&zip_of(&[
            E::Dir("readonly/", 0o555),
            E::File("readonly/f", b"x", 0o444),
        ]))
        .unwrap();
    let tree = store.ensure_extracted(&d).unwrap();
    assert!(tree.join("readonly/f").exists());
    assert!(store.delete(&d).unwrap());
    assert!(!store.exists(&d).unwrap());
    assert!(!tree.exists());
    assert!(matches!(store.get(&d), Err(StoreError::NotFound { .. })));
    assert!(!store.delete(&d).unwrap());
    assert_no_leftovers(&dir.path().join("extracted"));
    assert_no_leftovers(&dir.path().join("sha256"));
}
