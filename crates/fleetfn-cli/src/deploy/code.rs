//! Function code packages: a directory zipped deterministically (sorted entries, fixed times, only
//! the executable bit of the mode kept) so the same tree always gives the same `CodeSha256`, a
//! `.zip` file taken as it is, and CloudFormation's inline `ZipFile` written as `index.py` or
//! `index.js` by runtime.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

/// A zip ready to upload, and where it came from (for messages).
#[derive(Clone, PartialEq, Eq)]
pub struct CodePackage {
    pub zip: Vec<u8>,
    /// base64 of the SHA-256 of the zip, as Lambda's `CodeSha256`.
    pub sha256: String,
    pub source: String,
}

impl std::fmt::Debug for CodePackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodePackage")
            .field("bytes", &self.zip.len())
            .field("sha256", &self.sha256)
            .field("source", &self.source)
            .finish()
    }
}

impl CodePackage {
    pub fn from_zip(zip: Vec<u8>, source: String) -> Self {
        let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&zip));
        Self {
            zip,
            sha256,
            source,
        }
    }

    /// The zip as base64, for the API's `ZipFile`.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.zip)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("zipping {}: {source}", .path.display())]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("{}: not a zip file (give a directory, or a .zip)", .0.display())]
    NotZip(PathBuf),
    #[error(
        "inline code (Code.ZipFile) needs a python or nodejs Runtime (CloudFormation writes it as \
         index.py or index.js); Runtime is {0:?}"
    )]
    InlineRuntime(Option<String>),
}

fn options(executable: bool) -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default()
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(if executable { 0o755 } else { 0o644 })
}

/// CloudFormation's inline code: the text as `index.py` (python runtimes) or `index.js` (nodejs).
pub fn inline(text: &str, runtime: Option<&str>) -> Result<CodePackage, CodeError> {
    let name = match runtime {
        Some(r) if r.starts_with("python") => "index.py",
        Some(r) if r.starts_with("nodejs") => "index.js",
        other => return Err(CodeError::InlineRuntime(other.map(str::to_owned))),
    };
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    let zerr = |source| CodeError::Zip {
        path: PathBuf::from(name),
        source,
    };
    w.start_file(name, options(false)).map_err(zerr)?;
    w.write_all(text.as_bytes())
        .map_err(|source| CodeError::Io {
            path: PathBuf::from(name),
            source,
        })?;
    w.finish().map_err(zerr)?;
    Ok(CodePackage::from_zip(
        buf.into_inner(),
        format!("inline code ({name})"),
    ))
}

/// A local path: a directory is zipped, a file must be a zip and is taken as it is.
pub fn from_path(path: &Path) -> Result<CodePackage, CodeError> {
    let io = |source| CodeError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return zip_dir(path);
    }
    let bytes = std::fs::read(path).map_err(io)?;
    if !bytes.starts_with(b"PK") {
        return Err(CodeError::NotZip(path.to_owned()));
    }
    Ok(CodePackage::from_zip(bytes, path.display().to_string()))
}

/// Zips a directory's files (symbolic links followed), sorted by path, with fixed times.
pub fn zip_dir(dir: &Path) -> Result<CodePackage, CodeError> {
    let mut files = Vec::new();
    collect(dir, Path::new(""), &mut files)?;
    files.sort();
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    for rel in &files {
        let full = dir.join(rel);
        let io = |source| CodeError::Io {
            path: full.clone(),
            source,
        };
        let meta = std::fs::metadata(&full).map_err(io)?;
        let executable = {
            use std::os::unix::fs::PermissionsExt;
            meta.permissions().mode() & 0o111 != 0
        };
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        w.start_file(name, options(executable))
            .map_err(|source| CodeError::Zip {
                path: full.clone(),
                source,
            })?;
        let bytes = std::fs::read(&full).map_err(io)?;
        w.write_all(&bytes).map_err(io)?;
    }
    w.finish().map_err(|source| CodeError::Zip {
        path: dir.to_owned(),
        source,
    })?;
    Ok(CodePackage::from_zip(
        buf.into_inner(),
        format!("{} (zipped)", dir.display()),
    ))
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), CodeError> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|source| CodeError::Io {
        path: dir.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| CodeError::Io {
            path: dir.clone(),
            source,
        })?;
        let child = rel.join(entry.file_name());
        let full = root.join(&child);
        let meta = std::fs::metadata(&full).map_err(|source| CodeError::Io {
            path: full.clone(),
            source,
        })?;
        if meta.is_dir() {
            collect(root, &child, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pkg: &CodePackage) -> Vec<String> {
        let a = zip::ZipArchive::new(std::io::Cursor::new(pkg.zip.clone())).unwrap();
        a.file_names().map(|n| n.unwrap().into_owned()).collect()
    }

    #[test]
    fn a_directory_zips_the_same_twice_and_changes_with_its_content() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("lib")).unwrap();
        std::fs::write(d.path().join("app.py"), "def handler(e, c): return 1\n").unwrap();
        std::fs::write(d.path().join("lib/util.py"), "X = 1\n").unwrap();
        let a = zip_dir(d.path()).unwrap();
        let b = zip_dir(d.path()).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(names(&a), ["app.py", "lib/util.py"]);
        std::fs::write(d.path().join("lib/util.py"), "X = 2\n").unwrap();
        assert_ne!(zip_dir(d.path()).unwrap().sha256, a.sha256);
        // A zip file is taken as it is.
        std::fs::write(d.path().join("code.zip"), &a.zip).unwrap();
        assert_eq!(
            from_path(&d.path().join("code.zip")).unwrap().sha256,
            a.sha256
        );
        assert!(matches!(
            from_path(&d.path().join("app.py")),
            Err(CodeError::NotZip(_))
        ));
    }

    #[test]
    fn inline_code_is_index_by_runtime() {
        assert_eq!(
            names(&inline("x", Some("python3.13")).unwrap()),
            ["index.py"]
        );
        assert_eq!(
            names(&inline("x", Some("nodejs22.x")).unwrap()),
            ["index.js"]
        );
        assert!(matches!(
            inline("x", Some("java21")),
            Err(CodeError::InlineRuntime(_))
        ));
        assert_eq!(
            inline("x", Some("python3.13")).unwrap().sha256,
            inline("x", Some("python3.12")).unwrap().sha256
        );
    }
}
