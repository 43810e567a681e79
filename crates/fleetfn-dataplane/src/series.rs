//! The one-second series behind `GET /fleetfn/v1/functions/{function}/series` (the web
//! console's live charts): a [`DurationHistogram`] the router adds each invoke's duration to
//! (one relaxed atomic add, no lock, no allocation), and per version a [`SeriesRing`] of the
//! last [`RING_SECONDS`] one-second [`Sample`]s, which the scaler's tick (about once a second;
//! a follower's own tick on a server that does not lead) fills from the deltas of the version's
//! counters. Reading it touches no store.
//!
//! Time: a sample's `t` is the unix second of the tick on the [`SeriesClock`] (the wall clock
//! read once when the data plane starts, advanced by the monotonic clock, so it never goes
//! back). Two ticks in the same second merge into one sample; a tick that comes late (a second
//! or more skipped) puts everything since the previous tick into the sample of its own second
//! and leaves the skipped seconds out: counts are never lost or invented, only lumped.
//! Pure: depends on no other module of the crate.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetfn_model::ThrottleReason;
use tokio::time::Instant;

/// Samples kept per version: 15 minutes of seconds.
pub(crate) const RING_SECONDS: usize = 900;

/// Buckets of the duration histogram.
pub(crate) const BUCKETS: usize = 80;
/// Upper bound (ns, exclusive) of bucket 0; each further bound is 1.25 times the previous one.
const FIRST_BOUND_NS: u64 = 50_000;

/// `BOUNDS[i]`: the exclusive upper bound of bucket `i` in ns (50 µs, 62.5 µs, … about 2200 s);
/// the last bucket holds everything from `BOUNDS[BUCKETS - 2]` up.
const BOUNDS: [u64; BUCKETS - 1] = {
    let mut b = [0u64; BUCKETS - 1];
    b[0] = FIRST_BOUND_NS;
    let mut i = 1;
    while i < BUCKETS - 1 {
        b[i] = b[i - 1] * 5 / 4;
        i += 1;
    }
    b
};

/// The bucket of a duration: the first whose upper bound is above it.
fn bucket_of(ns: u64) -> usize {
    BOUNDS.partition_point(|&b| b <= ns)
}

/// `[low, high)` of a bucket in ns (the last one reports its low bound as its high).
fn bucket_range(i: usize) -> (u64, u64) {
    let low = if i == 0 { 0 } else { BOUNDS[i - 1] };
    let high = BOUNDS.get(i).copied().unwrap_or(low);
    (low, high)
}

/// Invoke durations in log-spaced buckets (×1.25 from 50 µs): cumulative counts the router adds
/// to and the tick takes deltas of.
#[derive(Debug)]
pub(crate) struct DurationHistogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for DurationHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl DurationHistogram {
    /// Counts one invoke of this duration (the request path: one relaxed add).
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
    }

    /// The cumulative counts.
    pub fn counts(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }
}

/// The `q` quantile (0–1) in ms of the durations counted in `counts`, interpolated linearly
/// within its bucket (so within 25 % of the true value); `None` without any.
pub(crate) fn quantile_ms(counts: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let rank = (q.clamp(0.0, 1.0) * total as f64).max(f64::MIN_POSITIVE);
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        if n > 0 && (below + n) as f64 >= rank {
            let (low, high) = bucket_range(i);
            #[allow(clippy::cast_precision_loss)]
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            #[allow(clippy::cast_precision_loss)]
            let ns = low as f64 + within * (high - low) as f64;
            return Some(ns / 1e6);
        }
        below += n;
    }
    None
}

/// Wall-clock unix time advanced by the monotonic (tokio) clock from one reading.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeriesClock {
    wall: Duration,
    at: Instant,
}

impl Default for SeriesClock {
    fn default() -> Self {
        Self {
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            at: Instant::now(),
        }
    }
}

impl SeriesClock {
    /// The unix second at `now`.
    pub fn second(&self, now: Instant) -> u64 {
        (self.wall + now.saturating_duration_since(self.at)).as_secs()
    }
}

