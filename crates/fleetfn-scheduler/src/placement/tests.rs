use super::*;
use crate::catalog::Catalog;
use proptest::prelude::*;

fn zones(n: usize) -> Vec<String> {
    ["use1-az1", "use1-az2", "use1-az4", "use1-az6"][..n]
        .iter()
        .map(|z| (*z).to_owned())
        .collect()
}

fn limits(max_vcpu: u32, arch: Arch) -> ProviderLimits {
    ProviderLimits {
        max_vcpu,
        arch,
        instance_types: Catalog::builtin().allowed(arch, None, None),
    }
}

fn req(version: &str, vcpus: f64, memory_gib: u64, count: u32, min: u32) -> EnvRequest {
    EnvRequest {
        version: version.to_owned(),
        vcpus,
        memory_mib: memory_gib * 1024,
        count,
        min,
    }
}

/// The fleet after applying a plan (launched instances get ids `new-<i>` and state pending).
fn apply(input: &PlacementInput, plan: &Plan) -> Vec<Instance> {
    let mut fleet = input.instances.clone();
    let base = fleet.len();
    for (i, l) in plan.launches.iter().enumerate() {
        fleet.push(Instance {
            id: format!("new-{i}"),
            instance_type: l.instance_type.clone(),
            zone: l.zone.clone(),
            state: InstanceState::Pending,
            environments: vec![],
        });
    }
    for a in &plan.assignments {
        let idx = match &a.target {
            Target::Existing(id) => fleet.iter().position(|f| &f.id == id).unwrap(),
            Target::Launch(i) => base + i,
        };
        assert_eq!(
            fleet[idx].zone, a.zone,
            "assignment zone matches instance zone"
        );
        fleet[idx].environments.push(PlacedEnv {
            version: a.version.clone(),
            vcpus: a.vcpus,
            memory_mib: a.memory_mib,
        });
    }
    fleet
}

fn total_vcpu(fleet: &[Instance]) -> u64 {
    fleet
        .iter()
        .filter(|i| i.state.counts_toward_limit())
        .map(|i| u64::from(i.instance_type.vcpus))
        .sum()
}

fn fits(i: &Instance) -> bool {
    let (m, mib) = usable(&i.instance_type);
    let used_m: u64 = i.environments.iter().map(|e| to_milli(e.vcpus)).sum();
    let used_mib: u64 = i.environments.iter().map(|e| e.memory_mib).sum();
    used_m <= m && used_mib <= mib
}

fn per_zone(fleet: &[Instance], zones: &[String], version: &str) -> Vec<u32> {
    zones
        .iter()
        .map(|z| {
            fleet
                .iter()
                .filter(|i| &i.zone == z && i.state.accepts_environments())
                .flat_map(|i| &i.environments)
                .filter(|e| e.version == version)
                .count() as u32
        })
        .collect()
}

#[test]
fn min_three_spread_over_three_zones_on_cheapest_fitting_type() {
    let input = PlacementInput {
        limits: limits(400, Arch::Arm64),
        zones: zones(3),
        instances: vec![],
        requests: vec![req("f:1", 1.0, 2, 3, 3)],
    };
    let plan = place(&input);
    assert!(plan.unplaced.is_empty());
    assert_eq!(plan.launches.len(), 3);
    // 1 vCPU / 2 GiB fits c7g.large (2 vCPU / 4 GiB minus 1 + 1 overhead), the cheapest arm64.
    assert!(
        plan.launches
            .iter()
            .all(|l| l.instance_type.name == "c7g.large")
    );
    let fleet = apply(&input, &plan);
    assert_eq!(per_zone(&fleet, &input.zones, "f:1"), vec![1, 1, 1]);
}

#[test]
fn memory_heavy_env_picks_memory_type() {
    // 1 vCPU / 8 GiB (8:1 ratio) needs ≥ 9 GiB: r7g.large (16 GiB) beats m7g.xlarge on price.
    let input = PlacementInput {
        limits: limits(400, Arch::Arm64),
        zones: zones(1),
        instances: vec![],
        requests: vec![req("f:1", 1.0, 8, 1, 1)],
    };
    let plan = place(&input);
    assert_eq!(plan.launches[0].instance_type.name, "r7g.large");
}

