//! Placement: bin-pack execution environments onto the instances of one capacity provider.
//!
//! Rules (LMI behaviour §2.1, §3.1, §4.3):
//! - each instance reserves [`OVERHEAD_MVCPU`] (1 vCPU) and [`OVERHEAD_MIB`] (1 GiB) for the OS;
//! - environments of different functions share instances within one provider (one call = one
//!   provider; there is no way to express another provider's instance here);
//! - each version's environments are spread across zones so per-zone counts differ by at most one;
//! - existing (pending or running) instances are filled first (best fit); a new instance is
//!   launched only when none fits, choosing the allowed type with the lowest price per
//!   environment for the version's remaining demand in that zone (for a single environment: the
//!   cheapest type that fits; ties: fewer vCPUs); types without a price come after all priced
//!   ones, ranked by vCPUs per environment (never by an invented price);
//! - the vCPUs of all non-terminated instances plus launches never exceed `max_vcpu`
//!   (`MaxVCpuCount`); a version that cannot get its minimum is reported with
//!   [`PlacementError::CapacityProviderScalingLimitExceeded`];
//! - minimums of all versions are placed before anything above a minimum.
//!
//! Draining instances count toward `max_vcpu` but take no new environments, and their environments
//! do not count toward a version's placed total (they are going away). Scale-in (choosing which
//! environments to stop) is not decided here.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{Arch, InstanceType};

/// vCPUs are handled in thousandths to keep the arithmetic exact.
pub const MILLI: u64 = 1000;
/// Per-instance OS reservation: 1 vCPU.
pub const OVERHEAD_MVCPU: u64 = MILLI;
/// Per-instance OS reservation: 1 GiB.
pub const OVERHEAD_MIB: u64 = 1024;

/// Lifecycle state of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    Pending,
    Running,
    Draining,
    Terminated,
}

impl InstanceState {
    /// Counts toward `MaxVCpuCount`.
    pub fn counts_toward_limit(self) -> bool {
        !matches!(self, Self::Terminated)
    }
    /// May receive new environments (a pending instance receives them once it is up).
    pub fn accepts_environments(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

/// An environment already on an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacedEnv {
    /// Version key, e.g. `arn:aws:lambda:…:function:f:3`.
    pub version: String,
    pub vcpus: f64,
    pub memory_mib: u64,
}

/// An instance of the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub instance_type: InstanceType,
    pub zone: String,
    pub state: InstanceState,
    pub environments: Vec<PlacedEnv>,
}

/// The provider's limits and usable instance types (already filtered, e.g. by
/// [`crate::Catalog::allowed`]; types of another architecture are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderLimits {
    /// `MaxVCpuCount`: total vCPUs of the provider's non-terminated instances.
    pub max_vcpu: u32,
    pub arch: Arch,
    pub instance_types: Vec<InstanceType>,
}

/// How many environments a version wants in total (including those already placed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvRequest {
    pub version: String,
    /// vCPUs per environment (memory ÷ ratio).
    pub vcpus: f64,
    pub memory_mib: u64,
    /// Desired total (the scaler's answer); `max(count, min)` is placed.
    pub count: u32,
    /// The version's minimum; failing to reach it is `CapacityProviderScalingLimitExceeded`.
    pub min: u32,
}

/// Everything placement looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementInput {
    pub limits: ProviderLimits,
    /// The provider's zones, in preference order.
    pub zones: Vec<String>,
    pub instances: Vec<Instance>,
    pub requests: Vec<EnvRequest>,
}

/// Where an assignment goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// An existing instance, by id.
    Existing(String),
    /// A new instance: index into [`Plan::launches`].
    Launch(usize),
}

/// Start one environment of `version` on `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub version: String,
    pub zone: String,
    pub target: Target,
    pub vcpus: f64,
    pub memory_mib: u64,
}

/// Launch one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub instance_type: InstanceType,
    pub zone: String,
}

/// Why environments could not be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PlacementError {
    /// Launching the instance needed would exceed `MaxVCpuCount`.
    #[error("CapacityProviderScalingLimitExceeded: MaxVCpuCount reached")]
    CapacityProviderScalingLimitExceeded,
    /// No allowed instance type (after the per-instance overhead) fits one environment.
    #[error("no allowed instance type fits the execution environment")]
    NoInstanceTypeFits,
    /// The provider has no zones.
    #[error("the capacity provider has no zones")]
    NoZones,
}

/// Environments of a version that could not be placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unplaced {
    pub version: String,
    /// How many environments are missing from the wanted total.
    pub missing: u32,
    /// Whether the version is below its minimum (it should fail with `reason`).
    pub below_min: bool,
    pub reason: PlacementError,
}