/// A version's counters as the tick reads them (cumulative since they were created).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counters {
    pub invocations: u64,
    pub errors: u64,
    pub throttles: [u64; ThrottleReason::COUNT],
    pub busy_ns: u64,
    pub durations: [u64; BUCKETS],
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            invocations: 0,
            errors: 0,
            throttles: [0; ThrottleReason::COUNT],
            busy_ns: 0,
            durations: [0; BUCKETS],
        }
    }
}

/// A version's gauges at the tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Gauges {
    pub cpu_utilization: f64,
    pub desired: u32,
    pub ready: u32,
}

/// One second of a version.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sample {
    /// Unix second.
    pub t: u64,
    pub invocations: u64,
    pub errors: u64,
    pub throttles: [u64; ThrottleReason::COUNT],
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub cpu_utilization: f64,
    /// Average invokes in flight: busy time over elapsed time.
    pub in_flight: f64,
    pub desired: u32,
    pub ready: u32,
}

/// The last [`RING_SECONDS`] samples of one version, oldest first, and the counters of the
/// previous tick.
#[derive(Debug, Default)]
pub(crate) struct SeriesRing {
    samples: VecDeque<Sample>,
    prev: Counters,
    prev_at: Option<Instant>,
    /// Busy time (ns) and elapsed time of the newest sample, for merging another tick into it.
    last_busy: (u64, Duration),
    /// Duration counts of the newest sample, for merging another tick into it.
    last_durations: Option<Box<[u64; BUCKETS]>>,
}

/// `a - b` per element (counters that went back, a recreated version, count as 0).
fn delta<const N: usize>(a: &[u64; N], b: &[u64; N]) -> [u64; N] {
    std::array::from_fn(|i| a[i].saturating_sub(b[i]))
}

fn add<const N: usize>(a: &[u64; N], b: &[u64; N]) -> [u64; N] {
    std::array::from_fn(|i| a[i].saturating_add(b[i]))
}

