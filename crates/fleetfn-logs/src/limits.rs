//! How much log a function version may keep.

use std::path::PathBuf;
use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Retention of each function version's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// A writer starts a new segment when its current one would grow past this (or a quarter
    /// of [`Self::max_bytes`], whichever is smaller).
    pub segment_bytes: u64,
    /// All segments of one version together (the cap).
    pub max_bytes: u64,
    /// Segments last written longer ago are deleted.
    pub max_age: Duration,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_age: Self::DEFAULT_MAX_AGE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("the log segment size must be at least {min} bytes, not {got}")]
    SegmentTooSmall { min: u64, got: u64 },
    #[error("the log cap per function version must be at least {min} bytes, not {got}")]
    CapTooSmall { min: u64, got: u64 },
    #[error("the maximum log age must be at least 1 second")]
    AgeTooShort,
    #[error("{0:?} is not a size: use bytes or a number with KiB, MiB or GiB (e.g. 64MiB)")]
    BadSize(String),
}

impl LogLimits {
    pub const DEFAULT_SEGMENT_BYTES: u64 = 8 * MIB;
    pub const DEFAULT_MAX_BYTES: u64 = 64 * MIB;
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
    pub const MIN_SEGMENT_BYTES: u64 = 64 * KIB;
    pub const MIN_MAX_BYTES: u64 = MIB;

    /// Checked limits.
    pub fn new(segment_bytes: u64, max_bytes: u64, max_age: Duration) -> Result<Self, LimitsError> {
        if segment_bytes < Self::MIN_SEGMENT_BYTES {
            return Err(LimitsError::SegmentTooSmall {
                min: Self::MIN_SEGMENT_BYTES,
                got: segment_bytes,
            });
        }
        if max_bytes < Self::MIN_MAX_BYTES {
            return Err(LimitsError::CapTooSmall {
                min: Self::MIN_MAX_BYTES,
                got: max_bytes,
            });
        }
        if max_age < Duration::from_secs(1) {
            return Err(LimitsError::AgeTooShort);
        }
        Ok(Self {
            segment_bytes,
            max_bytes,
            max_age,
        })
    }

    /// The segment size in force: at most a quarter of the cap, so that pruning always has
    /// closed segments to delete.
    pub fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes
            .min(self.max_bytes / 4)
            .max(Self::MIN_SEGMENT_BYTES / 4)
    }

    /// Bytes a writer writes between two prunes; also the room pruning leaves per live writer.
    pub fn prune_interval(&self) -> u64 {
        (self.effective_segment_bytes() / 4).max(16 * KIB)
    }

    /// The `fleetfn agent` flags that carry these limits.
    pub fn agent_args(&self) -> Vec<String> {
        vec![
            "--log-segment-bytes".into(),
            self.segment_bytes.to_string(),
            "--log-max-bytes".into(),
            self.max_bytes.to_string(),
            "--log-max-age".into(),
            self.max_age.as_secs().to_string(),
        ]
    }
}

/// Where a server's function logs are and how long they are kept (what the API reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStore {
    pub dir: PathBuf,
    pub limits: LogLimits,
}

/// A byte size: `1048576`, `512KiB`, `64MiB`, `1GiB` (`K`/`M`/`G`/`KB`/`MB`/`GB` are read as
/// binary units too).
pub fn parse_size(s: &str) -> Result<u64, LimitsError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || LimitsError::BadSize(s.to_owned());
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => 1024 * MIB,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64MiB").unwrap(), 64 * MIB);
        assert_eq!(parse_size("512 KiB").unwrap(), 512 * KIB);
        assert_eq!(parse_size("1g").unwrap(), 1024 * MIB);
        for bad in ["", "MiB", "-1", "1.5MiB", "12XB", "99999999999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_checked_and_derived() {
        let d = LogLimits::default();
        assert_eq!(d.effective_segment_bytes(), 8 * MIB);
        assert_eq!(d.prune_interval(), 2 * MIB);
        let small = LogLimits::new(8 * MIB, 4 * MIB, Duration::from_secs(60)).unwrap();
        assert_eq!(small.effective_segment_bytes(), MIB);
        assert!(LogLimits::new(1024, 4 * MIB, Duration::from_secs(60)).is_err());
        assert!(LogLimits::new(MIB, 1024, Duration::from_secs(60)).is_err());
        assert!(LogLimits::new(MIB, 4 * MIB, Duration::ZERO).is_err());
        assert_eq!(
            small.agent_args(),
            [
                "--log-segment-bytes",
                "8388608",
                "--log-max-bytes",
                "4194304",
                "--log-max-age",
                "60"
            ]
        );
    }
}
