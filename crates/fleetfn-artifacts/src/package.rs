//! Zip package validation: [`validate_zip`], [`Limits`], [`ZipSummary`].
//!
//! Validation happens in two passes that [`extract`](crate::extract) shares:
//!
//! 1. **Plan** (central directory only, plus symlink targets): names, entry kinds, modes,
//!    declared sizes, path clashes, symlink containment.
//! 2. **Copy**: decompress every file, counting the bytes actually produced. An entry that
//!    produces more (or fewer) bytes than its header declares is corrupt, and the running
//!    total is capped at [`Limits::max_unzipped_bytes`] independently of any header, so a
//!    lying header cannot make us write more than the limit. [`validate_zip`] copies into
//!    [`io::sink`]; extraction copies into files.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Read, Seek, Write};

use zip::{CompressionMethod, ZipArchive};

use crate::error::ZipError;

/// Lambda's limit on the unzipped size of a function's code (250 MB).
pub const LAMBDA_MAX_UNZIPPED_BYTES: u64 = 262_144_000;
/// Default cap on the number of entries in a package. Large `node_modules` trees reach tens of
/// thousands of files; beyond this the archive is almost certainly hostile.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

const MAX_SYMLINK_TARGET_LEN: usize = 4095;
const MAX_COMPONENT_LEN: usize = 255;
const MAX_PATH_LEN: usize = 4095;
const MAX_SYMLINK_HOPS: usize = 40;
const COPY_BUFFER_LEN: usize = 64 * 1024;

/// Caps applied while validating and extracting a package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum total uncompressed size of files and symlinks, inclusive. Checked against the
    /// headers first, then against the bytes actually decompressed.
    pub max_unzipped_bytes: u64,
    /// Maximum number of entries (files, directories and symlinks) in the archive.
    pub max_entries: usize,
}

impl Limits {
    /// AWS Lambda's limits: 250 MB unzipped, [`DEFAULT_MAX_ENTRIES`] entries.
    pub const LAMBDA: Limits = Limits {
        max_unzipped_bytes: LAMBDA_MAX_UNZIPPED_BYTES,
        max_entries: DEFAULT_MAX_ENTRIES,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::LAMBDA
    }
}

/// What a path in the package is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory, listed in the archive or implied by a deeper path.
    Dir,
    /// A symlink to a relative path that stays inside the package.
    Symlink {
        /// The link's target, exactly as stored.
        target: String,
    },
}

/// One path in a validated package.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits applied on extraction (never setuid, setgid or sticky). Files without a
    /// recorded mode get `0o644`, directories `0o755`; directories always keep `u+rwx` so the
    /// tree can be extracted into and deleted.
    pub mode: u32,
    /// Uncompressed size in bytes (0 for directories).
    pub size: u64,
    /// Whether the directory is only implied by deeper paths (no entry of its own).
    pub implicit: bool,
}

impl Entry {
    fn implicit_dir() -> Self {
        Self {
            kind: EntryKind::Dir,
            mode: 0o755,
            size: 0,
            implicit: true,
        }
    }

    /// A regular file with any execute bit set.
    pub fn is_executable_file(&self) -> bool {
        self.kind == EntryKind::File && self.mode & 0o111 != 0
    }
}

/// State of the `bootstrap` file at the package root (required by `provided.*` runtimes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// No regular file `bootstrap` at the root (after following in-package symlinks).
    Missing,
    /// Present, but no execute bit is set.
    NotExecutable,
    /// Present and executable.
    Executable,
}

/// What [`validate_zip`] learned about a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipSummary {
    entry_count: usize,
    total_uncompressed_size: u64,
    entries: BTreeMap<String, Entry>,
}

impl ZipSummary {
    /// Number of entries in the archive (including directory entries; not implied ones).
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// Total uncompressed size of files and symlinks in bytes.
    pub fn total_uncompressed_size(&self) -> u64 {
        self.total_uncompressed_size
    }

