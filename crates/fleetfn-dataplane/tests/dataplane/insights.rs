//! The Lambda Insights series (docs/METRICS.md) from agents' reports: CPU time by mode and
//! network bytes keep counting what every environment used, peak memory and the sizes are
//! per-version gauges of the scaler tick.

use std::time::Duration;

use crate::support::{FunctionSpec, Harness};

const MIB: f64 = 1_048_576.0;

#[tokio::test(start_paused = true)]
async fn reports_fill_the_insights_series() {
    let mut h = Harness::new();
    h.provider.script().cpu_demand.insert("f".into(), 1.5);
    h.provider
        .script()
        .memory_bytes
        .insert("f".into(), 300 << 20);
    h.active_function(&FunctionSpec::default()).await;
    for i in 0..12 {
        h.invoke("f:1", &format!("x{i}")).await.expect("invoke");
    }
    h.run_for(Duration::from_secs(5)).await;
    let m = |name: &str| h.metric(name, "f", "1");

    // The scripted agents report 100 bytes each way per invoke, summed over environments.
    assert_eq!(
        m("fleetfn_execution_environment_network_receive_bytes_total"),
        1200.0
    );
    assert_eq!(
        m("fleetfn_execution_environment_network_transmit_bytes_total"),
        1200.0
    );
    // A quarter of the CPU time is system time.
    let cpu = |mode: &str| {
        let text = h.metrics.render().unwrap();
        text.lines()
            .find(|l| {
                l.starts_with("fleetfn_execution_environment_cpu_seconds_total{")
                    && l.contains(&format!("mode=\"{mode}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {mode} CPU series in\n{text}"))
    };
    let (user, system) = (cpu("user"), cpu("system"));
    assert!(system > 0.5, "{user} {system}");
    assert!((user / system - 3.0).abs() < 0.05, "{user} {system}");
    // 1.5 vCPUs of demand over the seconds since the environments turned Ready.
    let before = user + system;
    h.run_for(Duration::from_secs(4)).await;
    let grown = cpu("user") + cpu("system") - before;
    assert!(
        (grown - 6.0).abs() < 1.6,
        "{grown} s of CPU in 4 s at 1.5 vCPUs"
    );

    assert_eq!(
        m("fleetfn_execution_environment_memory_max_bytes"),
        300.0 * MIB
    );
    assert_eq!(
        m("fleetfn_execution_environment_memory_size_bytes"),
        2048.0 * MIB
    );
    assert_eq!(
        m("fleetfn_execution_environment_tmp_size_bytes"),
        512.0 * MIB
    );
    assert_eq!(m("fleetfn_execution_environment_tmp_used_bytes"), 0.0);
}
