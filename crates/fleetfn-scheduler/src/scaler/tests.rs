use super::*;
use proptest::prelude::*;

fn snap(current: u32, avg_cpu: f64, saturation: f64) -> VersionSnapshot {
    VersionSnapshot {
        current,
        avg_cpu,
        saturation,
        min: 3,
        max: None,
        target_cpu: AUTO_TARGET_CPU,
        low_for: Duration::ZERO,
        scale_in_after: SCALE_IN_AFTER,
    }
}

#[test]
fn target_from_mode() {
    assert_eq!(ScalingMode::Auto.target_cpu(), 0.5);
    let m = ScalingMode::Manual {
        target_cpu_percent: 30.0,
    };
    assert!((m.target_cpu() - 0.3).abs() < 1e-12);
    let bad = ScalingMode::Manual {
        target_cpu_percent: f64::NAN,
    };
    assert_eq!(bad.target_cpu(), AUTO_TARGET_CPU);
    let over = ScalingMode::Manual {
        target_cpu_percent: 250.0,
    };
    assert_eq!(over.target_cpu(), 1.0);
}

#[test]
fn scales_out_at_once_on_cpu() {
    // 10 envs at 90 % with a 50 % target → 18.
    assert_eq!(desired_environments(&snap(10, 0.9, 0.1)), 18);
    // At target: unchanged.
    assert_eq!(desired_environments(&snap(10, 0.5, 0.1)), 10);
}

#[test]
fn scales_out_on_saturation() {
    // CPU is low but saturation 1.0 → ceil(10 × 1.0 / 0.8) = 13.
    assert_eq!(desired_environments(&snap(10, 0.1, 1.0)), 13);
    assert_eq!(desired_environments(&snap(10, 0.1, 0.8)), 10);
}

#[test]
fn manual_target_is_used() {
    let mut s = snap(10, 0.45, 0.0);
    s.target_cpu = 0.3;
    assert_eq!(desired_environments(&s), 15);
}

#[test]
fn clamps_to_min_and_max() {
    let mut s = snap(10, 1.0, 1.0);
    s.max = Some(12);
    assert_eq!(desired_environments(&s), 12);
    // Max lowered below current: applied at once.
    s.max = Some(4);
    s.avg_cpu = 0.5;
    assert_eq!(desired_environments(&s), 4);
    // Below min: raised at once.
    let s = snap(1, 0.0, 0.0);
    assert_eq!(desired_environments(&s), 3);
    // Zero envs, min 0: stays 0.
    let mut s = snap(0, 0.0, 0.0);
    s.min = 0;
    assert_eq!(desired_environments(&s), 0);
}

#[test]
fn no_scale_in_before_sustained_low() {
    let mut s = snap(20, 0.1, 0.0);
    assert!(is_low(&s));
    s.low_for = SCALE_IN_AFTER - Duration::from_secs(1);
    assert_eq!(desired_environments(&s), 20);
    s.low_for = SCALE_IN_AFTER;
    // One step: 10 % of 20 = 2.
    assert_eq!(desired_environments(&s), 18);
}

#[test]
fn scale_in_step_is_bounded_and_respects_headroom() {
    // Small fleet: step of one.
    let mut s = snap(5, 0.0, 0.0);
    s.low_for = SCALE_IN_AFTER;
    assert_eq!(desired_environments(&s), 4);
    // Headroom: 10 envs at 0.4 (load 4.0 env-CPU) need ceil(4 / 0.45) = 9 → step to 9 not lower.
    let mut s = snap(10, 0.4, 0.0);
    s.low_for = SCALE_IN_AFTER * 10;
    assert_eq!(desired_environments(&s), 9);
    // 10 envs at 0.46: ceil(4.6/0.45)=11 ≥ 10 → not low at all.
    let s = snap(10, 0.46, 0.0);
    assert!(!is_low(&s));
}

#[test]
fn garbage_inputs_do_not_panic() {
    for x in [f64::NAN, f64::INFINITY, -1.0, 1e300] {
        let mut s = snap(u32::MAX, x, x);
        s.target_cpu = x;
        s.low_for = Duration::MAX;
        let _ = desired_environments(&s);
        let _ = decide(&s, Duration::MAX);
    }
}

/// Drive `decide` with a constant load (`load` = total env-CPU busy, `inflight_share` = in-flight /
/// per-env max concurrency) and simulated 1 s ticks; the fleet follows the decision immediately.
fn simulate(start: u32, load: f64, inflight: f64, ticks: u32, min: u32) -> Vec<u32> {
    let mut s = snap(start, 0.0, 0.0);
    s.min = min;
    let mut out = Vec::new();
    for _ in 0..ticks {
        let n = f64::from(s.current.max(1));
        s.avg_cpu = (load / n).min(1.0);
        s.saturation = inflight / n;
        let d = decide(&s, Duration::from_secs(1));
        s.current = d.desired;
        s.low_for = d.low_for;
        out.push(d.desired);
    }
    out
}