#[test]
fn packs_onto_existing_instances_first_and_shares_between_functions() {
    let t = Catalog::builtin().get("m7g.2xlarge").unwrap().clone(); // 8 vCPU, 32 GiB → 7 / 31 usable
    let inst = |id: &str, zone: &str| Instance {
        id: id.into(),
        instance_type: t.clone(),
        zone: zone.into(),
        state: InstanceState::Running,
        environments: vec![PlacedEnv {
            version: "other:1".into(),
            vcpus: 2.0,
            memory_mib: 4096,
        }],
    };
    let input = PlacementInput {
        limits: limits(400, Arch::Arm64),
        zones: zones(2),
        instances: vec![inst("i-a", "use1-az1"), inst("i-b", "use1-az2")],
        requests: vec![req("f:1", 2.0, 4, 4, 2), req("other:1", 2.0, 4, 2, 1)],
    };
    let plan = place(&input);
    assert!(plan.launches.is_empty(), "{plan:?}");
    assert!(plan.unplaced.is_empty());
    let fleet = apply(&input, &plan);
    assert!(fleet.iter().all(fits));
    assert_eq!(per_zone(&fleet, &input.zones, "f:1"), vec![2, 2]);
    assert_eq!(per_zone(&fleet, &input.zones, "other:1"), vec![1, 1]);
    // Draining instances take nothing new and their envs do not count.
    let mut input2 = input.clone();
    input2.instances[0].state = InstanceState::Draining;
    let plan2 = place(&input2);
    let fleet2 = apply(&input2, &plan2);
    assert!(fleet2[0].environments.len() == 1);
    // other:1 lost its az1 env (draining) and gets a new one there; f:1 needs two in az1 too.
    assert_eq!(per_zone(&fleet2, &input2.zones, "other:1"), vec![1, 1]);
    assert_eq!(per_zone(&fleet2, &input2.zones, "f:1"), vec![2, 2]);
    assert!(plan2.launches.iter().all(|l| l.zone == "use1-az1"));
    assert!(fleet2.iter().all(fits));
}

#[test]
fn launch_type_sized_for_pending_demand() {
    // 6 envs of 2 vCPU / 4 GiB over 2 zones: 3 per zone. A c7g.2xlarge (7 usable vCPU) holds 3
    // for $0.29 where three c7g.xlarge (3 usable each, one env) cost $0.435.
    let input = PlacementInput {
        limits: limits(400, Arch::Arm64),
        zones: zones(2),
        instances: vec![],
        requests: vec![req("f:1", 2.0, 4, 6, 2)],
    };
    let plan = place(&input);
    assert!(plan.unplaced.is_empty());
    assert_eq!(plan.launches.len(), 2, "{:?}", plan.launches);
    assert!(
        plan.launches
            .iter()
            .all(|l| l.instance_type.name == "c7g.2xlarge")
    );
}

#[test]
fn max_vcpu_blocks_with_scaling_limit_exceeded() {
    // 4 vCPU envs need an xlarge-or-bigger... c7g.2xlarge (8 vCPU, 7 usable) holds one; cap 12.
    let input = PlacementInput {
        limits: limits(12, Arch::Arm64),
        zones: zones(3),
        instances: vec![],
        requests: vec![req("f:1", 4.0, 8, 3, 3)],
    };
    let plan = place(&input);
    assert!(total_vcpu(&apply(&input, &plan)) <= 12);
    let u = &plan.unplaced[0];
    assert_eq!(
        u.reason,
        PlacementError::CapacityProviderScalingLimitExceeded
    );
    assert!(u.below_min);
    assert_eq!(plan.failed_minimums().count(), 1);
    assert_eq!(
        u.reason.to_string(),
        "CapacityProviderScalingLimitExceeded: MaxVCpuCount reached"
    );
}

