//! Cost of one scaler tick's decisions at scale: 1,000 versions over 100 instances (10 capacity
//! providers × 10 instances, 100 versions each, 3 environments per version already placed),
//! every version re-decided with `decide` and every provider re-placed with `place`.
//! Run: `cargo run --release -p fleetfn-scheduler --example tick_cost`.

use std::time::{Duration, Instant};

use fleetfn_scheduler::{
    Arch, Catalog, EnvRequest, Instance, InstanceState, PlacedEnv, PlacementInput, ProviderLimits,
    VersionSnapshot, decide, place,
};

fn main() {
    let catalog = Catalog::builtin();
    let big = catalog.get("m7i.8xlarge").cloned().expect("catalog type");
    let zones: Vec<String> = ["a", "b", "c"].iter().map(|z| (*z).to_string()).collect();
    let mut inputs = Vec::new();
    let mut snapshots = Vec::new();
    for p in 0..10 {
        let mut instances: Vec<Instance> = (0..10)
            .map(|i| Instance {
                id: format!("i-{p}-{i}"),
                instance_type: big.clone(),
                zone: zones[i % 3].clone(),
                state: InstanceState::Running,
                environments: Vec::new(),
            })
            .collect();
        let mut requests = Vec::new();
        for v in 0..100 {
            let version = format!("fn-{p}-{v}/1");
            for k in 0..3 {
                let idx = (v * 3 + k) % 10;
                instances[idx].environments.push(PlacedEnv {
                    version: version.clone(),
                    vcpus: 0.25,
                    memory_mib: 512,
                });
            }
            // A tenth of the versions want one more environment this tick.
            requests.push(EnvRequest {
                version,
                vcpus: 0.25,
                memory_mib: 512,
                count: if v % 10 == 0 { 4 } else { 3 },
                min: 3,
            });
            snapshots.push(VersionSnapshot {
                current: 3,
                avg_cpu: 0.2 + (v % 7) as f64 * 0.1,
                saturation: 0.3,
                min: 3,
                max: Some(30),
                target_cpu: 0.5,
                low_for: Duration::from_secs((v % 400) as u64),
                scale_in_after: Duration::from_secs(300),
            });
        }
        inputs.push(PlacementInput {
            limits: ProviderLimits {
                max_vcpu: 400,
                arch: Arch::X86_64,
                instance_types: catalog.allowed(Arch::X86_64, None, None),
            },
            zones: zones.clone(),
            instances,
            requests,
        });
    }
    let rounds = 50;
    let mut best = Duration::MAX;
    let mut total = Duration::ZERO;
    let mut sink = 0u64;
    for _ in 0..rounds {
        let t0 = Instant::now();
        for s in &snapshots {
            sink += u64::from(decide(s, Duration::from_secs(1)).desired);
        }
        for input in &inputs {
            let plan = place(input);
            sink += plan.assignments.len() as u64 + plan.launches.len() as u64;
        }
        let dt = t0.elapsed();
        best = best.min(dt);
        total += dt;
    }
    println!(
        "{{\"versions\": {}, \"instances\": 100, \"rounds\": {rounds}, \"best_ms\": {:.3}, \"mean_ms\": {:.3}, \"checksum\": {sink}}}",
        snapshots.len(),
        best.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3 / f64::from(rounds)
    );
}