#[test]
fn paused_time_scale_in_is_gradual() {
    // 40 envs, load drops to 2 env-CPU: nothing for 5 min, then one step every 5 min.
    let counts = simulate(40, 2.0, 0.0, 3600, 3);
    // Tick k sees low_for = k s.
    assert!(counts[..300].iter().all(|&c| c == 40));
    assert_eq!(counts[300], 36);
    assert!(counts[301..601].iter().all(|&c| c == 36));
    assert!(counts[601] < 36);
    // Never drops more than 10 % (or 1) at once, ends ≥ what the load needs.
    for w in counts.windows(2) {
        assert!(w[1] >= w[0] || w[0] - w[1] <= (w[0] / 10).max(1));
    }
    assert!(*counts.last().unwrap() >= 5);
}

#[test]
fn steady_load_does_not_flap() {
    for (start, load) in [(10, 5.0), (10, 5.1), (3, 1.5), (50, 26.3), (7, 0.2)] {
        let counts = simulate(start, load, 0.0, 4 * 3600, 3);
        let tail = &counts[counts.len() - 1800..];
        assert!(
            tail.iter().all(|&c| c == tail[0]),
            "start {start} load {load}: {tail:?}"
        );
        // And it never went up after having gone down (no oscillation).
        let mut went_down = false;
        for w in counts.windows(2) {
            if w[1] < w[0] {
                went_down = true;
            }
            assert!(
                !(went_down && w[1] > w[0]),
                "start {start} load {load} flapped"
            );
        }
    }
}

fn arb_snapshot() -> impl Strategy<Value = VersionSnapshot> {
    (
        0u32..2000,
        0.0f64..=1.0,
        0.0f64..=1.5,
        0u32..50,
        proptest::option::of(0u32..3000),
        0.05f64..=1.0,
        0u64..1200,
    )
        .prop_map(
            |(current, cpu, sat, min, max, target, low)| VersionSnapshot {
                current,
                avg_cpu: cpu,
                saturation: sat,
                min,
                max,
                target_cpu: target,
                low_for: Duration::from_secs(low),
                scale_in_after: SCALE_IN_AFTER,
            },
        )
}

proptest! {
    #[test]
    fn never_below_min_or_above_max(s in arb_snapshot()) {
        let d = desired_environments(&s);
        prop_assert!(d >= s.min);
        if let Some(max) = s.max {
            prop_assert!(d <= max.max(s.min));
        }
    }

    #[test]
    fn monotone_in_load(s in arb_snapshot(), dcpu in 0.0f64..0.5, dsat in 0.0f64..0.5) {
        let mut more = s;
        more.avg_cpu = (s.avg_cpu + dcpu).min(1.0);
        more.saturation = s.saturation + dsat;
        prop_assert!(desired_environments(&more) >= desired_environments(&s));
    }

    #[test]
    fn scale_in_is_bounded(s in arb_snapshot()) {
        let d = desired_environments(&s);
        let floor = s.current.saturating_sub((s.current / 10).max(1));
        // Only a lowered max can remove more than one step at once.
        prop_assert!(d >= floor.min(s.max.unwrap_or(u32::MAX).max(s.min)));
        if s.low_for < SCALE_IN_AFTER && s.max.is_none_or(|m| m >= s.current) {
            prop_assert!(d >= s.current);
        }
    }

    #[test]
    fn at_target_is_fixed_point(current in 3u32..2000, target in 0.05f64..=1.0, sat in 0.0f64..=0.8, low in 0u64..100_000) {
        let s = VersionSnapshot {
            current,
            avg_cpu: target,
            saturation: sat,
            min: 3,
            max: None,
            target_cpu: target,
            low_for: Duration::from_secs(low),
            scale_in_after: SCALE_IN_AFTER,
        };
        let d = decide(&s, Duration::from_secs(1));
        prop_assert_eq!(d.desired, current);
        prop_assert_eq!(d.low_for, Duration::ZERO);
    }

    #[test]
    fn steady_load_converges(start in 1u32..200, load in 0.0f64..100.0) {
        let counts = simulate(start, load, 0.0, 6 * 3600, 1);
        let tail = &counts[counts.len() - 600..];
        prop_assert!(tail.iter().all(|&c| c == tail[0]));
        // The resting count keeps CPU at or below target.
        let n = f64::from(tail[0]);
        prop_assert!(load.min(n) / n <= AUTO_TARGET_CPU + 1e-9 || tail[0] == 1 && load <= 1.0);
    }
}
