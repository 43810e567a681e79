//! The per-version environment scaler (LMI behaviour §4.1–4.2).
//!
//! From one version's utilization snapshot it computes how many environments the version wants:
//! enough to bring average CPU to the provider's target and to keep concurrency saturation at or
//! below [`MAX_SATURATION`], clamped to the version's `[min, max]`. Scale-out is immediate; scale-in
//! happens only after [`SCALE_IN_AFTER`] of sustained low use, by at most one step
//! ([`SCALE_IN_STEP_FRACTION`] of the fleet, at least one environment) per decision, and with
//! [`SCALE_IN_HEADROOM`] hysteresis so the smaller fleet does not immediately scale out again.
//!
//! Time is an input: [`VersionSnapshot::low_for`] is how long the load has been continuously low;
//! [`decide`] returns the next value for it given the time elapsed between decisions.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Target average CPU in `ScalingMode=Auto`.
pub const AUTO_TARGET_CPU: f64 = 0.5;
/// Concurrency saturation (in-flight / (envs × max concurrency)) the scaler keeps below.
pub const MAX_SATURATION: f64 = 0.8;
/// How long load must stay low before the first scale-in step.
pub const SCALE_IN_AFTER: Duration = Duration::from_secs(5 * 60);
/// Largest scale-in step, as a fraction of the current environments (at least one environment).
pub const SCALE_IN_STEP_FRACTION: f64 = 0.1;
/// Scale in only to a count at which utilization would be at most this fraction of its target.
pub const SCALE_IN_HEADROOM: f64 = 0.9;

/// The provider's scaling mode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ScalingMode {
    /// Lambda-tuned; fleetfn uses [`AUTO_TARGET_CPU`].
    Auto,
    /// `LambdaCapacityProviderAverageCPUUtilization` target, in percent (e.g. `50.0`).
    Manual { target_cpu_percent: f64 },
}

impl ScalingMode {
    /// Target average CPU as a fraction in `(0, 1]`.
    pub fn target_cpu(self) -> f64 {
        match self {
            Self::Auto => AUTO_TARGET_CPU,
            Self::Manual {
                target_cpu_percent: p,
            } if p.is_finite() && p > 0.0 => (p / 100.0).min(1.0),
            Self::Manual { .. } => AUTO_TARGET_CPU,
        }
    }
}

/// One version's state as the scaler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VersionSnapshot {
    /// Environments the version has now.
    pub current: u32,
    /// Average CPU utilization of those environments, 0..1.
    pub avg_cpu: f64,
    /// In-flight / (environments × per-environment max concurrency), 0..1 (may exceed 1 if queued).
    pub saturation: f64,
    pub min: u32,
    /// `None`: no maximum (the LMI default).
    pub max: Option<u32>,
    /// Target CPU fraction, see [`ScalingMode::target_cpu`].
    pub target_cpu: f64,
    /// How long the load has been continuously low (zero if it is not low).
    pub low_for: Duration,
    /// How long load must stay low before a scale-in step (normally [`SCALE_IN_AFTER`]; tests
    /// and operators may shorten it).
    #[serde(default = "default_scale_in_after")]
    pub scale_in_after: Duration,
}

fn default_scale_in_after() -> Duration {
    SCALE_IN_AFTER
}

/// The result of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Environments wanted.
    pub desired: u32,
    /// The value of `low_for` to pass to the next decision.
    pub low_for: Duration,
}

fn sanitize(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 { x } else { 0.0 }
}

fn target(s: &VersionSnapshot) -> f64 {
    let t = sanitize(s.target_cpu);
    if t > 0.0 { t.min(1.0) } else { AUTO_TARGET_CPU }
}

/// `ceil(current × ratio)` saturating at `u32::MAX`, with a little slack for float noise.
fn scaled(current: u32, ratio: f64) -> u32 {
    let v = (f64::from(current) * ratio - 1e-9).ceil();
    if v <= 0.0 {
        0
    } else if v >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        v as u32
    }
}

/// Environments the load needs at the targets (no hysteresis): the scale-out answer.
fn needed(s: &VersionSnapshot, slack: f64) -> u32 {
    let cpu = scaled(s.current, sanitize(s.avg_cpu) / (target(s) * slack));
    let sat = scaled(s.current, sanitize(s.saturation) / (MAX_SATURATION * slack));
    cpu.max(sat)
}

fn clamp(s: &VersionSnapshot, n: u32) -> u32 {
    let max = s.max.unwrap_or(u32::MAX).max(s.min);
    n.clamp(s.min, max)
}

/// Whether the load would fit in fewer environments (with headroom): the scale-in timer runs.
pub fn is_low(s: &VersionSnapshot) -> bool {
    needed(s, SCALE_IN_HEADROOM) < s.current
}

/// Environments the version wants, from its snapshot alone.
pub fn desired_environments(s: &VersionSnapshot) -> u32 {
    let out = needed(s, 1.0);
    let raw = if out > s.current {
        out
    } else if is_low(s) && s.low_for >= s.scale_in_after {
        let step = ((f64::from(s.current) * SCALE_IN_STEP_FRACTION).floor() as u32).max(1);
        needed(s, SCALE_IN_HEADROOM).max(s.current.saturating_sub(step))
    } else {
        s.current
    };
    clamp(s, raw)
}

/// One scaler tick: the desired count and the next `low_for`. `elapsed` is the time since the
/// previous decision. The timer restarts after any change of the count, so scale-in steps are at
/// least `scale_in_after` apart and each is re-validated on a fresh, settled snapshot.
pub fn decide(s: &VersionSnapshot, elapsed: Duration) -> Decision {
    let desired = desired_environments(s);
    let low_for = if desired != s.current || !is_low(s) {
        Duration::ZERO
    } else {
        s.low_for.saturating_add(elapsed)
    };
    Decision { desired, low_for }
}

#[cfg(test)]
mod tests;
