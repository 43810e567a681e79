//! [`Digest`]: the content address of a stored code package.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

/// Content address of a code package: the SHA-256 of its bytes plus its length.
///
/// * [`Digest::base64`] is AWS's `CodeSha256` (standard base64, with padding, of the raw hash).
/// * [`Digest::size`] is AWS's `CodeSize` (length of the zip in bytes).
/// * [`Digest::hex`] is the file name used by [`ArtifactStore`](crate::ArtifactStore).
///
/// The size is part of the value so a store can detect a truncated blob without hashing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    sha256: [u8; 32],
    size: u64,
}

/// Why a textual SHA-256 could not be turned into a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestParseError {
    /// The text is not hexadecimal.
    #[error("sha256 is not valid hex")]
    InvalidHex,
    /// The text is not standard base64.
    #[error("sha256 is not valid base64")]
    InvalidBase64,
    /// The text decoded, but not to 32 bytes.
    #[error("sha256 must be 32 bytes, got {0}")]
    WrongLength(usize),
}

impl Digest {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            sha256: Sha256::digest(bytes).into(),
            size: bytes.len() as u64,
        }
    }

    /// Builds a digest from a raw hash and a size already known to belong together.
    pub const fn new(sha256: [u8; 32], size: u64) -> Self {
        Self { sha256, size }
    }

    /// Parses a 64-character hex SHA-256 (either case) and pairs it with `size`.
    pub fn from_hex(hex: &str, size: u64) -> Result<Self, DigestParseError> {
        let raw = hex::decode(hex).map_err(|_| DigestParseError::InvalidHex)?;
        Self::from_raw(&raw, size)
    }

    /// Parses an AWS `CodeSha256` (standard base64 of the raw hash) and pairs it with `size`.
    pub fn from_base64(b64: &str, size: u64) -> Result<Self, DigestParseError> {
        let raw = BASE64
            .decode(b64)
            .map_err(|_| DigestParseError::InvalidBase64)?;
        Self::from_raw(&raw, size)
    }

    fn from_raw(raw: &[u8], size: u64) -> Result<Self, DigestParseError> {
        let sha256: [u8; 32] = raw
            .try_into()
            .map_err(|_| DigestParseError::WrongLength(raw.len()))?;
        Ok(Self { sha256, size })
    }

    /// The raw 32-byte hash.
    pub const fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// Lower-case hex of the hash (64 characters); the blob's file name in the store.
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Standard base64 (with padding) of the raw hash: AWS's `CodeSha256`.
    pub fn base64(&self) -> String {
        BASE64.encode(self.sha256)
    }

    /// Length of the package in bytes: AWS's `CodeSize`.
    pub const fn size(&self) -> u64 {
        self.size
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest(sha256:{}, {} bytes)", self.hex(), self.size)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `printf hello | sha256sum` and `printf hello | openssl dgst -sha256 -binary | base64`.
    const HELLO_HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    const HELLO_B64: &str = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";

    #[test]
    fn hello_digest_matches_known_values() {
        let d = Digest::of(b"hello");
        assert_eq!(d.hex(), HELLO_HEX);
        assert_eq!(d.base64(), HELLO_B64);
        assert_eq!(d.size(), 5);
        assert_eq!(d.to_string(), format!("sha256:{HELLO_HEX}"));
    }

    #[test]
    fn parses_hex_and_base64_round_trip() {
        let d = Digest::of(b"hello");
        assert_eq!(Digest::from_hex(HELLO_HEX, 5).unwrap(), d);
        assert_eq!(Digest::from_hex(&HELLO_HEX.to_uppercase(), 5).unwrap(), d);
        assert_eq!(Digest::from_base64(HELLO_B64, 5).unwrap(), d);
        // Same hash, different size: a different digest.
        assert_ne!(Digest::from_hex(HELLO_HEX, 6).unwrap(), d);
    }

    #[test]
    fn rejects_malformed_hashes() {
        assert_eq!(Digest::from_hex("zz", 0), Err(DigestParseError::InvalidHex));
        assert_eq!(
            Digest::from_hex("abcd", 0),
            Err(DigestParseError::WrongLength(2))
        );
        assert_eq!(
            Digest::from_base64("not base64!", 0),
            Err(DigestParseError::InvalidBase64)
        );
        assert_eq!(
            Digest::from_base64("aGVsbG8=", 0),
            Err(DigestParseError::WrongLength(5))
        );
    }
}
