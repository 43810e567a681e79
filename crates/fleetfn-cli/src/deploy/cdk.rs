//! CDK asset manifests (`cdk.out/<Stack>.assets.json`): a synthesized template's function code is
//! an S3 reference (`S3Key: <hash>.zip`) to an asset the CDK staged in `cdk.out`; the manifest says
//! which directory or file that object is made from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    files: BTreeMap<String, FileAsset>,
}

#[derive(Debug, Deserialize)]
struct FileAsset {
    source: Source,
    #[serde(default)]
    destinations: BTreeMap<String, Destination>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Source {
    path: Option<String>,
    packaging: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Destination {
    object_key: String,
}

/// An asset found for an object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// The directory (packaging `zip`) or file (`file`) in cdk.out.
    pub path: PathBuf,
    /// The directory is to be zipped.
    pub zip_directory: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CdkError {
    #[error("reading {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a CDK asset manifest: {source}", .path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The asset manifests next to `template`: `<stem>.assets.json` for `<stem>.template.json` first,
/// then any other `*.assets.json` in the same directory (sorted).
pub fn manifests_for(template: &Path) -> Vec<PathBuf> {
    let dir = template.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut out = Vec::new();
    let name = template
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(stem) = name.strip_suffix(".template.json") {
        let p = dir.join(format!("{stem}.assets.json"));
        if p.is_file() {
            out.push(p);
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut others: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".assets.json"))
                    && !out.contains(p)
            })
            .collect();
        others.sort();
        out.extend(others);
    }
    out
}

/// Finds the asset whose destination object key is `object_key` in the given manifests.
pub fn find_asset(manifests: &[PathBuf], object_key: &str) -> Result<Option<Asset>, CdkError> {
    for path in manifests {
        let text = std::fs::read_to_string(path).map_err(|source| CdkError::Read {
            path: path.clone(),
            source,
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|source| CdkError::Parse {
            path: path.clone(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for (hash, asset) in &m.files {
            let matches = asset
                .destinations
                .values()
                .any(|d| d.object_key == object_key)
                || object_key.starts_with(hash.as_str()) && asset.destinations.is_empty();
            if !matches {
                continue;
            }
            let Some(src) = &asset.source.path else {
                continue;
            };
            return Ok(Some(Asset {
                path: dir.join(src),
                zip_directory: asset.source.packaging.as_deref() != Some("file"),
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_key_finds_its_asset_directory() {
        let d = tempfile::tempdir().unwrap();
        let manifest = serde_json::json!({
            "version": "36.0.0",
            "files": {
                "abc123": {
                    "source": {"path": "asset.abc123", "packaging": "zip"},
                    "destinations": {"current_account-current_region": {
                        "bucketName": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}",
                        "objectKey": "abc123.zip"
                    }}
                },
                "def456": {
                    "source": {"path": "Stack.template.json", "packaging": "file"},
                    "destinations": {"d": {"bucketName": "b", "objectKey": "def456.json"}}
                }
            },
            "dockerImages": {}
        });
        std::fs::write(d.path().join("Stack.assets.json"), manifest.to_string()).unwrap();
        std::fs::write(d.path().join("Stack.template.json"), "{}").unwrap();
        let ms = manifests_for(&d.path().join("Stack.template.json"));
        assert_eq!(ms, [d.path().join("Stack.assets.json")]);
        assert_eq!(
            find_asset(&ms, "abc123.zip").unwrap(),
            Some(Asset {
                path: d.path().join("asset.abc123"),
                zip_directory: true
            })
        );
        assert!(
            !find_asset(&ms, "def456.json")
                .unwrap()
                .unwrap()
                .zip_directory
        );
        assert_eq!(find_asset(&ms, "nope.zip").unwrap(), None);
    }
}
