//! The cost report of `fleetfn cost`: from accounted usage (instance-seconds by type, zone and
//! capacity provider; requests and their billed milliseconds per function version) and prices
//! (the instance catalog's on-demand prices, AWS Lambda's GB-second and request prices), what the
//! capacity cost here, what the same traffic would have cost on AWS Lambda (default
//! infrastructure) and on AWS Lambda Managed Instances (the same instances + the management fee),
//! and the request rate at which running here breaks even with Lambda. Pure: no clock, no I/O.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use fleetfn_scheduler::{Arch, Catalog};
use serde::{Deserialize, Serialize};

/// AWS Lambda prices (us-east-1) used for the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LambdaPrices {
    /// The date the prices were taken.
    pub as_of: String,
    /// USD per GB-second of duration, x86_64.
    pub x86_gb_second: f64,
    /// USD per GB-second of duration, arm64.
    pub arm_gb_second: f64,
    /// USD per million requests (Lambda and LMI alike).
    pub per_million_requests: f64,
    /// LMI management fee as a fraction of the EC2 on-demand price.
    pub lmi_management_fee: f64,
}

impl Default for LambdaPrices {
    fn default() -> Self {
        Self {
            as_of: "2024-06-01".into(),
            x86_gb_second: 0.000_016_666_7,
            arm_gb_second: 0.000_013_333_4,
            per_million_requests: 0.20,
            lmi_management_fee: 0.15,
        }
    }
}

/// Instance-seconds of one type in one zone of a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSeconds {
    pub capacity_provider: String,
    pub instance_type: String,
    pub zone: String,
    pub seconds: f64,
}