    /// All paths (normalized: `/`-separated, no `.` or empty components), sorted, with
    /// implied parent directories included.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The entry at `path`, without following symlinks. `path` may use `./` and redundant
    /// slashes; `..` is not accepted.
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        let mut key = String::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => return None,
                c => {
                    if !key.is_empty() {
                        key.push('/');
                    }
                    key.push_str(c);
                }
            }
        }
        self.entries.get(&key)
    }

    /// The entry `path` refers to after following symlinks inside the package, the way the
    /// kernel would. `None` if it does not exist, leaves the package or loops.
    pub fn resolve(&self, path: &str) -> Option<&Entry> {
        let mut pending: Vec<&str> = path.split('/').rev().collect();
        let mut current: Vec<&str> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            match c {
                "" | "." => continue,
                ".." => {
                    current.pop()?;
                    continue;
                }
                c => current.push(c),
            }
            let entry = self.entries.get(&current.join("/"))?;
            if let EntryKind::Symlink { target } = &entry.kind {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS || target.starts_with('/') {
                    return None;
                }
                current.pop();
                pending.extend(target.split('/').rev());
            }
        }
        self.entries.get(&current.join("/"))
    }

    /// Whether `path` is a regular file (following in-package symlinks), e.g.
    /// `file_exists("app.py")` for a Python handler `app.handler`.
    pub fn file_exists(&self, path: &str) -> bool {
        self.resolve(path)
            .is_some_and(|e| e.kind == EntryKind::File)
    }

    /// Whether `path` is a directory (following in-package symlinks). The root (`""`) is.
    pub fn dir_exists(&self, path: &str) -> bool {
        if path.split('/').all(|c| c.is_empty() || c == ".") {
            return true;
        }
        self.resolve(path).is_some_and(|e| e.kind == EntryKind::Dir)
    }

    /// The first of `candidates` that [`file_exists`](Self::file_exists), e.g.
    /// `["index.mjs", "index.js", "index.cjs"]` for a Node.js handler `index.handler`.
    pub fn first_existing_file<'a>(&self, candidates: &[&'a str]) -> Option<&'a str> {
        candidates.iter().copied().find(|c| self.file_exists(c))
    }

    /// Whether `bootstrap` exists at the root and is executable.
    pub fn bootstrap(&self) -> Bootstrap {
        match self.resolve("bootstrap") {
            Some(e) if e.is_executable_file() => Bootstrap::Executable,
            Some(e) if e.kind == EntryKind::File => Bootstrap::NotExecutable,
            _ => Bootstrap::Missing,
        }
    }
}

/// Validates a code package: readable archive, safe names, sane entry count, unzipped size
/// within `limits` (declared and actual), every entry decompresses with a correct CRC.
///
/// Symlinks are allowed when their target is relative and provably stays inside the package
/// (see the crate docs); everything else about them is rejected.
pub fn validate_zip(bytes: &[u8], limits: &Limits) -> Result<ZipSummary, ZipError> {
    let mut archive = open_archive(Cursor::new(bytes), limits)?;
    let plan = plan(&mut archive, limits)?;
    let mut copier = Copier::new(limits.max_unzipped_bytes);
    for file in &plan.files {
        let mut reader = archive
            .by_index(file.index)
            .map_err(|e| corrupt(&file.display, e))?;
        copier
            .copy(&mut reader, &mut io::sink(), file.declared, &file.display)
            .map_err(|e| match e {
                CopyError::Package(e) => e,
                // `io::sink` never fails.
                CopyError::Write(e) => corrupt(&file.display, e),
            })?;
    }
    Ok(plan.summary)
}

/// Opens the archive; an archive that lists a name twice is refused, naming it.
pub(crate) fn open_archive<R: Read + Seek>(
    reader: R,
    limits: &Limits,
) -> Result<ZipArchive<R>, ZipError> {
    let archive = ZipArchive::new(reader).map_err(|e| ZipError::Unreadable {
        detail: e.to_string(),
    })?;
    if !archive.has_duplicate_names() {
        return Ok(archive);
    }
    let start = archive.central_directory_start();
    let mut reader = archive.into_inner();
    let dup = first_duplicate_name(&mut reader, start, limits.max_entries.saturating_add(1))
        .unwrap_or_else(|| "(a name listed twice in the central directory)".to_owned());
    Err(ZipError::PathClash {
        entry: dup.clone(),
        other: dup,
    })
}

