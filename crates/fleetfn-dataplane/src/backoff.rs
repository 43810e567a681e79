//! Retry back-off with jitter, for the deployer's two retried actions: a capacity provider's
//! instance launches after a failed launch, and a version's environment starts after a failed
//! replacement. Depends on no other module of the crate.

use std::time::Duration;

use tokio::time::Instant;

/// Jitter as a fraction of the nominal delay: each wait is drawn from ±20 % of it, so failures
/// that happened together are not all retried in the same tick.
const JITTER: f64 = 0.2;

/// Exponential back-off: the first failure waits about `first`, each further one twice the
/// previous nominal delay up to `cap`; every wait is jittered by ±[`JITTER`] and never longer
/// than `cap`. A success is forgetting the value (the next failure starts again at `first`).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    cap: Duration,
    /// The nominal (un-jittered) delay of the last failure; `None` before the first.
    nominal: Option<Duration>,
    /// No retry before this.
    retry_at: Option<Instant>,
}

impl Backoff {
    pub(crate) const fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            nominal: None,
            retry_at: None,
        }
    }

    /// Records a failure at `now` and returns the wait before the next try.
    pub(crate) fn fail(&mut self, now: Instant) -> Duration {
        self.fail_with(now, rand::random::<f64>())
    }

    /// [`Self::fail`] with the random draw given: `unit` in `[0, 1)` maps to the jitter range
    /// (0 → −20 %, 0.5 → the nominal delay, 1 → +20 %).
    pub(crate) fn fail_with(&mut self, now: Instant, unit: f64) -> Duration {
        let nominal = self
            .nominal
            .map_or(self.first, |d| d.saturating_mul(2))
            .min(self.cap);
        self.nominal = Some(nominal);
        let factor = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let wait = nominal.mul_f64(factor).min(self.cap);
        self.retry_at = Some(now + wait);
        wait
    }

    /// Whether a retry is allowed at `now` (always, before any failure).
    pub(crate) fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(60);

    /// `d` is `ms` milliseconds (to the microsecond: the jitter is floating point).
    fn ms(d: Duration, ms: u64) -> bool {
        d.abs_diff(Duration::from_millis(ms)) < Duration::from_micros(1)
    }

    #[test]
    fn nominal_delay_doubles_to_the_cap_and_jitter_spans_twenty_percent() {
        let now = Instant::now();
        let mut b = Backoff::new(FIRST, CAP);
        // The middle of the jitter range is the nominal delay: 1, 2, 4, … 32, then 60 for good.
        for secs in [1, 2, 4, 8, 16, 32, 60, 60, 60] {
            let wait = b.fail_with(now, 0.5);
            assert!(ms(wait, secs * 1000), "{wait:?}, want {secs} s");
        }
        // The ends of the range: ±20 % of the nominal delay, never above the cap.
        let mut b = Backoff::new(FIRST, CAP);
        assert!(ms(b.fail_with(now, 0.0), 800));
        assert!(ms(b.fail_with(now, 1.0), 2400));
        for _ in 0..10 {
            b.fail_with(now, 0.5);
        }
        assert_eq!(b.fail_with(now, 1.0), CAP);
        assert!(ms(b.fail_with(now, 0.0), 48_000));
    }

    #[test]
    fn random_waits_stay_within_the_jitter_bounds_and_are_not_all_equal() {
        let now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..200 {
            let mut b = Backoff::new(FIRST, CAP);
            let first = b.fail(now);
            assert!(
                (Duration::from_millis(800)..=Duration::from_millis(1200)).contains(&first),
                "{first:?}"
            );
            let second = b.fail(now);
            assert!(
                (Duration::from_millis(1600)..=Duration::from_millis(2400)).contains(&second),
                "{second:?}"
            );
            waits.push(first);
        }
        waits.sort();
        waits.dedup();
        assert!(waits.len() > 1, "no jitter: {waits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_before_the_wait_is_over() {
        let mut b = Backoff::new(FIRST, CAP);
        assert!(b.ready(Instant::now()));
        let wait = b.fail_with(Instant::now(), 0.5);
        assert!(!b.ready(Instant::now()));
        tokio::time::advance(wait - Duration::from_millis(1)).await;
        assert!(!b.ready(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.ready(Instant::now()));
        // The next failure waits about twice as long.
        let wait = b.fail_with(Instant::now(), 0.5);
        assert!(ms(wait, 2000), "{wait:?}");
        tokio::time::advance(FIRST).await;
        assert!(!b.ready(Instant::now()));
        tokio::time::advance(wait - FIRST).await;
        assert!(b.ready(Instant::now()));
    }
}
