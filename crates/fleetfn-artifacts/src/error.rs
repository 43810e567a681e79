//! Error types: [`ZipError`] (the uploaded package is unacceptable; the caller's fault) and
//! [`StoreError`] (anything that can go wrong storing or extracting, including a `ZipError`).

use std::io;
use std::path::PathBuf;

/// AWS's exact message for an archive it cannot read (`InvalidParameterValueException`).
pub const UNREADABLE_ZIP_MESSAGE: &str =
    "Could not unzip uploaded file. Please check your file, then try to upload again.";

/// Why an uploaded code package was rejected.
///
/// `Display` is a user-facing message that says what to fix; an API layer can return it
/// verbatim as the message of an `InvalidParameterValueException`. Entry names in messages
/// have control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZipError {
    /// Not a zip archive, or its central directory is damaged. `detail` is for logs.
    #[error("{UNREADABLE_ZIP_MESSAGE}")]
    Unreadable {
        /// What the zip reader said.
        detail: String,
    },
    /// An entry's data could not be decompressed, failed its CRC check, or does not match the
    /// size its header declares (a lying header).
    #[error(
        "Could not unzip uploaded file: entry '{entry}' is damaged ({detail}). \
         Please check your file, then try to upload again."
    )]
    CorruptEntry {
        /// The entry's name.
        entry: String,
        /// What went wrong.
        detail: String,
    },
    /// The archive holds no files (and no symlinks).
    #[error(
        "Uploaded zip file contains no files. Add your function code \
         (for example the handler file, or a 'bootstrap' executable) and upload again."
    )]
    Empty,
    /// More entries than [`Limits::max_entries`](crate::Limits::max_entries).
    #[error(
        "Zip file contains {count} entries, more than the maximum of {max}. \
         Reduce the number of files in the package."
    )]
    TooManyEntries {
        /// Entries in the archive.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The unzipped size, declared or actually produced, exceeds
    /// [`Limits::max_unzipped_bytes`](crate::Limits::max_unzipped_bytes).
    #[error("Unzipped size must be smaller than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
        /// Bytes counted when the limit was crossed (the real total may be larger).
        at_least: u64,
    },
    /// An absolute path, a drive letter, or a `..` component (with `/` or `\` separators).
    #[error("zip entry '{entry}' escapes the package root; remove absolute and '..' paths")]
    PathEscapes {
        /// The entry's name.
        entry: String,
    },
    /// A name that cannot be a file name (NUL byte, empty, too long, bad encoding).
    #[error("zip entry '{entry}' has an invalid name: it {reason}. Rename it and upload again.")]
    InvalidName {
        /// The entry's name.
        entry: String,
        /// What is wrong with it, phrased to follow "it".
        reason: &'static str,
    },
    /// Two entries map to the same path, or an entry sits below a file or a symlink.
    #[error(
        "zip entry '{entry}' conflicts with '{other}' (the same path twice, or a path below a \
         file or symlink); remove one of them"
    )]
    PathClash {
        /// The entry's name.
        entry: String,
        /// The path it clashes with.
        other: String,
    },
    /// A symlink whose target is absolute or climbs out of the package with `..`.
    #[error(
        "zip entry '{entry}' is a symlink to '{target}', which points outside the package root; \
         replace the link with the file it points to, or use a relative link that stays inside \
         the package"
    )]
    SymlinkEscapes {
        /// The link's name.
        entry: String,
        /// Its target.
        target: String,
    },
    /// A symlink whose target is unusable or cannot be shown to stay inside the package.
    #[error(
        "zip entry '{entry}' is a symlink whose target {reason}; replace the link with the file \
         it points to"
    )]
    InvalidSymlink {
        /// The link's name.
        entry: String,
        /// What is wrong, phrased to follow "whose target".
        reason: &'static str,
    },
    /// An encrypted entry.
    #[error("zip entry '{entry}' is encrypted; upload a zip file without a password")]
    Encrypted {
        /// The entry's name.
        entry: String,
    },
    /// A compression method other than stored or deflate.
    #[error(
        "zip entry '{entry}' uses compression method {method}, which is not supported; \
         re-create the zip with deflate compression (or none)"
    )]
    UnsupportedCompression {
        /// The entry's name.
        entry: String,
        /// The method, as the zip reader names it.
        method: String,
    },
    /// A device node, FIFO or socket.
    #[error(
        "zip entry '{entry}' is a {kind}, which cannot be part of a function package; \
         include only regular files, directories and symlinks"
    )]
    UnsupportedEntryType {
        /// The entry's name.
        entry: String,
        /// What it is.
        kind: &'static str,
    },
}

/// Errors from [`ArtifactStore`](crate::ArtifactStore) and [`extract`](crate::extract).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The package itself is unacceptable (the uploader's fault; see [`ZipError`]).
    #[error(transparent)]
    Package(#[from] ZipError),
    /// No blob with this digest is stored.
    #[error("code package sha256:{hex} is not in the artifact store")]
    NotFound {
        /// Hex SHA-256 of the missing blob.
        hex: String,
    },
    /// The stored blob's length differs from the digest's size.
    #[error("code package sha256:{hex} is damaged: expected {expected} bytes, found {actual}")]
    Corrupt {
        /// Hex SHA-256 of the blob.
        hex: String,
        /// The digest's size.
        expected: u64,
        /// The blob's length on disk.
        actual: u64,
    },
    /// [`extract`](crate::extract) only fills a fresh directory.
    #[error("extraction destination {} already exists", path.display())]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("failed to {op} {}", path.display())]
    Io {
        /// What was being done, e.g. "create".
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// The package problem, if this error is the uploader's fault rather than the server's.
    pub fn as_package_error(&self) -> Option<&ZipError> {
        match self {
            Self::Package(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}