/// The first name the central directory lists twice, reading at most `max_headers` headers
/// from `start`. The zip reader keeps one entry per name, so the duplicate is only visible in
/// the raw headers.
fn first_duplicate_name<R: Read + Seek>(
    reader: &mut R,
    start: u64,
    max_headers: usize,
) -> Option<String> {
    const CENTRAL_HEADER_SIGNATURE: [u8; 4] = [0x50, 0x4b, 0x01, 0x02];
    reader.seek(io::SeekFrom::Start(start)).ok()?;
    let mut seen = std::collections::HashSet::new();
    let mut fixed = [0u8; 46];
    for _ in 0..max_headers {
        reader.read_exact(&mut fixed).ok()?;
        if fixed[..4] != CENTRAL_HEADER_SIGNATURE {
            return None;
        }
        let u16_at = |i: usize| u16::from_le_bytes([fixed[i], fixed[i + 1]]);
        let (name_len, extra_len, comment_len) = (u16_at(28), u16_at(30), u16_at(32));
        let mut name = vec![0u8; usize::from(name_len)];
        reader.read_exact(&mut name).ok()?;
        let skip = i64::from(extra_len) + i64::from(comment_len);
        reader.seek(io::SeekFrom::Current(skip)).ok()?;
        if let Some(dup) = seen.replace(name) {
            return Some(display_name(&String::from_utf8_lossy(&dup)));
        }
    }
    None
}

fn corrupt(display: &str, e: impl ToString) -> ZipError {
    ZipError::CorruptEntry {
        entry: display.to_owned(),
        detail: e.to_string(),
    }
}

/// A file to decompress.
pub(crate) struct PlannedFile {
    pub(crate) index: usize,
    pub(crate) path: String,
    pub(crate) display: String,
    pub(crate) mode: u32,
    pub(crate) declared: u64,
}

/// Everything [`plan`] checked, in the shape extraction needs.
pub(crate) struct Plan {
    pub(crate) summary: ZipSummary,
    /// Regular files, in archive order.
    pub(crate) files: Vec<PlannedFile>,
}

impl Plan {
    pub(crate) fn dirs(&self) -> impl DoubleEndedIterator<Item = (&str, &Entry)> {
        self.summary
            .entries
            .iter()
            .filter(|(_, e)| e.kind == EntryKind::Dir)
            .map(|(k, v)| (k.as_str(), v))
    }

    pub(crate) fn symlinks(&self) -> impl Iterator<Item = (&str, &str)> {
        self.summary
            .entries
            .iter()
            .filter_map(|(k, e)| match &e.kind {
                EntryKind::Symlink { target } => Some((k.as_str(), target.as_str())),
                _ => None,
            })
    }
}

enum Kind {
    File,
    Dir,
    Symlink,
}

