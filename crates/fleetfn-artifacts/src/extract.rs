//! Safe extraction of a validated package into a fresh directory.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{Cursor, ErrorKind, Read, Seek};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use tempfile::TempDir;

use crate::error::StoreError;
use crate::package::{self, Copier, CopyError, Limits, ZipSummary};

/// Prefix of temporary files and directories inside the store (never a hex digest).
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// Extracts the zip in `bytes` into `dest`, which must not exist yet.
///
/// The package is checked exactly as [`validate_zip`](crate::validate_zip) does while it is
/// being written out (names, symlinks, entry count, declared size, and the bytes actually
/// decompressed, capped at `limits.max_unzipped_bytes`). The tree is built in a temporary
/// directory next to `dest` and renamed into place, so `dest` either does not exist or holds
/// the complete package; on error nothing is left behind.
///
/// Permission bits come from the zip (`bootstrap` stays executable); files without a mode get
/// `0o644`, directories `0o755`; setuid, setgid and sticky bits are never set; directories
/// always keep `u+rwx` so the tree can be deleted. Symlinks are created as stored (they were
/// checked to stay inside the tree). `dest` itself gets `0o755`.
pub fn extract(bytes: &[u8], dest: &Path, limits: &Limits) -> Result<ZipSummary, StoreError> {
    extract_from(Cursor::new(bytes), dest, limits)
}

pub(crate) fn extract_from<R: Read + Seek>(
    reader: R,
    dest: &Path,
    limits: &Limits,
) -> Result<ZipSummary, StoreError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(StoreError::DestinationExists {
            path: dest.to_owned(),
        });
    }
    let (tmp, summary) = extract_to_temp(reader, dest, limits)?;
    if let Err(e) = fs::rename(tmp.path(), dest) {
        // `tmp` is removed on drop.
        return Err(if fs::symlink_metadata(dest).is_ok() {
            StoreError::DestinationExists {
                path: dest.to_owned(),
            }
        } else {
            StoreError::io("rename extracted package to", dest)(e)
        });
    }
    // The temporary path no longer exists; make sure dropping `tmp` never touches it.
    let _ = tmp.keep();
    Ok(summary)
}

fn extract_to_temp<R: Read + Seek>(
    reader: R,
    dest: &Path,
    limits: &Limits,
) -> Result<(TempDir, ZipSummary), StoreError> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut archive = package::open_archive(reader, limits)?;
    let plan = package::plan(&mut archive, limits)?;

    let tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempdir_in(parent)
        .map_err(StoreError::io("create a temporary directory in", parent))?;
    let root = tmp.path();

    // Parents sort before children, so plain `create` suffices. Final modes are applied last,
    // so a read-only directory can still be filled.
    for (path, _) in plan.dirs() {
        let target = root.join(path);
        DirBuilder::new()
            .mode(0o700)
            .create(&target)
            .map_err(StoreError::io("create directory", target))?;
    }

    // Every parent of a file is a real directory created above (paths below symlinks were
    // rejected, and symlinks are created only after all files), and `create_new` refuses to
    // follow or replace anything already there.
    let mut copier = Copier::new(limits.max_unzipped_bytes);
    for file in &plan.files {
        let target = root.join(&file.path);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .map_err(StoreError::io("create file", &target))?;
        let mut entry =
            archive
                .by_index(file.index)
                .map_err(|e| crate::ZipError::CorruptEntry {
                    entry: file.display.clone(),
                    detail: e.to_string(),
                })?;
        copier
            .copy(&mut entry, &mut out, file.declared, &file.display)
            .map_err(|e| match e {
                CopyError::Package(e) => StoreError::Package(e),
                CopyError::Write(e) => StoreError::io("write file", &target)(e),
            })?;
        set_mode(&out, file.mode, &target)?;
    }

    for (path, target) in plan.symlinks() {
        let link = root.join(path);
        std::os::unix::fs::symlink(target, &link)
            .map_err(StoreError::io("create symlink", link))?;
    }

    for (path, entry) in plan.dirs().rev() {
        let target = root.join(path);
        fs::set_permissions(&target, Permissions::from_mode(entry.mode))
            .map_err(StoreError::io("set permissions of", target))?;
    }
    fs::set_permissions(root, Permissions::from_mode(0o755))
        .map_err(StoreError::io("set permissions of", root))?;

    Ok((tmp, plan.summary))
}

fn set_mode(file: &File, mode: u32, path: &Path) -> Result<(), StoreError> {
    debug_assert_eq!(mode & !0o777, 0);
    file.set_permissions(Permissions::from_mode(mode & 0o777))
        .map_err(StoreError::io("set permissions of", path))
}

/// Removes a directory tree, treating "already gone" as success.
pub(crate) fn remove_tree(path: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(StoreError::io("remove directory", path)(e))
        }
        _ => Ok(()),
    }
}