/// The result of [`place`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub assignments: Vec<Assignment>,
    pub launches: Vec<Launch>,
    pub unplaced: Vec<Unplaced>,
}

impl Plan {
    /// Versions that cannot get their minimum.
    pub fn failed_minimums(&self) -> impl Iterator<Item = &Unplaced> {
        self.unplaced.iter().filter(|u| u.below_min)
    }
}

/// Converts vCPUs to thousandths (negative/NaN → 0).
pub fn to_milli(vcpus: f64) -> u64 {
    if vcpus.is_finite() && vcpus > 0.0 {
        (vcpus * MILLI as f64).round() as u64
    } else {
        0
    }
}

/// Usable capacity of an instance type after the OS reservation: (milli-vCPU, MiB).
pub fn usable(t: &InstanceType) -> (u64, u64) {
    (
        (u64::from(t.vcpus) * MILLI).saturating_sub(OVERHEAD_MVCPU),
        t.memory_mib.saturating_sub(OVERHEAD_MIB),
    )
}

struct Bin {
    target: Target,
    zone: usize,
    free_mvcpu: i128,
    free_mib: i128,
    accepts: bool,
}

struct Req<'a> {
    r: &'a EnvRequest,
    mvcpu: u64,
    /// Environments of this version per zone (index into `zones`).
    per_zone: Vec<u32>,
    placed: u32,
    blocked: Option<PlacementError>,
}

/// Decide where the wanted environments go. Pure: depends only on `input`.
pub fn place(input: &PlacementInput) -> Plan {
    let zones = &input.zones;
    let zone_idx: HashMap<&str, usize> = zones
        .iter()
        .enumerate()
        .map(|(i, z)| (z.as_str(), i))
        .collect();
    let mut plan = Plan::default();

    // Candidate types for launches: right arch, cheapest first (unpriced after priced, smallest
    // first), ties by size then name.
    let mut types: Vec<&InstanceType> = input
        .limits
        .instance_types
        .iter()
        .filter(|t| t.arch == input.limits.arch)
        .collect();
    types.sort_by(|a, b| {
        let (ua, pa) = a.price_rank();
        let (ub, pb) = b.price_rank();
        ua.cmp(&ub)
            .then(pa.total_cmp(&pb))
            .then(a.vcpus.cmp(&b.vcpus))
            .then(a.memory_mib.cmp(&b.memory_mib))
            .then_with(|| a.name.cmp(&b.name))
    });

    let mut used_vcpu: u64 = 0;
    let mut bins: Vec<Bin> = Vec::new();
    let mut reqs: Vec<Req<'_>> = input
        .requests
        .iter()
        .map(|r| Req {
            r,
            mvcpu: to_milli(r.vcpus),
            per_zone: vec![0; zones.len()],
            placed: 0,
            blocked: None,
        })
        .collect();
    let by_version: HashMap<&str, usize> = reqs
        .iter()
        .enumerate()
        .map(|(i, q)| (q.r.version.as_str(), i))
        .collect();

    for inst in &input.instances {
        if !inst.state.counts_toward_limit() {
            continue;
        }
        used_vcpu += u64::from(inst.instance_type.vcpus);
        let (cap_m, cap_mib) = usable(&inst.instance_type);
        let mut free_m = i128::from(cap_m);
        let mut free_mib = i128::from(cap_mib);
        for e in &inst.environments {
            free_m -= i128::from(to_milli(e.vcpus));
            free_mib -= i128::from(e.memory_mib);
        }
        let zone = zone_idx.get(inst.zone.as_str()).copied();
        if inst.state.accepts_environments() {
            for e in &inst.environments {
                if let Some(&qi) = by_version.get(e.version.as_str()) {
                    reqs[qi].placed += 1;
                    if let Some(z) = zone {
                        reqs[qi].per_zone[z] += 1;
                    }
                }
            }
        }
        if let Some(z) = zone {
            bins.push(Bin {
                target: Target::Existing(inst.id.clone()),
                zone: z,
                free_mvcpu: free_m,
                free_mib,
                accepts: inst.state.accepts_environments(),
            });
        }
    }

    let max_vcpu = u64::from(input.limits.max_vcpu);
    for phase_min in [true, false] {
        loop {
            let mut progress = false;
            for q in reqs.iter_mut() {
                let total = q.r.count.max(q.r.min);
                let goal = if phase_min { q.r.min } else { total };
                if q.blocked.is_some() || q.placed >= goal {
                    continue;
                }
                match place_one(
                    q,
                    zones,
                    &types,
                    &mut bins,
                    &mut used_vcpu,
                    max_vcpu,
                    &mut plan,
                ) {
                    Ok(()) => progress = true,
                    Err(e) => q.blocked = Some(e),
                }
            }
            if !progress {
                break;
            }
        }
    }

    for q in &reqs {
        let total = q.r.count.max(q.r.min);
        if q.placed < total {
            plan.unplaced.push(Unplaced {
                version: q.r.version.clone(),
                missing: total - q.placed,
                below_min: q.placed < q.r.min,
                reason: q
                    .blocked
                    .unwrap_or(PlacementError::CapacityProviderScalingLimitExceeded),
            });
        }
    }
    plan
}