/// Pass 1: check everything except file contents.
pub(crate) fn plan<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    limits: &Limits,
) -> Result<Plan, ZipError> {
    let count = archive.len();
    if count > limits.max_entries {
        return Err(ZipError::TooManyEntries {
            count,
            max: limits.max_entries,
        });
    }
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut files = Vec::new();
    let mut links = Vec::new();
    let mut total: u64 = 0;
    for index in 0..count {
        let e = archive
            .by_index_data(index)
            .map_err(|e| ZipError::Unreadable {
                detail: e.to_string(),
            })?;
        let display = display_name(&String::from_utf8_lossy(e.name_raw()));
        let name = e
            .name()
            .map_err(|_| invalid_name(&display, "is not valid UTF-8"))?;
        if e.encrypted() {
            return Err(ZipError::Encrypted { entry: display });
        }

        let mode = e.unix_mode();
        let kind = match mode.map_or(0, |m| m & 0o170_000) {
            0o120_000 => Kind::Symlink,
            0o040_000 => Kind::Dir,
            _ if name.ends_with('/') || name.ends_with('\\') => Kind::Dir,
            0 | 0o100_000 => Kind::File,
            0o010_000 => return Err(unsupported_type(display, "named pipe (FIFO)")),
            0o020_000 => return Err(unsupported_type(display, "character device")),
            0o060_000 => return Err(unsupported_type(display, "block device")),
            0o140_000 => return Err(unsupported_type(display, "socket")),
            _ => return Err(unsupported_type(display, "special file")),
        };

        let components = normalize_entry_name(&name).map_err(|p| match p {
            NameProblem::Escapes => ZipError::PathEscapes {
                entry: display.clone(),
            },
            NameProblem::Invalid(reason) => invalid_name(&display, reason),
        })?;
        if components.is_empty() {
            match kind {
                // "./" names the root itself.
                Kind::Dir => continue,
                _ => return Err(invalid_name(&display, "has no file name")),
            }
        }

        let size = if let Kind::Dir = kind {
            0
        } else {
            match e.compression() {
                CompressionMethod::Stored | CompressionMethod::Deflated => {}
                other => {
                    return Err(ZipError::UnsupportedCompression {
                        entry: display,
                        method: other.to_string(),
                    });
                }
            }
            let size = e.size();
            total = total
                .checked_add(size)
                .filter(|t| *t <= limits.max_unzipped_bytes)
                .ok_or(ZipError::TooLarge {
                    limit: limits.max_unzipped_bytes,
                    at_least: total.saturating_add(size),
                })?;
            size
        };

        let perms = mode.map(|m| m & 0o777);
        let entry = match kind {
            Kind::File => Entry {
                kind: EntryKind::File,
                mode: perms.unwrap_or(0o644),
                size,
                implicit: false,
            },
            Kind::Dir => Entry {
                kind: EntryKind::Dir,
                mode: perms.map_or(0o755, |p| p | 0o700),
                size,
                implicit: false,
            },
            Kind::Symlink => Entry {
                kind: EntryKind::Symlink {
                    target: String::new(),
                },
                mode: 0o777,
                size,
                implicit: false,
            },
        };
        let path = components.join("/");
        match kind {
            Kind::File => files.push(PlannedFile {
                index,
                path: path.clone(),
                display: display.clone(),
                mode: entry.mode,
                declared: size,
            }),
            Kind::Symlink => links.push((index, path.clone(), display.clone())),
            Kind::Dir => {}
        }
        insert(&mut entries, &components, entry, &display)?;
    }
    if files.is_empty() && links.is_empty() {
        return Err(ZipError::Empty);
    }

    // Symlink targets are checked once every path is known, since a target may pass through
    // another symlink.
    for (index, path, display) in links {
        let target = read_symlink_target(archive, index, &display)?;
        check_symlink(&entries, &path, &target, &display)?;
        if let Some(e) = entries.get_mut(&path) {
            e.kind = EntryKind::Symlink { target };
        }
    }

    Ok(Plan {
        summary: ZipSummary {
            entry_count: count,
            total_uncompressed_size: total,
            entries,
        },
        files,
    })
}

fn invalid_name(display: &str, reason: &'static str) -> ZipError {
    ZipError::InvalidName {
        entry: display.to_owned(),
        reason,
    }
}

fn unsupported_type(entry: String, kind: &'static str) -> ZipError {
    ZipError::UnsupportedEntryType { entry, kind }
}

/// Adds `entry` at `components`, creating implied parents; a parent that is not a directory,
/// or a second entry at the same path (other than two directories), is a clash.
fn insert(
    entries: &mut BTreeMap<String, Entry>,
    components: &[&str],
    entry: Entry,
    display: &str,
) -> Result<(), ZipError> {
    let clash = |other: &str| ZipError::PathClash {
        entry: display.to_owned(),
        other: display_name(other),
    };
    let (_, parents) = components.split_last().unwrap_or((&"", &[]));
    let mut prefix = String::new();
    for c in parents {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(c);
        match entries.get(&prefix) {
            None => {
                entries.insert(prefix.clone(), Entry::implicit_dir());
            }
            Some(e) if e.kind == EntryKind::Dir => {}
            Some(_) => return Err(clash(&prefix)),
        }
    }
    let path = components.join("/");
    match entries.get_mut(&path) {
        None => {
            entries.insert(path, entry);
        }
        Some(existing) if existing.kind == EntryKind::Dir && entry.kind == EntryKind::Dir => {
            if existing.implicit {
                *existing = entry;
            }
        }
        Some(_) => return Err(clash(&path)),
    }
    Ok(())
}

fn read_symlink_target<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    index: usize,
    display: &str,
) -> Result<String, ZipError> {
    let invalid = |reason| ZipError::InvalidSymlink {
        entry: display.to_owned(),
        reason,
    };
    let reader = archive.by_index(index).map_err(|e| corrupt(display, e))?;
    let mut buf = Vec::new();
    reader
        .take(MAX_SYMLINK_TARGET_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| corrupt(display, e))?;
    if buf.len() > MAX_SYMLINK_TARGET_LEN {
        return Err(invalid("is longer than 4095 bytes"));
    }
    String::from_utf8(buf).map_err(|_| invalid("is not valid UTF-8"))
}