/// Requests of one function version.
#[derive(Debug, Clone, PartialEq)]
pub struct Requests {
    pub capacity_provider: String,
    pub function: String,
    pub version: String,
    pub arch: Arch,
    pub memory_mb: u32,
    pub requests: u64,
    pub billed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceLine {
    pub instance_type: String,
    pub zone: String,
    pub hours: f64,
    /// `None` when the type is not in the catalog (then it costs nothing here: say so).
    pub hourly_usd: Option<f64>,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Costs {
    /// The instances at the catalog's on-demand price: what this capacity costs here.
    pub fleetfn_usd: f64,
    /// AWS Lambda with default infrastructure: GB-seconds + requests.
    pub aws_lambda_usd: f64,
    /// AWS Lambda Managed Instances: the same instances + the management fee + requests.
    pub aws_lmi_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProviderReport {
    pub name: String,
    pub instance_hours: f64,
    pub instances: Vec<InstanceLine>,
    pub requests: u64,
    pub billed_seconds: f64,
    pub gb_seconds: f64,
    pub cost: Costs,
    pub observed_requests_per_second: f64,
    /// The request rate above which this capacity costs less than Lambda for the same traffic
    /// (at the observed mix of durations and memory); `None` without requests to learn it from.
    pub break_even_requests_per_second: Option<f64>,
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    pub window_seconds: f64,
    pub instance_prices_as_of: String,
    pub lambda_prices: LambdaPrices,
    pub capacity_providers: Vec<ProviderReport>,
    pub total: Costs,
}

fn usd(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("${x:.0}")
    } else {
        format!("${x:.2}")
    }
}

fn verdict(p: &ProviderReport) -> String {
    let Some(be) = p.break_even_requests_per_second else {
        return format!(
            "No requests in this window: the capacity cost {} here; Lambda would have cost {}.",
            usd(p.cost.fleetfn_usd),
            usd(p.cost.aws_lambda_usd)
        );
    };
    let rate = p.observed_requests_per_second;
    if p.cost.fleetfn_usd <= p.cost.aws_lambda_usd {
        format!(
            "Cheaper here: {} vs {} on Lambda ({} on LMI) at {rate:.2} req/s, above the break-even of {be:.2} req/s.",
            usd(p.cost.fleetfn_usd),
            usd(p.cost.aws_lambda_usd),
            usd(p.cost.aws_lmi_usd)
        )
    } else {
        format!(
            "Cheaper on Lambda: {} vs {} here ({} on LMI) at {rate:.2} req/s, below the break-even of {be:.2} req/s.",
            usd(p.cost.aws_lambda_usd),
            usd(p.cost.fleetfn_usd),
            usd(p.cost.aws_lmi_usd)
        )
    }
}

/// Builds the report for a window of `window_seconds`.
pub fn report(
    window_seconds: f64,
    instances: &[InstanceSeconds],
    requests: &[Requests],
    catalog: &Catalog,
    prices: &LambdaPrices,
) -> Report {
    let window = if window_seconds.is_finite() && window_seconds > 0.0 {
        window_seconds
    } else {
        1.0
    };
    let mut names: Vec<&str> = instances
        .iter()
        .map(|i| i.capacity_provider.as_str())
        .chain(requests.iter().map(|r| r.capacity_provider.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut providers = Vec::new();
    let mut total = Costs {
        fleetfn_usd: 0.0,
        aws_lambda_usd: 0.0,
        aws_lmi_usd: 0.0,
    };
    for name in names {
        let mut lines: BTreeMap<(String, String), f64> = BTreeMap::new();
        for i in instances.iter().filter(|i| i.capacity_provider == name) {
            *lines
                .entry((i.instance_type.clone(), i.zone.clone()))
                .or_default() += i.seconds;
        }
        let instances: Vec<InstanceLine> = lines
            .into_iter()
            .map(|((t, zone), seconds)| {
                let hours = seconds / 3600.0;
                let hourly = catalog.get(&t).map(|x| x.hourly_usd);
                InstanceLine {
                    instance_type: t,
                    zone,
                    hours,
                    hourly_usd: hourly,
                    cost_usd: hours * hourly.unwrap_or(0.0),
                }
            })
            .collect();
        let instance_hours: f64 = instances.iter().map(|l| l.hours).sum::<f64>() + 0.0;
        let instance_usd: f64 = instances.iter().map(|l| l.cost_usd).sum::<f64>() + 0.0;
        let mine: Vec<&Requests> = requests
            .iter()
            .filter(|r| r.capacity_provider == name)
            .collect();
        let n: u64 = mine.iter().map(|r| r.requests).sum();
        #[allow(clippy::cast_precision_loss)]
        let billed_seconds: f64 = mine
            .iter()
            .map(|r| r.billed_ms as f64 / 1000.0)
            .sum::<f64>()
            + 0.0;
        #[allow(clippy::cast_precision_loss)]
        let gb_seconds: f64 = mine
            .iter()
            .map(|r| r.billed_ms as f64 / 1000.0 * f64::from(r.memory_mb) / 1024.0)
            .sum::<f64>()
            + 0.0; // an empty sum is -0.0
        #[allow(clippy::cast_precision_loss)]
        let duration_usd: f64 = mine
            .iter()
            .map(|r| {
                let price = match r.arch {
                    Arch::X86_64 => prices.x86_gb_second,
                    Arch::Arm64 => prices.arm_gb_second,
                };
                r.billed_ms as f64 / 1000.0 * f64::from(r.memory_mb) / 1024.0 * price
            })
            .sum::<f64>()
            + 0.0;
        #[allow(clippy::cast_precision_loss)]
        let request_usd = n as f64 / 1e6 * prices.per_million_requests;
        let cost = Costs {
            fleetfn_usd: instance_usd,
            aws_lambda_usd: duration_usd + request_usd,
            aws_lmi_usd: instance_usd * (1.0 + prices.lmi_management_fee) + request_usd,
        };
        #[allow(clippy::cast_precision_loss)]
        let observed = n as f64 / window;
        let break_even = (n > 0).then(|| {
            #[allow(clippy::cast_precision_loss)]
            let per_request = (duration_usd + request_usd) / n as f64;
            instance_usd / window / per_request
        });
        total.fleetfn_usd += cost.fleetfn_usd;
        total.aws_lambda_usd += cost.aws_lambda_usd;
        total.aws_lmi_usd += cost.aws_lmi_usd;
        let mut p = ProviderReport {
            name: name.to_string(),
            instance_hours,
            instances,
            requests: n,
            billed_seconds,
            gb_seconds,
            cost,
            observed_requests_per_second: observed,
            break_even_requests_per_second: break_even,
            verdict: String::new(),
        };
        p.verdict = verdict(&p);
        providers.push(p);
    }
    Report {
        window_seconds: window,
        instance_prices_as_of: catalog.prices_as_of.clone(),
        lambda_prices: prices.clone(),
        capacity_providers: providers,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetfn_scheduler::InstanceType;

    fn catalog() -> Catalog {
        Catalog::new(
            "test",
            vec![InstanceType {
                name: "t.one".into(),
                family: "t".into(),
                arch: Arch::X86_64,
                vcpus: 2,
                memory_mib: 4096,
                hourly_usd: 0.10,
            }],
        )
    }

    fn inst(seconds: f64) -> InstanceSeconds {
        InstanceSeconds {
            capacity_provider: "cp".into(),
            instance_type: "t.one".into(),
            zone: "a".into(),
            seconds,
        }
    }

    fn reqs(n: u64, ms_each: u64) -> Requests {
        Requests {
            capacity_provider: "cp".into(),
            function: "f".into(),
            version: "1".into(),
            arch: Arch::X86_64,
            memory_mb: 2048,
            requests: n,
            billed_ms: n * ms_each,
        }
    }

    #[test]
    fn figures_match_a_hand_calculation() {
        let p = LambdaPrices::default();
        // Three instances for one hour each at $0.10; 1,000,000 requests of 100 ms at 2 GB.
        let r = report(
            3600.0,
            &[inst(3600.0), inst(3600.0), inst(3600.0)],
            &[reqs(1_000_000, 100)],
            &catalog(),
            &p,
        );
        let cp = &r.capacity_providers[0];
        assert!((cp.instance_hours - 3.0).abs() < 1e-9);
        assert!((cp.cost.fleetfn_usd - 0.30).abs() < 1e-9);
        // 100,000 s × 2 GB = 200,000 GB-s × $0.0000166667 = $3.33334, + $0.20.
        assert!((cp.gb_seconds - 200_000.0).abs() < 1e-6);
        assert!((cp.cost.aws_lambda_usd - 3.533_34).abs() < 1e-6);
        assert!((cp.cost.aws_lmi_usd - (0.345 + 0.20)).abs() < 1e-9);
        // Per request $3.53334e-6; fleet $0.30/h = $8.3333e-5/s → 23.58 req/s.
        let be = cp.break_even_requests_per_second.unwrap();
        assert!((be - 0.30 / 3600.0 / 3.533_34e-6).abs() < 1e-6, "{be}");
        assert!(cp.verdict.starts_with("Cheaper here"), "{}", cp.verdict);
    }

    #[test]
    fn the_verdict_flips_at_the_break_even() {
        let p = LambdaPrices::default();
        let probe = report(3600.0, &[inst(3600.0)], &[reqs(1000, 100)], &catalog(), &p);
        let be = probe.capacity_providers[0]
            .break_even_requests_per_second
            .unwrap();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let at_break_even = (be * 3600.0) as u64;
        let below = report(
            3600.0,
            &[inst(3600.0)],
            &[reqs(at_break_even - 10, 100)],
            &catalog(),
            &p,
        );
        let above = report(
            3600.0,
            &[inst(3600.0)],
            &[reqs(at_break_even + 10, 100)],
            &catalog(),
            &p,
        );
        assert!(
            below.capacity_providers[0]
                .verdict
                .starts_with("Cheaper on Lambda")
        );
        assert!(
            above.capacity_providers[0]
                .verdict
                .starts_with("Cheaper here")
        );
        // The break-even does not depend on the volume, only on the mix.
        let be2 = above.capacity_providers[0]
            .break_even_requests_per_second
            .unwrap();
        assert!((be - be2).abs() < 1e-9);
    }

    #[test]
    fn no_requests_and_unknown_types_are_reported_not_guessed() {
        let p = LambdaPrices::default();
        let mut other = inst(7200.0);
        other.instance_type = "x.unknown".into();
        let r = report(0.0, &[other], &[], &catalog(), &p);
        let cp = &r.capacity_providers[0];
        assert_eq!(cp.break_even_requests_per_second, None);
        assert_eq!(cp.instances[0].hourly_usd, None);
        assert!(cp.cost.fleetfn_usd.abs() < 1e-12);
        assert!(cp.verdict.starts_with("No requests"), "{}", cp.verdict);
        assert!((r.window_seconds - 1.0).abs() < 1e-12);
        // Nothing billed is +0, not -0 (which prints as "-0.0").
        assert!(cp.gb_seconds.is_sign_positive() && cp.billed_seconds.is_sign_positive());
    }

    #[test]
    fn arm_uses_the_arm_price() {
        let p = LambdaPrices::default();
        let mut r = reqs(1000, 1000);
        r.arch = Arch::Arm64;
        r.memory_mb = 1024;
        let rep = report(3600.0, &[], &[r], &catalog(), &p);
        let c = &rep.capacity_providers[0].cost;
        assert!((c.aws_lambda_usd - (1000.0 * 0.000_013_333_4 + 0.0002)).abs() < 1e-9);
    }
}