fn place_one(
    q: &mut Req<'_>,
    zones: &[String],
    types: &[&InstanceType],
    bins: &mut Vec<Bin>,
    used_vcpu: &mut u64,
    max_vcpu: u64,
    plan: &mut Plan,
) -> Result<(), PlacementError> {
    let Some(&least) = q.per_zone.iter().min() else {
        return Err(PlacementError::NoZones);
    };
    // Only zones at the minimum keep the version balanced within one.
    let candidate = |z: usize| q.per_zone[z] == least;
    let need_m = i128::from(q.mvcpu);
    let need_mib = i128::from(q.r.memory_mib);

    // Best fit among instances (existing or launched by this plan) in candidate zones:
    // least vCPU left over, then least memory left over.
    let best = bins
        .iter()
        .enumerate()
        .filter(|(_, b)| b.accepts && candidate(b.zone))
        .filter(|(_, b)| b.free_mvcpu >= need_m && b.free_mib >= need_mib)
        .min_by_key(|(i, b)| (b.free_mvcpu - need_m, b.free_mib - need_mib, *i))
        .map(|(i, _)| i);

    let bi = match best {
        Some(i) => i,
        None => {
            let fitting: Vec<&&InstanceType> = types
                .iter()
                .filter(|t| {
                    let (m, mib) = usable(t);
                    m >= q.mvcpu && mib >= q.r.memory_mib
                })
                .collect();
            if fitting.is_empty() {
                return Err(PlacementError::NoInstanceTypeFits);
            }
            let zone = (0..zones.len())
                .find(|&z| candidate(z))
                .ok_or(PlacementError::NoZones)?;
            // This version's environments still headed for `zone` if it ends up balanced.
            let total = q.r.count.max(q.r.min);
            let share = total.div_ceil(zones.len() as u32);
            let pending = u64::from(share.saturating_sub(q.per_zone[zone]).max(1));
            // Cheapest per environment for that demand; with one pending environment this is
            // simply the cheapest type that fits. Ties: fewer vCPUs (keeps MaxVCpuCount room).
            let t = fitting
                .into_iter()
                .filter(|t| *used_vcpu + u64::from(t.vcpus) <= max_vcpu)
                .map(|t| {
                    let (m, mib) = usable(t);
                    let per_inst = (m / q.mvcpu.max(1)).min(mib / q.r.memory_mib.max(1));
                    let envs = per_inst.min(pending).max(1) as f64;
                    // Unpriced types come after priced ones, ranked by vCPUs per environment.
                    let (unpriced, rank) = t.price_rank();
                    ((unpriced, rank / envs), t)
                })
                .min_by(|((ua, ca), a), ((ub, cb), b)| {
                    ua.cmp(ub)
                        .then(ca.total_cmp(cb))
                        .then(a.vcpus.cmp(&b.vcpus))
                        .then(a.price_rank().1.total_cmp(&b.price_rank().1))
                })
                .map(|(_, t)| t)
                .ok_or(PlacementError::CapacityProviderScalingLimitExceeded)?;
            *used_vcpu += u64::from(t.vcpus);
            let (m, mib) = usable(t);
            plan.launches.push(Launch {
                instance_type: (*t).clone(),
                zone: zones[zone].clone(),
            });
            bins.push(Bin {
                target: Target::Launch(plan.launches.len() - 1),
                zone,
                free_mvcpu: i128::from(m),
                free_mib: i128::from(mib),
                accepts: true,
            });
            bins.len() - 1
        }
    };

    let b = &mut bins[bi];
    b.free_mvcpu -= need_m;
    b.free_mib -= need_mib;
    q.per_zone[b.zone] += 1;
    q.placed += 1;
    plan.assignments.push(Assignment {
        version: q.r.version.clone(),
        zone: zones[b.zone].clone(),
        target: b.target.clone(),
        vcpus: q.r.vcpus,
        memory_mib: q.r.memory_mib,
    });
    Ok(())
}

#[cfg(test)]
mod tests;
