//! A function's layers merged into the directory its environments see as `/opt`.
//!
//! Each layer is a zip in the artifact store, fetched like code ([`ensure_package`]) and
//! extracted by the store's own safe extraction (its names, symlinks and size limits). The
//! extracted trees are then merged, in the function's order, into one directory per *layer
//! set* (the ordered list of digests): a later layer's file replaces an earlier one's, as
//! Lambda's extraction into `/opt` does; a directory meets a file or symlink of the same name
//! by replacing it. Files are hard links to the store's extracted trees (copies across
//! filesystems), so a merged set costs directory entries, not bytes. Environments of the same
//! layer set share the directory while any of them lives ([`LayerCache`]); the last one to go
//! removes it.
//!
//! The sandbox binds the directory read-only at `/opt`; without a sandbox the runtime's paths
//! point at it on the host.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use fleetfn_artifacts::{ArtifactStore, Digest, StoreError};
use fleetfn_proto::LayerPackage;
use parking_lot::Mutex;

use crate::packages::{PackageSource, ensure_package};

/// Lambda's limit of external extensions in one environment.
pub const MAX_EXTENSIONS: usize = 10;

/// Where external extensions live inside a layer set (`/opt/extensions`).
pub const EXTENSIONS_DIR: &str = "extensions";

/// Why a function's layers could not be made into its `/opt`.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The request names a layer package digest that cannot be one.
    #[error("layer {arn}: bad package digest: {detail}")]
    Digest { arn: String, detail: String },
    /// The package is neither in the artifact store nor could be fetched.
    #[error("cannot get the package of layer {arn}: {detail}")]
    Fetch { arn: String, detail: String },
    /// The store could not extract the package.
    #[error("cannot unpack layer {arn}: {source}")]
    Extract {
        arn: String,
        #[source]
        source: StoreError,
    },
    /// Merging the extracted layers failed (the agent's own disk).
    #[error("merging the layers into {}: {source}", path.display())]
    Merge {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LayerError {
    /// The `StateReasonCode` of a publish that fails with this error: the package's fault is
    /// `InvalidZipFileException` (as for code), the agent's own is `InternalError`.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Digest { .. } | Self::Fetch { .. } => "InvalidZipFileException",
            Self::Extract { source, .. } if source.as_package_error().is_some() => {
                "InvalidZipFileException"
            }
            Self::Extract { .. } | Self::Merge { .. } => "InternalError",
        }
    }
}

/// One merged layer set on disk; removed when the last environment using it is gone.
#[derive(Debug)]
pub struct LayerDir {
    path: PathBuf,
}

impl LayerDir {
    /// The merged directory (the environment's `/opt`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LayerDir {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            if let Err(e) = remove_tree(&path) {
                tracing::warn!(path = %path.display(), error = %e, "removing a merged layer set failed");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// The merged layer sets of one agent, under `root` (emptied at start: sets of a previous run
/// belong to environments that no longer exist).
#[derive(Debug)]
pub struct LayerCache {
    root: PathBuf,
    /// Per layer-set key: the live set, behind a lock that serializes building it.
    sets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Weak<LayerDir>>>>>,
}

impl LayerCache {
    /// A cache in `root`, whose previous contents are removed (blocking).
    pub fn new(root: PathBuf) -> Self {
        if let Err(e) = remove_tree(&root) {
            tracing::warn!(path = %root.display(), error = %e, "clearing old merged layer sets failed");
        }
        Self {
            root,
            sets: Mutex::new(HashMap::new()),
        }
    }