#[test]
fn minimums_are_served_before_extra() {
    // Cap allows two c7g.xlarge (4 vCPU, 3 usable); each env is 1 vCPU / 2 GiB → 6 envs max.
    let mut l = limits(8, Arch::Arm64);
    l.instance_types.retain(|t| t.name == "c7g.xlarge");
    let input = PlacementInput {
        limits: l,
        zones: zones(2),
        instances: vec![],
        requests: vec![req("big:1", 1.0, 2, 20, 2), req("small:1", 1.0, 2, 2, 2)],
    };
    let plan = place(&input);
    assert!(plan.failed_minimums().next().is_none(), "{plan:?}");
    let big = plan.unplaced.iter().find(|u| u.version == "big:1").unwrap();
    assert!(!big.below_min);
    assert_eq!(big.missing, 20 - 4);
}

#[test]
fn env_larger_than_any_type() {
    let mut l = limits(400, Arch::X86_64);
    l.instance_types
        .retain(|t| t.family == "c7i" && t.vcpus <= 4);
    let input = PlacementInput {
        limits: l,
        zones: zones(1),
        instances: vec![],
        requests: vec![req("f:1", 8.0, 16, 1, 1)],
    };
    let plan = place(&input);
    assert_eq!(plan.unplaced[0].reason, PlacementError::NoInstanceTypeFits);
}

#[test]
fn no_zones_and_wrong_arch_types_are_ignored() {
    let input = PlacementInput {
        limits: limits(400, Arch::Arm64),
        zones: vec![],
        instances: vec![],
        requests: vec![req("f:1", 1.0, 2, 1, 1)],
    };
    assert_eq!(place(&input).unplaced[0].reason, PlacementError::NoZones);
    let mut l = limits(400, Arch::Arm64);
    l.instance_types = Catalog::builtin().allowed(Arch::X86_64, None, None);
    let input = PlacementInput {
        limits: l,
        zones: zones(1),
        instances: vec![],
        requests: vec![req("f:1", 1.0, 2, 1, 1)],
    };
    assert_eq!(
        place(&input).unplaced[0].reason,
        PlacementError::NoInstanceTypeFits
    );
}

#[test]
fn already_satisfied_is_a_no_op() {
    let input = PlacementInput {
        limits: limits(400, Arch::Arm64),
        zones: zones(3),
        instances: vec![],
        requests: vec![req("f:1", 1.0, 2, 3, 3)],
    };
    let plan = place(&input);
    let again = PlacementInput {
        instances: apply(&input, &plan),
        ..input
    };
    assert_eq!(place(&again), Plan::default());
}

fn arb_input() -> impl Strategy<Value = PlacementInput> {
    let req = (0usize..3, 0usize..4, 0usize..3, 0u32..12, 0u32..4).prop_map(
        |(v, cpu, ratio, count, min)| {
            let vcpus = [1u64, 2, 4, 8][cpu];
            let gib = vcpus * [2u64, 4, 8][ratio];
            EnvRequest {
                version: format!("f{v}:1"),
                vcpus: vcpus as f64,
                memory_mib: gib * 1024,
                count,
                min,
            }
        },
    );
    (
        2u32..200,
        prop::bool::ANY,
        1usize..=4,
        prop::collection::vec(req, 1..5),
        prop::collection::vec(0usize..15, 1..15),
    )
        .prop_map(|(max_vcpu, arm, nz, mut reqs, allowed_idx)| {
            // One request per version.
            reqs.sort_by(|a, b| a.version.cmp(&b.version));
            reqs.dedup_by(|a, b| a.version == b.version);
            let arch = if arm { Arch::Arm64 } else { Arch::X86_64 };
            let all = Catalog::builtin().allowed(arch, None, None);
            let mut types: Vec<InstanceType> =
                allowed_idx.into_iter().map(|i| all[i].clone()).collect();
            types.dedup_by(|a, b| a.name == b.name);
            PlacementInput {
                limits: ProviderLimits {
                    max_vcpu,
                    arch,
                    instance_types: types,
                },
                zones: zones(nz),
                instances: vec![],
                requests: reqs,
            }
        })
}

