//! What an environment's network costs at start: times `EnvNetwork::create` (namespace,
//! loopback, Runtime API listener, and with egress the veth pair and addresses) over N rounds,
//! with and without egress, holding up to 16 at once like an agent would. Needs root.
//!
//! `cargo run --release -p fleetfn-sandbox --example netns_cost -- [rounds]`

use std::time::{Duration, Instant};

use fleetfn_sandbox::{EnvNetwork, LeaseDir, net};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let leases = LeaseDir::new(fleetfn_sandbox::DEFAULT_LEASE_DIR);
    for egress in [false, true] {
        let mut times: Vec<Duration> = Vec::with_capacity(rounds);
        let mut held = std::collections::VecDeque::new();
        for i in 0..rounds {
            let slot = leases
                .acquire_slot(net::slot_count(), u32::try_from(i).unwrap_or(0))
                .expect("slot");
            let t = Instant::now();
            let n = EnvNetwork::create(slot.slot(), egress).expect("network namespace (root?)");
            times.push(t.elapsed());
            held.push_back((n, slot));
            if held.len() > 16 {
                held.pop_front();
            }
        }
        drop(held);
        times.sort_unstable();
        let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
        println!(
            "egress={egress}: {rounds} namespaces, p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.9).as_secs_f64() * 1e3,
            pct(1.0).as_secs_f64() * 1e3
        );
    }
}
