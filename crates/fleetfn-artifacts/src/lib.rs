//! Code packages for fleetfn: the content-addressed store of Lambda function zips, their
//! validation, and their safe extraction.
//!
//! This crate owns everything between "the API received a zip" and "a runtime can start in
//! a directory holding the function's code":
//!
//! * [`validate_zip`] decides whether an upload is an acceptable package and reports
//!   [`ZipError`]s whose messages tell the uploader what to fix (AWS's own wording where AWS
//!   has one). It also returns a [`ZipSummary`] (entry count, unzipped size, whether an
//!   executable `bootstrap` exists, whether a handler file exists).
//! * [`ArtifactStore`] keeps zips on disk under their SHA-256 ([`Digest`] gives AWS's
//!   `CodeSha256` and `CodeSize`), and a cache of extracted trees
//!   ([`ArtifactStore::ensure_extracted`]).
//! * [`extract`] unpacks a zip into a fresh directory, atomically.
//!
//! # Package rules
//!
//! * The archive must be readable; entries must be stored or deflated, unencrypted, and be
//!   files, directories or symlinks.
//! * Names must be relative, without `..` components, NUL bytes or drive letters; `\` counts
//!   as a separator (as in Info-ZIP `unzip`), so `..\x` is traversal too. Two entries may not
//!   map to the same path, and nothing may sit below a file or a symlink.
//! * At most [`Limits::max_entries`] entries, and at most [`Limits::max_unzipped_bytes`]
//!   (Lambda: 262144000) unzipped, checked against the headers *and* against the bytes
//!   actually decompressed, so a lying header or a zip bomb is stopped at the cap: an entry
//!   producing more bytes than declared is rejected as damaged, and the running total of
//!   real bytes is capped independently of any header.
//! * Symlinks are **allowed if they provably stay inside the package** rather than rejected
//!   outright, because real packages contain them (`node_modules/.bin/*`, `libfoo.so ->
//!   libfoo.so.1`) and Lambda accepts them. The target must be relative and, resolved from
//!   the link's directory, `..` may neither climb above the root nor follow another symlink
//!   (whose real location a lexical check cannot know). Symlinks are created after all files,
//!   and files are created with `O_EXCL` in real directories, so extraction never writes
//!   through a link.
//! * Unix permission bits are preserved (an executable `bootstrap` stays executable);
//!   setuid, setgid and sticky bits never are.
#![forbid(unsafe_code)]

mod digest;
mod error;
mod extract;
mod package;
mod store;

pub use digest::{Digest, DigestParseError};
pub use error::{StoreError, UNREADABLE_ZIP_MESSAGE, ZipError};
pub use extract::extract;
pub use package::{
    Bootstrap, DEFAULT_MAX_ENTRIES, Entry, EntryKind, LAMBDA_MAX_UNZIPPED_BYTES, Limits,
    ZipSummary, validate_zip,
};
pub use store::ArtifactStore;
