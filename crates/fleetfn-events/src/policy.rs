//! When an event is tried again: after a function error, AWS's spacing (about 1 min, then
//! 2 min; [`Policy::retry_delays`]); after a throttle or a service error, exponential backoff
//! from 1 s to 5 min, as long as the event is younger than its maximum age.

use std::time::Duration;

/// The server's retry timing.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Wait before the first and the second retry after a function error.
    pub retry_delays: [Duration; 2],
    /// First wait after a throttle or service error; doubles per throttle up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            retry_delays: [Duration::from_secs(60), Duration::from_secs(120)],
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl Policy {
    /// The wait before retry number `attempts` (1 or 2) after a function error.
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        self.retry_delays[i.min(self.retry_delays.len() - 1)]
    }

    /// The wait after the `throttles`-th throttle (1-based) of an event, with up to 20 % of
    /// jitter taken off (`jitter` in [0, 1)) so throttled events do not return together.
    pub fn backoff(&self, throttles: u32, jitter: f64) -> Duration {
        let exp = throttles.saturating_sub(1).min(20);
        let base = self
            .backoff_min
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max);
        base.mul_f64(1.0 - 0.2 * jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_errors_wait_one_then_two_minutes() {
        let p = Policy::default();
        assert_eq!(p.retry_delay(1), Duration::from_secs(60));
        assert_eq!(p.retry_delay(2), Duration::from_secs(120));
        assert_eq!(p.retry_delay(7), Duration::from_secs(120));
    }

    #[test]
    fn throttles_back_off_exponentially_to_five_minutes() {
        let p = Policy::default();
        let waits: Vec<u64> = (1..=12).map(|n| p.backoff(n, 0.0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(p.backoff(u32::MAX, 0.0), Duration::from_secs(300));
        assert_eq!(p.backoff(1, 0.999_999).as_millis(), 800);
    }
}
