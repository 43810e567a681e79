//! [`ArtifactStore`]: content-addressed blobs plus a cache of extracted trees.

use std::fs::{self, File, Permissions};
use std::io::{BufReader, ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::extract::{TMP_PREFIX, extract_from, remove_tree};
use crate::package::Limits;

const BLOBS_DIR: &str = "sha256";
const EXTRACTED_DIR: &str = "extracted";
/// Temporaries older than this are leftovers of a crash and are removed by `open`.
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

/// Content-addressed store of code packages under one directory:
///
/// ```text
/// <root>/sha256/<hex>          the zip, read-only (0444), named by its SHA-256
/// <root>/extracted/<hex>/      its extracted tree (a cache; see `ensure_extracted`)
/// <root>/{sha256,extracted}/.tmp-*   in-flight writes, renamed into place when complete
/// ```
///
/// All methods are blocking filesystem I/O; from async code call them via
/// `tokio::task::spawn_blocking` (the store is cheap to clone). Several handles, threads or
/// processes may share one directory: every publish is an atomic rename.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    root: PathBuf,
    blobs: PathBuf,
    extracted: PathBuf,
    limits: Limits,
}

impl ArtifactStore {
    /// Opens (creating if needed) a store at `dir` with Lambda's [`Limits`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_limits(dir, Limits::default())
    }

    /// Opens a store whose [`ensure_extracted`](Self::ensure_extracted) applies `limits`.
    /// Removes temporaries left over by a crash (older than an hour).
    pub fn open_with_limits(dir: impl AsRef<Path>, limits: Limits) -> Result<Self, StoreError> {
        let root = dir.as_ref().to_owned();
        let store = Self {
            blobs: root.join(BLOBS_DIR),
            extracted: root.join(EXTRACTED_DIR),
            root,
            limits,
        };
        for dir in [&store.blobs, &store.extracted] {
            fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
            remove_stale_temporaries(dir)?;
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The limits applied by [`ensure_extracted`](Self::ensure_extracted).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Stores `bytes` and returns their digest (`CodeSha256` / `CodeSize`).
    ///
    /// Idempotent: if the blob is already present it is not rewritten. Otherwise the bytes go
    /// to a temporary file in the same directory, are fsynced, and are renamed to
    /// `sha256/<hex>` (then the directory is fsynced), so a blob is never visible half
    /// written. Concurrent puts of the same bytes each rename identical content over the same
    /// name, which is safe. Does not validate the zip: call
    /// [`validate_zip`](crate::validate_zip) first.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        self.put_digested(bytes, Digest::of(bytes))
    }

    /// [`put`](Self::put) for bytes whose digest the caller has just computed with
    /// [`Digest::of`] (a 50 MB package is hashed once, not twice).
    pub fn put_digested(&self, bytes: &[u8], digest: Digest) -> Result<Digest, StoreError> {
        debug_assert_eq!(digest.size(), bytes.len() as u64);
        let path = self.blob_path(&digest);
        if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == digest.size()) {
            return Ok(digest);
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(&self.blobs)
            .map_err(StoreError::io("create a temporary file in", &self.blobs))?;
        let tmp_path = tmp.path().to_owned();
        tmp.write_all(bytes)
            .map_err(StoreError::io("write", &tmp_path))?;
        tmp.as_file()
            .set_permissions(Permissions::from_mode(0o444))
            .map_err(StoreError::io("set permissions of", &tmp_path))?;
        tmp.as_file()
            .sync_all()
            .map_err(StoreError::io("sync", &tmp_path))?;
        tmp.persist(&path)
            .map_err(|e| StoreError::io("rename temporary file to", &path)(e.error))?;
        sync_dir(&self.blobs)?;
        Ok(digest)
    }

    /// The stored zip's bytes. Fails with [`StoreError::NotFound`] if absent and
    /// [`StoreError::Corrupt`] if its length is not `digest.size()`.
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(|e| self.not_found_or(digest, "read", &path, e))?;
        if bytes.len() as u64 != digest.size() {
            return Err(StoreError::Corrupt {
                hex: digest.hex(),
                expected: digest.size(),
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Where the blob for `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Where the extracted tree for `digest` lives (whether or not it exists).
    pub fn extracted_path(&self, digest: &Digest) -> PathBuf {
        self.extracted.join(digest.hex())
    }

    /// Whether the blob for `digest` is stored.
    pub fn exists(&self, digest: &Digest) -> Result<bool, StoreError> {
        let path = self.blob_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("stat", path)(e)),
        }
    }

    /// Removes the blob and its extracted tree; returns whether the blob existed.
    ///
    /// The tree is first renamed aside, so [`ensure_extracted`](Self::ensure_extracted) never
    /// sees a half-deleted tree. Callers (GC) must make sure nothing still uses the package.
    pub fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        let tree = self.extracted_path(digest);
        if fs::symlink_metadata(&tree).is_ok() {
            // Dropping `doomed` removes it and the tree moved into it.
            let doomed = tempfile::Builder::new()
                .prefix(TMP_PREFIX)
                .tempdir_in(&self.extracted)
                .map_err(StoreError::io(
                    "create a temporary directory in",
                    &self.extracted,
                ))?;
            match fs::rename(&tree, doomed.path().join(digest.hex())) {
                Ok(()) => remove_tree(doomed.path())?,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("rename", tree)(e)),
            }
        }
        let path = self.blob_path(digest);
        let existed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(StoreError::io("remove", path)(e)),
        };
        sync_dir(&self.blobs)?;
        Ok(existed)
    }

    /// Digests of all stored blobs (for garbage collection), sorted.
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(&self.blobs).map_err(StoreError::io("list directory", &self.blobs))?;
        for entry in entries {
            let entry = entry.map_err(StoreError::io("list directory", &self.blobs))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 64 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Deleted while listing.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("stat", entry.path())(e)),
            };
            if let Ok(digest) = Digest::from_hex(name, meta.len()) {
                out.push(digest);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The extracted tree of the stored package `digest`, extracting it first if needed.
    ///
    /// Extraction uses [`extract`](crate::extract) with the store's limits (temporary
    /// directory, then rename), so `extracted/<hex>/` is either absent or complete; an
    /// existing tree is reused as is. Concurrent callers may both extract; one rename wins
    /// and the other's copy is discarded.
    ///
    /// Durability: extracted files are not fsynced one by one (that would make cold starts
    /// of large packages slow). The tree is a cache derived from the fsynced blob; after a
    /// power loss, delete `extracted/` (or the affected tree) to have it rebuilt.
    pub fn ensure_extracted(&self, digest: &Digest) -> Result<PathBuf, StoreError> {
        let dest = self.extracted_path(digest);
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
            return Ok(dest);
        }
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| self.not_found_or(digest, "open", &path, e))?;
        let len = file
            .metadata()
            .map_err(StoreError::io("stat", &path))?
            .len();
        if len != digest.size() {
            return Err(StoreError::Corrupt {
                hex: digest.hex(),
                expected: digest.size(),
                actual: len,
            });
        }
        match extract_from(BufReader::new(file), &dest, &self.limits) {
            Ok(_) => Ok(dest),
            // Another caller finished first.
            Err(StoreError::DestinationExists { .. })
                if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) =>
            {
                Ok(dest)
            }
            Err(e) => Err(e),
        }
    }

    fn not_found_or(
        &self,
        digest: &Digest,
        op: &'static str,
        path: &Path,
        e: std::io::Error,
    ) -> StoreError {
        if e.kind() == ErrorKind::NotFound {
            StoreError::NotFound { hex: digest.hex() }
        } else {
            StoreError::io(op, path)(e)
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync directory", dir))
}

/// Best effort: removes `.tmp-*` entries older than [`STALE_TMP_AGE`]. Younger ones may
/// belong to a put or extraction running right now in another handle or process.
fn remove_stale_temporaries(dir: &Path) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(StoreError::io("list directory", dir))?;
    let now = SystemTime::now();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < STALE_TMP_AGE {
            continue;
        }
        let path = entry.path();
        if meta.is_dir() {
            let _ = remove_tree(&path);
        } else {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(())
}