    /// The merged `/opt` of `layers` (in order): shared with live environments of the same
    /// layer set, else fetched (when missing), extracted and merged now, off the runtime's
    /// workers. `None` for a function without layers.
    pub async fn prepare(
        &self,
        artifacts: &ArtifactStore,
        layers: &[LayerPackage],
        source: Option<&Arc<dyn PackageSource>>,
    ) -> Result<Option<Arc<LayerDir>>, LayerError> {
        if layers.is_empty() {
            return Ok(None);
        }
        let mut digests = Vec::with_capacity(layers.len());
        for l in layers {
            let d = Digest::from_hex(&l.sha256_hex, l.size).map_err(|e| LayerError::Digest {
                arn: l.arn.clone(),
                detail: e.to_string(),
            })?;
            digests.push(d);
        }
        let key = set_key(&digests);
        let slot = {
            let mut sets = self.sets.lock();
            // Forget sets nobody uses or builds.
            sets.retain(|_, s| {
                Arc::strong_count(s) > 1 || s.try_lock().map_or(true, |w| w.strong_count() > 0)
            });
            Arc::clone(sets.entry(key.clone()).or_default())
        };
        let mut live = slot.lock().await;
        if let Some(dir) = live.upgrade() {
            return Ok(Some(dir));
        }
        for (l, d) in layers.iter().zip(&digests) {
            ensure_package(artifacts, d, source)
                .await
                .map_err(|detail| LayerError::Fetch {
                    arn: l.arn.clone(),
                    detail,
                })?;
        }
        let (artifacts, root) = (artifacts.clone(), self.root.clone());
        let arns: Vec<String> = layers.iter().map(|l| l.arn.clone()).collect();
        let path =
            tokio::task::spawn_blocking(move || build(&artifacts, &root, &key, &arns, &digests))
                .await
                .map_err(|e| LayerError::Merge {
                    path: self.root.clone(),
                    source: io::Error::other(e),
                })??;
        let dir = Arc::new(LayerDir { path });
        *live = Arc::downgrade(&dir);
        Ok(Some(dir))
    }
}

/// The key of a layer set: sha256 of its ordered digests.
fn set_key(digests: &[Digest]) -> String {
    let joined: Vec<String> = digests.iter().map(Digest::hex).collect();
    Digest::of(joined.join(",").as_bytes()).hex()
}

/// Extracts each layer (the store's cache) and merges them into `<root>/<key>-<unique>` (built
/// aside, then renamed into place).
fn build(
    artifacts: &ArtifactStore,
    root: &Path,
    key: &str,
    arns: &[String],
    digests: &[Digest],
) -> Result<PathBuf, LayerError> {
    let merge_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LayerError::Merge { path, source }
    };
    let mut trees = Vec::with_capacity(digests.len());
    for (arn, d) in arns.iter().zip(digests) {
        let tree = artifacts
            .ensure_extracted(d)
            .map_err(|source| LayerError::Extract {
                arn: arn.clone(),
                source,
            })?;
        trees.push(tree);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(root)
        .map_err(merge_err(root))?;
    // A name of its own per build: a set dropped a moment ago may still be being removed.
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let dest = root.join(format!("{key}-{unique}"));
    let tmp = root.join(format!(".tmp-{unique}"));
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&tmp)
        .map_err(merge_err(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(merge_err(&tmp))?;
    for tree in &trees {
        if let Err(e) = merge_tree(tree, &tmp) {
            let _ = remove_tree(&tmp);
            return Err(LayerError::Merge {
                path: dest,
                source: e,
            });
        }
    }
    fs::rename(&tmp, &dest).map_err(merge_err(&dest))?;
    Ok(dest)
}

/// Merges the tree `src` into the directory `dest`: files and symlinks of `src` replace
/// whatever `dest` has at their path; directories are merged (a file or symlink in the way is
/// replaced by the directory). Never follows a symlink on either side. Files are hard-linked,
/// copied when that cannot be done (another filesystem).
pub(crate) fn merge_tree(src: &Path, dest: &Path) -> io::Result<()> {
    // An explicit stack: zip paths may nest deeply.
    let mut todo = vec![(src.to_path_buf(), dest.to_path_buf())];
    while let Some((from_dir, to_dir)) = todo.pop() {
        for entry in fs::read_dir(&from_dir)? {
            let entry = entry?;
            let from = entry.path();
            let to = to_dir.join(entry.file_name());
            let meta = fs::symlink_metadata(&from)?;
            let existing = fs::symlink_metadata(&to).ok();
            let ty = meta.file_type();
            if ty.is_dir() {
                match existing {
                    Some(m) if m.is_dir() => {}
                    Some(_) => {
                        fs::remove_file(&to)?;
                        make_dir(&to)?;
                    }
                    None => make_dir(&to)?,
                }
                todo.push((from, to));
                continue;
            }
            match existing {
                Some(m) if m.is_dir() => fs::remove_dir_all(&to)?,
                Some(_) => fs::remove_file(&to)?,
                None => {}
            }
            if ty.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
            } else if ty.is_file() && fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to)?;
            }
            // Nothing else comes out of a zip.
        }
    }
    Ok(())
}