/// A symlink is accepted only if its target, resolved from the link's directory, provably
/// stays inside the package:
///
/// * not empty, no NUL, no backslash, not absolute;
/// * `..` may only climb through real directories (the link's own parents are always real:
///   paths below a symlink are rejected as clashes), never out of the root, and never after
///   the target has passed through another symlink, whose real location a lexical check
///   cannot know. Every symlink is checked this way, so following any chain of them stays
///   inside the package.
fn check_symlink(
    entries: &BTreeMap<String, Entry>,
    path: &str,
    target: &str,
    display: &str,
) -> Result<(), ZipError> {
    let invalid = |reason| ZipError::InvalidSymlink {
        entry: display.to_owned(),
        reason,
    };
    let escapes = || ZipError::SymlinkEscapes {
        entry: display.to_owned(),
        target: display_name(target),
    };
    if target.is_empty() {
        return Err(invalid("is empty"));
    }
    if target.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if target.contains('\\') {
        return Err(invalid("contains a backslash (use '/' as the separator)"));
    }
    if target.starts_with('/') {
        return Err(escapes());
    }
    let mut current: Vec<&str> = path.split('/').collect();
    current.pop();
    let mut through_link = false;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." if through_link => {
                return Err(invalid(
                    "uses '..' after passing through another symlink, so it cannot be shown \
                     to stay inside the package",
                ));
            }
            ".." => {
                current.pop().ok_or_else(escapes)?;
            }
            c => {
                current.push(c);
                through_link = matches!(
                    entries.get(&current.join("/")),
                    Some(Entry {
                        kind: EntryKind::Symlink { .. },
                        ..
                    })
                );
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum NameProblem {
    Escapes,
    Invalid(&'static str),
}

/// Splits an entry name into path components, treating `\` as a separator too (as Info-ZIP
/// `unzip` does for archives made on Windows) and dropping empty and `.` components.
fn normalize_entry_name(name: &str) -> Result<Vec<&str>, NameProblem> {
    if name.contains('\0') {
        return Err(NameProblem::Invalid("contains a NUL byte"));
    }
    if name.is_empty() {
        return Err(NameProblem::Invalid("is empty"));
    }
    if name.starts_with(['/', '\\']) {
        return Err(NameProblem::Escapes);
    }
    let b = name.as_bytes();
    if b[0].is_ascii_alphabetic()
        && b.get(1) == Some(&b':')
        && matches!(b.get(2), None | Some(b'/' | b'\\'))
    {
        return Err(NameProblem::Escapes);
    }
    let components: Vec<&str> = name
        .split(['/', '\\'])
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if components.contains(&"..") {
        return Err(NameProblem::Escapes);
    }
    if components.iter().any(|c| c.len() > MAX_COMPONENT_LEN) {
        return Err(NameProblem::Invalid(
            "has a path component longer than 255 bytes",
        ));
    }
    if name.len() > MAX_PATH_LEN {
        return Err(NameProblem::Invalid("is longer than 4095 bytes"));
    }
    Ok(components)
}

/// An entry name fit for a message: control characters escaped.
fn display_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for ch in name.chars() {
        if ch.is_control() {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Why a copy stopped.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// The package is at fault (corrupt data, over the size cap).
    Package(ZipError),
    /// The destination failed.
    Write(io::Error),
}

/// Copies entry data while counting the bytes actually produced, across all entries.
pub(crate) struct Copier {
    buf: Vec<u8>,
    limit: u64,
    used: u64,
}

impl Copier {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            buf: vec![0; COPY_BUFFER_LEN],
            limit,
            used: 0,
        }
    }

    /// Copies `reader` to `writer`. Fails with `CorruptEntry` as soon as the entry produces
    /// more than `declared` bytes (or at the end if fewer), and with `TooLarge` before writing
    /// a chunk that would take the running total over the limit.
    pub(crate) fn copy(
        &mut self,
        reader: &mut impl Read,
        writer: &mut impl Write,
        declared: u64,
        display: &str,
    ) -> Result<u64, CopyError> {
        let mut produced: u64 = 0;
        loop {
            let n = match reader.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Package(corrupt(display, e))),
            };
            produced += n as u64;
            if produced > declared {
                return Err(CopyError::Package(corrupt(
                    display,
                    "it holds more data than its header declares",
                )));
            }
            self.used += n as u64;
            if self.used > self.limit {
                return Err(CopyError::Package(ZipError::TooLarge {
                    limit: self.limit,
                    at_least: self.used,
                }));
            }
            writer.write_all(&self.buf[..n]).map_err(CopyError::Write)?;
        }
        if produced != declared {
            return Err(CopyError::Package(corrupt(
                display,
                "it holds less data than its header declares",
            )));
        }
        Ok(produced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_safe_names() {
        assert_eq!(
            normalize_entry_name("a/b/c.txt"),
            Ok(vec!["a", "b", "c.txt"])
        );
        assert_eq!(normalize_entry_name("./a//b/"), Ok(vec!["a", "b"]));
        assert_eq!(
            normalize_entry_name("win\\style\\x.py"),
            Ok(vec!["win", "style", "x.py"])
        );
        assert_eq!(normalize_entry_name("a:b.txt"), Ok(vec!["a:b.txt"]));
        assert_eq!(
            normalize_entry_name("..foo/bar.."),
            Ok(vec!["..foo", "bar.."])
        );
        assert_eq!(normalize_entry_name("./"), Ok(vec![]));
    }

    #[test]
    fn rejects_escaping_and_invalid_names() {
        for name in [
            "../evil",
            "a/../../evil",
            "a/../b",
            "/etc/passwd",
            "\\evil",
            "..\\evil",
            "a\\..\\..\\evil",
            "C:\\Windows\\x",
            "c:/x",
            "..",
        ] {
            assert_eq!(
                normalize_entry_name(name),
                Err(NameProblem::Escapes),
                "{name}"
            );
        }
        assert!(matches!(
            normalize_entry_name("a\0b"),
            Err(NameProblem::Invalid(_))
        ));
        assert!(matches!(
            normalize_entry_name(""),
            Err(NameProblem::Invalid(_))
        ));
        let long = "x".repeat(256);
        assert!(matches!(
            normalize_entry_name(&long),
            Err(NameProblem::Invalid(_))
        ));
    }

    #[test]
    fn display_name_escapes_control_characters() {
        assert_eq!(display_name("a\0b\nc"), "a\\u{0}b\\nc");
        assert_eq!(display_name("../x"), "../x");
    }

    /// The byte cap holds even when a header claims an entry is enormous (or its size is
    /// unknown): an endless stream stops at the limit, and nothing past it is written.
    #[test]
    fn copier_caps_actual_bytes_regardless_of_declared_size() {
        let limit = 100_000;
        let mut copier = Copier::new(limit);
        let mut out = Vec::new();
        let err = copier
            .copy(&mut io::repeat(0x41), &mut out, u64::MAX, "bomb")
            .unwrap_err();
        match err {
            CopyError::Package(ZipError::TooLarge { limit: l, at_least }) => {
                assert_eq!(l, limit);
                assert!(at_least > limit);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(out.len() as u64 <= limit, "wrote {} bytes", out.len());
    }

    #[test]
    fn copier_budget_is_shared_across_entries() {
        let mut copier = Copier::new(1000);
        let mut out = Vec::new();
        copier
            .copy(&mut &[1u8; 600][..], &mut out, 600, "a")
            .unwrap();
        let err = copier
            .copy(&mut &[2u8; 600][..], &mut out, 600, "b")
            .unwrap_err();
        assert!(matches!(err, CopyError::Package(ZipError::TooLarge { .. })));
        assert_eq!(out.len(), 600);
    }

    #[test]
    fn copier_rejects_size_mismatch_both_ways() {
        let mut copier = Copier::new(u64::MAX);
        let more = copier
            .copy(&mut &[0u8; 20][..], &mut io::sink(), 10, "more")
            .unwrap_err();
        assert!(matches!(
            more,
            CopyError::Package(ZipError::CorruptEntry { .. })
        ));
        let less = copier
            .copy(&mut &[0u8; 5][..], &mut io::sink(), 10, "less")
            .unwrap_err();
        assert!(matches!(
            less,
            CopyError::Package(ZipError::CorruptEntry { .. })
        ));
    }
}