impl SeriesRing {
    /// Folds in one tick: `t` is its unix second, `now` its monotonic time, `c` the version's
    /// cumulative counters (the first tick counts from zero), `g` its gauges.
    pub fn record(&mut self, t: u64, now: Instant, c: &Counters, g: Gauges) {
        let elapsed = self
            .prev_at
            .map_or(Duration::from_secs(1), |p| now.saturating_duration_since(p));
        let busy = c.busy_ns.saturating_sub(self.prev.busy_ns);
        let durations = delta(&c.durations, &self.prev.durations);
        let mut s = Sample {
            t,
            invocations: c.invocations.saturating_sub(self.prev.invocations),
            errors: c.errors.saturating_sub(self.prev.errors),
            throttles: delta(&c.throttles, &self.prev.throttles),
            p50_ms: None,
            p99_ms: None,
            cpu_utilization: g.cpu_utilization,
            in_flight: 0.0,
            desired: g.desired,
            ready: g.ready,
        };
        self.prev = *c;
        self.prev_at = Some(now);
        let (busy, elapsed, durations) = match self.samples.back_mut() {
            // The same second (or the clock's second did not move on): one sample.
            Some(last) if t <= last.t => {
                s.t = last.t;
                s.invocations += last.invocations;
                s.errors += last.errors;
                s.throttles = add(&s.throttles, &last.throttles);
                let merged = self
                    .last_durations
                    .as_deref()
                    .map_or(durations, |d| add(d, &durations));
                let (b, e) = self.last_busy;
                self.samples.pop_back();
                (busy.saturating_add(b), elapsed + e, merged)
            }
            _ => (busy, elapsed, durations),
        };
        s.p50_ms = quantile_ms(&durations, 0.5);
        s.p99_ms = quantile_ms(&durations, 0.99);
        #[allow(clippy::cast_precision_loss)]
        let in_flight = busy as f64 / 1e9 / elapsed.as_secs_f64().max(1e-3);
        s.in_flight = in_flight;
        self.last_busy = (busy, elapsed);
        match &mut self.last_durations {
            Some(d) => **d = durations,
            None => self.last_durations = Some(Box::new(durations)),
        }
        if self.samples.len() >= RING_SECONDS {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// The samples after the unix second `after`, oldest first.
    pub fn since(&self, after: u64) -> impl DoubleEndedIterator<Item = &Sample> {
        let start = self.samples.partition_point(|s| s.t <= after);
        self.samples.range(start..)
    }

    /// Invokes per second over the ten seconds up to `now` (a unix second): the newest ten
    /// samples of that window over ten seconds.
    pub fn rate(&self, now: u64) -> f64 {
        let n: u64 = self
            .since(now.saturating_sub(11))
            .rev()
            .take(10)
            .map(|s| s.invocations)
            .sum();
        #[allow(clippy::cast_precision_loss)]
        let rate = n as f64 / 10.0;
        rate
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.samples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: f64) -> Duration {
        Duration::from_secs_f64(x / 1000.0)
    }

    #[test]
    fn buckets_grow_by_a_quarter_and_cover_the_longest_invoke() {
        assert_eq!(BOUNDS[0], 50_000);
        assert_eq!(BOUNDS[1], 62_500);
        assert!(BOUNDS.windows(2).all(|w| w[1] > w[0]));
        // 900 s, Lambda's longest timeout, is below the overflow bucket.
        assert!(BOUNDS[BUCKETS - 2] > 900 * 1_000_000_000);
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(49_999), 0);
        assert_eq!(bucket_of(50_000), 1);
        assert_eq!(bucket_of(62_499), 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_are_within_a_bucket_of_the_truth() {
        let h = DurationHistogram::default();
        // 1..=1000 ms: p50 = 500 ms, p99 = 990 ms.
        for i in 1..=1000 {
            h.record(ms(f64::from(i)));
        }
        let c = h.counts();
        assert_eq!(c.iter().sum::<u64>(), 1000);
        let p50 = quantile_ms(&c, 0.5).unwrap();
        let p99 = quantile_ms(&c, 0.99).unwrap();
        assert!((p50 / 500.0 - 1.0).abs() < 0.25, "p50 {p50}");
        assert!((p99 / 990.0 - 1.0).abs() < 0.25, "p99 {p99}");
        assert!(p50 < p99);
        // All alike: both percentiles in that one bucket.
        let one = DurationHistogram::default();
        for _ in 0..10 {
            one.record(ms(2.0));
        }
        let c = one.counts();
        let (lo, hi) = bucket_range(bucket_of(2_000_000));
        for q in [0.5, 0.99] {
            let v = quantile_ms(&c, q).unwrap() * 1e6;
            #[allow(clippy::cast_precision_loss)]
            let inside = (lo as f64..=hi as f64).contains(&v);
            assert!(inside, "{v} not in [{lo}, {hi}]");
        }
        assert_eq!(quantile_ms(&[0; BUCKETS], 0.5), None);
    }

    fn counters(invocations: u64, errors: u64, throttles: [u64; 4], busy_s: f64) -> Counters {
        Counters {
            invocations,
            errors,
            throttles,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            busy_ns: (busy_s * 1e9) as u64,
            durations: [0; BUCKETS],
        }
    }

    const G: Gauges = Gauges {
        cpu_utilization: 0.25,
        desired: 3,
        ready: 2,
    };

    #[tokio::test(start_paused = true)]
    async fn samples_are_the_deltas_of_each_second() {
        let mut r = SeriesRing::default();
        let t0 = Instant::now();
        let h = DurationHistogram::default();
        h.record(ms(3.0));
        let mut c = counters(1, 0, [0, 0, 0, 0], 0.003);
        c.durations = h.counts();
        r.record(100, t0, &c, G);
        let mut c2 = counters(6, 2, [1, 0, 0, 3], 1.003);
        c2.durations = h.counts();
        r.record(101, t0 + Duration::from_secs(1), &c2, G);
        let s: Vec<_> = r.since(0).copied().collect();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].t, s[0].invocations, s[0].errors), (100, 1, 0));
        assert!(s[0].p50_ms.is_some_and(|p| (p / 3.0 - 1.0).abs() < 0.25));
        assert_eq!((s[1].t, s[1].invocations, s[1].errors), (101, 5, 2));
        assert_eq!(s[1].throttles, [1, 0, 0, 3]);
        // No duration recorded in that second: no percentile.
        assert_eq!((s[1].p50_ms, s[1].p99_ms), (None, None));
        assert!((s[1].in_flight - 1.0).abs() < 1e-9);
        assert_eq!((s[1].desired, s[1].ready), (3, 2));
        assert_eq!(r.since(100).count(), 1);
        assert_eq!(r.since(101).count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_tick_in_the_same_second_merges_and_a_late_one_lumps() {
        let mut r = SeriesRing::default();
        let t0 = Instant::now();
        let h = DurationHistogram::default();
        r.record(100, t0, &counters(0, 0, [0; 4], 0.0), G);
        h.record(ms(1.0));
        let mut c = counters(1, 0, [0; 4], 0.5);
        c.durations = h.counts();
        r.record(101, t0 + Duration::from_millis(1000), &c, G);
        for _ in 0..9 {
            h.record(ms(100.0));
        }
        let mut c = counters(10, 1, [0, 1, 0, 0], 1.0);
        c.durations = h.counts();
        // Same second again (the clock read 101 twice): one sample with both ticks' counts.
        r.record(101, t0 + Duration::from_millis(1500), &c, G);
        let s: Vec<_> = r.since(0).copied().collect();
        assert_eq!(s.len(), 2);
        assert_eq!((s[1].t, s[1].invocations, s[1].errors), (101, 10, 1));
        assert_eq!(s[1].throttles, [0, 1, 0, 0]);
        // The merged second's median is among the 100 ms invokes, its busy time over 1.5 s.
        assert!(s[1].p50_ms.is_some_and(|p| (p / 100.0 - 1.0).abs() < 0.25));
        assert!((s[1].in_flight - 1.0 / 1.5).abs() < 1e-9);
        // Four seconds late: 102–104 are absent, 105 holds everything since 101.
        r.record(
            105,
            t0 + Duration::from_millis(5500),
            &counters(14, 1, [0, 1, 0, 0], 5.0),
            G,
        );
        let s: Vec<_> = r.since(0).copied().collect();
        assert_eq!(s.iter().map(|s| s.t).collect::<Vec<_>>(), [100, 101, 105]);
        assert_eq!(s[2].invocations, 4);
        assert_eq!(s.iter().map(|s| s.invocations).sum::<u64>(), 14);
        assert!((s[2].in_flight - 1.0).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ring_keeps_the_last_900_seconds() {
        let mut r = SeriesRing::default();
        let t0 = Instant::now();
        for i in 0..1000u64 {
            r.record(
                1000 + i,
                t0 + Duration::from_secs(i),
                &counters(i * 2, 0, [0; 4], 0.0),
                G,
            );
        }
        assert_eq!(r.len(), RING_SECONDS);
        let s: Vec<_> = r.since(0).copied().collect();
        assert_eq!(s[0].t, 1100);
        assert_eq!(s[RING_SECONDS - 1].t, 1999);
        assert!(s.iter().all(|s| s.invocations == 2));
        assert_eq!(r.since(1989).count(), 10);
        // Two a second over the last ten seconds.
        assert!((r.rate(1999) - 2.0).abs() < 1e-9);
        assert!((r.rate(2000) - 2.0).abs() < 1e-9);
        // Stale: nothing in the last ten seconds.
        assert!(r.rate(2100).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn counters_that_go_back_count_as_zero() {
        let mut r = SeriesRing::default();
        let t0 = Instant::now();
        r.record(1, t0, &counters(50, 5, [1; 4], 0.0), G);
        r.record(
            2,
            t0 + Duration::from_secs(1),
            &counters(3, 0, [0; 4], 0.0),
            G,
        );
        r.record(
            3,
            t0 + Duration::from_secs(2),
            &counters(4, 0, [0; 4], 0.0),
            G,
        );
        let inv: Vec<_> = r.since(0).map(|s| s.invocations).collect();
        assert_eq!(inv, [50, 0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_moves_with_the_monotonic_one() {
        let c = SeriesClock::default();
        let s0 = c.second(Instant::now());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(c.second(Instant::now()), s0 + 5);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(s0.abs_diff(wall) <= 1);
    }
}