/// A directory of the merged tree: readable and searchable by the environment's user.
fn make_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The external extensions of a merged `/opt`: the executable files in `extensions/` (a
/// symlink counts when it leads to one inside the set), sorted by name. Directories and files
/// without an execute bit are not extensions.
pub(crate) fn list_extensions(opt: &Path) -> io::Result<Vec<String>> {
    let dir = opt.join(EXTENSIONS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let path = entry.path();
        let inside = fs::canonicalize(&path)
            .ok()
            .zip(fs::canonicalize(opt).ok())
            .is_some_and(|(p, root)| p.starts_with(root));
        if !inside {
            continue;
        }
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(files: &[(&str, &[u8], u32)], links: &[(&str, &str)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data, mode) in files {
            let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        for (name, target) in links {
            w.add_symlink(*name, *target, zip::write::SimpleFileOptions::default())
                .unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn layer(store: &ArtifactStore, n: u32, bytes: &[u8]) -> LayerPackage {
        let d = store.put(bytes).unwrap();
        LayerPackage {
            arn: format!("arn:aws:lambda:us-east-1:123456789012:layer:l{n}:1"),
            sha256_hex: d.hex(),
            size: d.size(),
        }
    }

    #[tokio::test]
    async fn later_layers_replace_earlier_files_and_sets_are_shared_while_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
        let a = layer(
            &store,
            1,
            &zip_of(
                &[
                    ("bin/tool", b"one", 0o755),
                    ("python/mod.py", b"x = 1", 0o644),
                    ("lib/thing", b"a file", 0o644),
                    ("extensions/b-ext", b"#!/bin/sh", 0o755),
                    ("extensions/README", b"not one", 0o644),
                ],
                &[("extensions/link", "../bin/tool")],
            ),
        );
        let b = layer(
            &store,
            2,
            &zip_of(
                &[
                    ("bin/tool", b"two", 0o755),
                    ("lib/thing/inner.so", b"now a dir", 0o644),
                    ("extensions/a-ext", b"#!/bin/sh", 0o755),
                ],
                &[],
            ),
        );
        let cache = LayerCache::new(dir.path().join("layers"));
        let set = cache
            .prepare(&store, &[a.clone(), b.clone()], None)
            .await
            .unwrap()
            .unwrap();
        let opt = set.path().to_path_buf();
        assert_eq!(fs::read(opt.join("bin/tool")).unwrap(), b"two");
        assert_eq!(fs::read(opt.join("python/mod.py")).unwrap(), b"x = 1");
        assert_eq!(
            fs::read(opt.join("lib/thing/inner.so")).unwrap(),
            b"now a dir"
        );
        assert_eq!(
            fs::metadata(&opt).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(list_extensions(&opt).unwrap(), ["a-ext", "b-ext", "link"]);
        // The same set again: the same directory; the other order is another set.
        let again = cache
            .prepare(&store, &[a.clone(), b.clone()], None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.path(), opt);
        let reversed = cache
            .prepare(&store, &[b.clone(), a.clone()], None)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(reversed.path(), opt);
        assert_eq!(fs::read(reversed.path().join("bin/tool")).unwrap(), b"one");
        assert!(reversed.path().join("lib/thing").is_file());
        // Removed once the last user is gone.
        drop((set, again));
        for _ in 0..200 {
            if !opt.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!opt.exists());
        assert!(cache.prepare(&store, &[], None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_layer_that_is_missing_or_not_a_zip_fails_with_its_arn() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
        let cache = LayerCache::new(dir.path().join("layers"));
        let missing = LayerPackage {
            arn: "arn:aws:lambda:us-east-1:123456789012:layer:gone:3".into(),
            sha256_hex: Digest::of(b"nothing").hex(),
            size: 7,
        };
        let e = cache.prepare(&store, &[missing], None).await.unwrap_err();
        assert_eq!(e.reason_code(), "InvalidZipFileException");
        assert!(e.to_string().contains("layer:gone:3"), "{e}");
        let bad = layer(&store, 9, b"not a zip at all");
        let e = cache.prepare(&store, &[bad], None).await.unwrap_err();
        assert_eq!(e.reason_code(), "InvalidZipFileException", "{e}");
        assert!(e.to_string().contains("layer:l9:1"), "{e}");
    }

    #[test]
    fn a_directory_replaces_a_symlink_without_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two, out, outside) = (
            dir.path().join("one"),
            dir.path().join("two"),
            dir.path().join("out"),
            dir.path().join("outside"),
        );
        for d in [&one, &two.join("x"), &out, &outside] {
            fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&outside, one.join("x")).unwrap();
        fs::write(two.join("x/f"), b"f").unwrap();
        merge_tree(&one, &out).unwrap();
        assert!(fs::symlink_metadata(out.join("x")).unwrap().is_symlink());
        merge_tree(&two, &out).unwrap();
        assert!(fs::symlink_metadata(out.join("x")).unwrap().is_dir());
        assert_eq!(fs::read(out.join("x/f")).unwrap(), b"f");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }
}