fn check_invariants(input: &PlacementInput, plan: &Plan) -> Result<Vec<Instance>, TestCaseError> {
    let fleet = apply(input, plan);
    let before = total_vcpu(&input.instances);
    prop_assert!(total_vcpu(&fleet) <= u64::from(input.limits.max_vcpu).max(before));
    for i in &fleet {
        prop_assert!(fits(i), "instance over capacity: {i:?}");
    }
    for l in &plan.launches {
        prop_assert!(input.limits.instance_types.contains(&l.instance_type));
        prop_assert_eq!(l.instance_type.arch, input.limits.arch);
    }
    for r in &input.requests {
        let pz = per_zone(&fleet, &input.zones, &r.version);
        let (lo, hi) = (pz.iter().min().unwrap(), pz.iter().max().unwrap());
        prop_assert!(hi - lo <= 1, "{} unbalanced: {pz:?}", r.version);
        let placed: u32 = pz.iter().sum();
        let want = r.count.max(r.min);
        prop_assert!(placed <= want);
        let missing = plan
            .unplaced
            .iter()
            .find(|u| u.version == r.version)
            .map_or(0, |u| u.missing);
        prop_assert_eq!(placed + missing, want);
    }
    // Launch only when needed: every launched instance got at least one environment.
    for (i, _) in plan.launches.iter().enumerate() {
        prop_assert!(
            plan.assignments
                .iter()
                .any(|a| a.target == Target::Launch(i))
        );
    }
    Ok(fleet)
}

proptest! {
    #[test]
    fn placement_invariants(input in arb_input()) {
        let plan = place(&input);
        check_invariants(&input, &plan)?;
    }

    #[test]
    fn placement_invariants_hold_incrementally(input in arb_input(), extra in 0u32..10) {
        // Place, then grow every version and place again onto the resulting fleet (now running).
        let plan = place(&input);
        let mut fleet = check_invariants(&input, &plan)?;
        for i in &mut fleet {
            i.state = InstanceState::Running;
        }
        let mut next = input.clone();
        next.instances = fleet;
        for r in &mut next.requests {
            r.count += extra;
        }
        let plan2 = place(&next);
        check_invariants(&next, &plan2)?;
        // Nothing is launched while an existing instance in a balancing zone could take it:
        // with no growth, the second plan is empty.
        if extra == 0 {
            prop_assert!(plan2.launches.is_empty() && plan2.assignments.is_empty());
        }
    }

    #[test]
    fn placement_is_deterministic(input in arb_input()) {
        prop_assert_eq!(place(&input), place(&input));
    }
}

#[test]
fn unpriced_types_come_after_priced_ones_smallest_first() {
    // m7g (priced up to .8xlarge) and m8g (unpriced): a 2 vCPU / 8 GiB environment fits a
    // priced m7g.xlarge, so that is launched even though m8g.xlarge has the same shape.
    let mut l = limits(400, Arch::Arm64);
    l.instance_types
        .retain(|t| t.family == "m7g" || t.family == "m8g");
    let one = |l: ProviderLimits, vcpus: f64, gib: u64| {
        let input = PlacementInput {
            limits: l,
            zones: zones(1),
            instances: vec![],
            requests: vec![req("f:1", vcpus, gib, 1, 1)],
        };
        place(&input).launches[0].instance_type.name.clone()
    };
    assert_eq!(one(l.clone(), 2.0, 8), "m7g.xlarge");
    // 40 vCPU fits no priced type (m7g.8xlarge has 31 usable): the smallest unpriced that fits.
    assert_eq!(one(l.clone(), 40.0, 80), "m7g.12xlarge");
    // Only unpriced types allowed: the smallest that fits, never a guessed price.
    let mut only_new = l;
    only_new.instance_types.retain(|t| t.family == "m8g");
    assert!(
        only_new
            .instance_types
            .iter()
            .all(|t| t.hourly_usd.is_none())
    );
    assert_eq!(one(only_new, 2.0, 8), "m8g.xlarge");
}
