//! Why an invoke was throttled: one type from the agent's refusal (the `x-fleetfn-reject-reason`
//! header) through the router's choice to the 429 message, the status document and the metrics.
//! Each throttle counts under exactly one reason, as LMI's `ConcurrencyThrottles`,
//! `CPUThrottles`, `MemoryThrottles` and `DiskThrottles`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an execution environment refused an invoke, and so why an invoke was throttled.
/// The discriminant indexes per-reason counters (`[_; ThrottleReason::COUNT]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleReason {
    /// No idle runtime worker, or the environment is not Ready.
    Concurrency = 0,
    /// CPU use over the last window is at its ceiling.
    Cpu = 1,
    /// Memory in use is at its ceiling.
    Memory = 2,
    /// `/tmp` is nearly full.
    Disk = 3,
}

impl ThrottleReason {
    /// How many reasons there are.
    pub const COUNT: usize = 4;
    /// Every reason, in index order (also the tie-break order of the router).
    pub const ALL: [Self; Self::COUNT] = [Self::Concurrency, Self::Cpu, Self::Memory, Self::Disk];

    /// The index of this reason's counter.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The agent protocol's header value: `concurrency`, `cpu`, `memory` or `disk`.
    pub fn as_header(self) -> &'static str {
        match self {
            Self::Concurrency => "concurrency",
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Disk => "disk",
        }
    }

    /// Parses a header value; anything unknown (a newer peer) counts as concurrency.
    pub fn from_header(value: &str) -> Self {
        value.parse().unwrap_or(Self::Concurrency)
    }

    /// The human label, as in the 429 message and the status document's `Throttles` keys:
    /// `Concurrency`, `CPU`, `Memory` or `Disk`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Concurrency => "Concurrency",
            Self::Cpu => "CPU",
            Self::Memory => "Memory",
            Self::Disk => "Disk",
        }
    }

    /// The metric family counting throttles for this reason (without the `fleetfn_` prefix).
    pub fn metric_name(self) -> &'static str {
        match self {
            Self::Concurrency => "concurrency_throttles",
            Self::Cpu => "cpu_throttles",
            Self::Memory => "memory_throttles",
            Self::Disk => "disk_throttles",
        }
    }
}

impl fmt::Display for ThrottleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_header())
    }
}

/// A throttle reason that is none of `concurrency`, `cpu`, `memory`, `disk`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown throttle reason {0:?}")]
pub struct UnknownThrottleReason(pub String);

impl FromStr for ThrottleReason {
    type Err = UnknownThrottleReason;

    /// Parses the header value (surrounding whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_header() == s.trim())
            .ok_or_else(|| UnknownThrottleReason(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip() {
        for r in ThrottleReason::ALL {
            assert_eq!(r.as_header().parse::<ThrottleReason>(), Ok(r));
            assert_eq!(ThrottleReason::from_header(r.as_header()), r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_header())
            );
            assert_eq!(ThrottleReason::ALL[r.index()], r);
        }
        assert_eq!(" cpu ".parse::<ThrottleReason>(), Ok(ThrottleReason::Cpu));
    }

    #[test]
    fn unknown_header_values_count_as_concurrency() {
        assert_eq!(
            "gpu".parse::<ThrottleReason>(),
            Err(UnknownThrottleReason("gpu".into()))
        );
        assert_eq!(
            ThrottleReason::from_header("gpu"),
            ThrottleReason::Concurrency
        );
    }

    #[test]
    fn labels_and_metric_names_are_todays() {
        let got: Vec<_> = ThrottleReason::ALL
            .iter()
            .map(|r| (r.as_header(), r.label(), r.metric_name()))
            .collect();
        assert_eq!(
            got,
            [
                ("concurrency", "Concurrency", "concurrency_throttles"),
                ("cpu", "CPU", "cpu_throttles"),
                ("memory", "Memory", "memory_throttles"),
                ("disk", "Disk", "disk_throttles"),
            ]
        );
    }
}
