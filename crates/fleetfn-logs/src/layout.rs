//! Paths and names: `<logs dir>/<function>/<version>/<env id>.<seq>.jsonl`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Per version: what pruning deleted ([`crate::DropCounts`]).
pub const DROPPED_FILE: &str = "dropped.json";
/// Per version: serializes updates of [`DROPPED_FILE`] (held only while rewriting it).
pub(crate) const DROPPED_LOCK: &str = ".dropped.lock";
const SEGMENT_SUFFIX: &str = ".jsonl";

/// A path component we are willing to create or read: function names, versions
/// (`1`, `$LATEST.PUBLISHED`), environment ids; never `.`, `..` or anything with a slash.
pub fn is_safe_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'$'))
}

#[derive(Debug, thiserror::Error)]
#[error("{what} {value:?} cannot name a log directory or file")]
pub struct LayoutError {
    pub what: &'static str,
    pub value: String,
}

fn checked<'a>(what: &'static str, value: &'a str) -> Result<&'a str, LayoutError> {
    if is_safe_component(value) {
        Ok(value)
    } else {
        Err(LayoutError {
            what,
            value: value.to_owned(),
        })
    }
}

/// `<logs dir>/<function>`.
pub fn function_dir(logs_dir: &Path, function: &str) -> Result<PathBuf, LayoutError> {
    Ok(logs_dir.join(checked("function name", function)?))
}

/// `<logs dir>/<function>/<version>`.
pub fn version_dir(logs_dir: &Path, function: &str, version: &str) -> Result<PathBuf, LayoutError> {
    Ok(function_dir(logs_dir, function)?.join(checked("version", version)?))
}

/// `<env id>.<seq>.jsonl`, the sequence number zero-padded so names sort in order.
pub fn segment_name(env_id: &str, seq: u64) -> String {
    format!("{env_id}.{seq:06}{SEGMENT_SUFFIX}")
}

/// The environment id and sequence number of a segment file name.
pub fn parse_segment_name(name: &str) -> Option<(&str, u64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (env, seq) = stem.rsplit_once('.')?;
    if !is_safe_component(env) || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((env, seq.parse().ok()?))
}

/// One segment file as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    pub env_id: String,
    pub seq: u64,
    pub size: u64,
    pub modified: SystemTime,
}

/// The segments in a version directory (none when it does not exist). Files that vanish while
/// listing are left out.
pub fn list_segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some((env_id, seq)) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        let meta = match entry.metadata() {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.push(Segment {
            path: entry.path(),
            env_id: env_id.to_owned(),
            seq,
            size: meta.len(),
            modified: meta.modified()?,
        });
    }
    out.sort_by(|a, b| a.env_id.cmp(&b.env_id).then(a.seq.cmp(&b.seq)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name("e-1.a", 7), "e-1.a.000007.jsonl");
        assert_eq!(parse_segment_name("e-1.a.000007.jsonl"), Some(("e-1.a", 7)));
        assert_eq!(
            parse_segment_name("e.1234567.jsonl"),
            Some(("e", 1_234_567))
        );
        for bad in [
            "e.jsonl",
            "e.x.jsonl",
            "e.1.json",
            ".1.jsonl",
            "dropped.json",
            "../x.1.jsonl",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn components_are_checked() {
        let root = Path::new("/logs");
        assert_eq!(
            version_dir(root, "fn", "$LATEST.PUBLISHED").unwrap(),
            Path::new("/logs/fn/$LATEST.PUBLISHED")
        );
        for bad in ["", ".", "..", "a/b", "a b", "\u{e9}"] {
            assert!(version_dir(root, "fn", bad).is_err(), "{bad:?}");
            assert!(function_dir(root, bad).is_err(), "{bad:?}");
        }
    }
}
