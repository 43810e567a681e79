//! The cost report of `fleetfn cost`: from accounted usage (instance-seconds by type, zone and
//! capacity provider; requests and their billed milliseconds per function version) and prices
//! (the instance catalog's on-demand prices, the pricing instruments — Savings Plans, Reserved
//! Instances — that discount them, AWS Lambda's GB-second and request prices), what the capacity
//! cost here (on-demand, discounted and the difference), what the same traffic would have cost on
//! AWS Lambda (default infrastructure) and on AWS Lambda Managed Instances (the same instances at
//! the same discounted rate + the management fee, computed on the **on-demand** price as AWS
//! does), and the request rate at which running here breaks even with Lambda. Pure: no clock, no
//! I/O.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use fleetfn_scheduler::{Arch, Catalog};
use serde::{Deserialize, Serialize};

/// What kind of pricing instrument a discount stands for. Both lower the effective hourly rate of
/// the instances they cover; the kind is reported, not computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscountKind {
    /// A Compute or EC2 Instance Savings Plan.
    SavingsPlan,
    /// A Reserved Instance.
    ReservedInstance,
}

impl fmt::Display for DiscountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SavingsPlan => "Savings Plan",
            Self::ReservedInstance => "Reserved Instance",
        })
    }
}

/// A discounted effective rate for the instance types `match` names: an exact type name
/// (`m7g.large`) or an EC2-style `*` pattern (`m7g.*`, `*.8xlarge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Discount {
    #[serde(rename = "Match")]
    pub pattern: String,
    pub kind: DiscountKind,
    /// The fraction off the on-demand price, `0 ≤ rate < 1` (`0.30`: pay 70 % of on-demand).
    pub rate: f64,
}

/// A configured discount that is not one.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscountError {
    /// `Rate` outside `[0, 1)`.
    Rate { index: usize, rate: f64 },
    /// `Match` empty or with characters no instance type has.
    Pattern { index: usize, pattern: String },
}

impl fmt::Display for DiscountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rate { index, rate } => write!(
                f,
                "Discounts[{index}].Rate is {rate}: give the fraction off the on-demand price, at least 0 and below 1 (0.30 for 30 % off)"
            ),
            Self::Pattern { index, pattern } => write!(
                f,
                "Discounts[{index}].Match is {pattern:?}: give an instance type (m7g.large) or a pattern with * (m7g.*)"
            ),
        }
    }
}

impl std::error::Error for DiscountError {}

/// The configured discounts, checked. The **first** entry whose pattern matches a type applies
/// to it (list exact names before the patterns that also cover them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Discounts(Vec<Discount>);

impl Discounts {
    /// Checks each discount: `Rate` in `[0, 1)`, `Match` of `[a-zA-Z0-9.*-]+`.
    pub fn new(list: Vec<Discount>) -> Result<Self, DiscountError> {
        for (index, d) in list.iter().enumerate() {
            if !(d.rate.is_finite() && (0.0..1.0).contains(&d.rate)) {
                return Err(DiscountError::Rate {
                    index,
                    rate: d.rate,
                });
            }
            let ok = !d.pattern.is_empty()
                && d.pattern
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '*' | '-'));
            if !ok {
                return Err(DiscountError::Pattern {
                    index,
                    pattern: d.pattern.clone(),
                });
            }
        }
        Ok(Self(list))
    }

    /// The discounts, in the order they are tried.
    pub fn as_slice(&self) -> &[Discount] {
        &self.0
    }

    /// The discount that applies to an instance type: the first whose pattern matches.
    pub fn for_type(&self, instance_type: &str) -> Option<&Discount> {
        self.0
            .iter()
            .find(|d| fleetfn_scheduler::catalog::wildcard_match(&d.pattern, instance_type))
    }
}

impl<'de> Deserialize<'de> for Discounts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(Vec::<Discount>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

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
    /// The on-demand price; `None` when the type has no price (not in the catalog, or unpriced:
    /// then it costs nothing here, and the report says so in `UnpricedInstanceTypes`).
    pub hourly_usd: Option<f64>,
    /// The discount that applies to the type, if any.
    pub discount: Option<Discount>,
    /// The hours at the on-demand price.
    pub on_demand_usd: f64,
    /// The hours at the effective (discounted) price: what they cost here.
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Costs {
    /// The instances at the catalog's on-demand price.
    pub on_demand_usd: f64,
    /// The instances at their effective (discounted) price: what this capacity costs here.
    pub fleetfn_usd: f64,
    /// What the discounts saved: `OnDemandUsd - FleetfnUsd`.
    pub discount_usd: f64,
    /// AWS Lambda with default infrastructure: GB-seconds + requests.
    pub aws_lambda_usd: f64,
    /// AWS Lambda Managed Instances: the same instances at the same effective price + the
    /// management fee + requests.
    pub aws_lmi_usd: f64,
    /// The LMI management fee alone: a fraction of the **on-demand** price (discounts do not
    /// reduce it).
    pub lmi_fee_usd: f64,
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
    /// The configured pricing instruments, in the order they are tried.
    pub discounts: Discounts,
    /// Instance types that ran in the window without a known price (counted as $0: set a price
    /// for them in the configuration).
    pub unpriced_instance_types: Vec<String>,
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
    discounts: &Discounts,
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
    let mut unpriced = BTreeSet::new();
    let mut total = Costs {
        on_demand_usd: 0.0,
        fleetfn_usd: 0.0,
        discount_usd: 0.0,
        aws_lambda_usd: 0.0,
        aws_lmi_usd: 0.0,
        lmi_fee_usd: 0.0,
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
                let hourly = catalog.get(&t).and_then(|x| x.hourly_usd);
                if hourly.is_none() {
                    unpriced.insert(t.clone());
                }
                let discount = discounts.for_type(&t).cloned();
                let on_demand = hours * hourly.unwrap_or(0.0);
                let rate = discount.as_ref().map_or(0.0, |d| d.rate);
                InstanceLine {
                    instance_type: t,
                    zone,
                    hours,
                    hourly_usd: hourly,
                    discount,
                    on_demand_usd: on_demand,
                    cost_usd: on_demand * (1.0 - rate),
                }
            })
            .collect();
        let instance_hours: f64 = instances.iter().map(|l| l.hours).sum::<f64>() + 0.0;
        let on_demand_usd: f64 = instances.iter().map(|l| l.on_demand_usd).sum::<f64>() + 0.0;
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
        // The seed: LMI = EC2 price (on-demand or discounted) + 15 % of the EC2 *on-demand*
        // price + requests.
        let lmi_fee_usd = on_demand_usd * prices.lmi_management_fee;
        let cost = Costs {
            on_demand_usd,
            fleetfn_usd: instance_usd,
            discount_usd: on_demand_usd - instance_usd,
            aws_lambda_usd: duration_usd + request_usd,
            aws_lmi_usd: instance_usd + lmi_fee_usd + request_usd,
            lmi_fee_usd,
        };
        #[allow(clippy::cast_precision_loss)]
        let observed = n as f64 / window;
        let break_even = (n > 0).then(|| {
            #[allow(clippy::cast_precision_loss)]
            let per_request = (duration_usd + request_usd) / n as f64;
            instance_usd / window / per_request
        });
        total.on_demand_usd += cost.on_demand_usd;
        total.fleetfn_usd += cost.fleetfn_usd;
        total.discount_usd += cost.discount_usd;
        total.aws_lambda_usd += cost.aws_lambda_usd;
        total.aws_lmi_usd += cost.aws_lmi_usd;
        total.lmi_fee_usd += cost.lmi_fee_usd;
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
        discounts: discounts.clone(),
        unpriced_instance_types: unpriced.into_iter().collect(),
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
                hourly_usd: Some(0.10),
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
            &Discounts::default(),
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
        let probe = report(
            3600.0,
            &[inst(3600.0)],
            &[reqs(1000, 100)],
            &catalog(),
            &p,
            &Discounts::default(),
        );
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
            &Discounts::default(),
        );
        let above = report(
            3600.0,
            &[inst(3600.0)],
            &[reqs(at_break_even + 10, 100)],
            &catalog(),
            &p,
            &Discounts::default(),
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
        let r = report(0.0, &[other], &[], &catalog(), &p, &Discounts::default());
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
        let rep = report(3600.0, &[], &[r], &catalog(), &p, &Discounts::default());
        let c = &rep.capacity_providers[0].cost;
        assert!((c.aws_lambda_usd - (1000.0 * 0.000_013_333_4 + 0.0002)).abs() < 1e-9);
    }

    fn m7g_large(provider: &str, zone: &str, hours: f64) -> InstanceSeconds {
        InstanceSeconds {
            capacity_provider: provider.into(),
            instance_type: "m7g.large".into(),
            zone: zone.into(),
            seconds: hours * 3600.0,
        }
    }

    fn discount(pattern: &str, kind: DiscountKind, rate: f64) -> Discount {
        Discount {
            pattern: pattern.into(),
            kind,
            rate,
        }
    }

    #[test]
    fn a_savings_plan_discounts_the_instances_and_not_the_lmi_fee() {
        // The hand calculation: 2 × m7g.large (built-in $0.0816/h) for 10 h each.
        //   on-demand  X = 2 × 10 h × $0.0816 = $1.632
        //   30 % Savings Plan: 0.7 X = $1.1424, saving 0.3 X = $0.4896
        //   LMI fee on on-demand: 0.15 X = $0.2448 (not 0.15 × 0.7 X = $0.17136)
        //   LMI = 0.7 X + 0.15 X + 1,000 requests × $0.20/M = $1.1424 + $0.2448 + $0.0002
        let p = LambdaPrices::default();
        let sp = Discounts::new(vec![discount("m7g.*", DiscountKind::SavingsPlan, 0.30)]).unwrap();
        let mut r = reqs(1000, 100);
        r.arch = Arch::Arm64;
        let rep = report(
            36_000.0,
            &[m7g_large("cp", "a", 10.0), m7g_large("cp", "b", 10.0)],
            &[r],
            &Catalog::builtin(),
            &p,
            &sp,
        );
        let cp = &rep.capacity_providers[0];
        let c = &cp.cost;
        assert!((c.on_demand_usd - 1.632).abs() < 1e-9, "{c:?}");
        assert!((c.fleetfn_usd - 1.1424).abs() < 1e-9, "{c:?}");
        assert!((c.discount_usd - 0.4896).abs() < 1e-9, "{c:?}");
        assert!((c.lmi_fee_usd - 0.2448).abs() < 1e-9, "{c:?}");
        assert!(
            (c.aws_lmi_usd - (1.1424 + 0.2448 + 0.0002)).abs() < 1e-9,
            "{c:?}"
        );
        for line in &cp.instances {
            assert_eq!(line.hourly_usd, Some(0.0816));
            assert_eq!(
                line.discount.as_ref().unwrap().kind,
                DiscountKind::SavingsPlan
            );
            assert!((line.on_demand_usd - 0.816).abs() < 1e-9);
            assert!((line.cost_usd - 0.5712).abs() < 1e-9);
        }
        // The break-even is against what the capacity costs here: the discounted price.
        let per_request = c.aws_lambda_usd / 1000.0;
        let be = cp.break_even_requests_per_second.unwrap();
        assert!((be - 1.1424 / 36_000.0 / per_request).abs() < 1e-9, "{be}");
        assert_eq!(rep.total, *c);
        assert_eq!(rep.discounts, sp);
        assert!(rep.unpriced_instance_types.is_empty());

        // Without the plan: on-demand throughout, no saving, the same fee.
        let none = report(
            36_000.0,
            &[m7g_large("cp", "a", 10.0), m7g_large("cp", "b", 10.0)],
            &[],
            &Catalog::builtin(),
            &p,
            &Discounts::default(),
        );
        let c = &none.capacity_providers[0].cost;
        assert!((c.fleetfn_usd - 1.632).abs() < 1e-9 && c.discount_usd.abs() < 1e-12);
        assert!((c.lmi_fee_usd - 0.2448).abs() < 1e-9);
        assert!(none.capacity_providers[0].instances[0].discount.is_none());
    }

    #[test]
    fn the_first_matching_discount_applies() {
        let d = Discounts::new(vec![
            discount("m7g.large", DiscountKind::ReservedInstance, 0.5),
            discount("m7g.*", DiscountKind::SavingsPlan, 0.3),
        ])
        .unwrap();
        assert_eq!(d.for_type("m7g.large").unwrap().rate, 0.5);
        assert_eq!(d.for_type("m7g.xlarge").unwrap().rate, 0.3);
        assert!(d.for_type("c7g.large").is_none());
    }

    #[test]
    fn bad_discounts_are_refused_with_what_to_fix() {
        let err = |d: Discount| Discounts::new(vec![d]).unwrap_err().to_string();
        let e = err(discount("m7g.*", DiscountKind::SavingsPlan, 30.0));
        assert!(
            e.contains("Discounts[0].Rate is 30") && e.contains("0.30 for 30 % off"),
            "{e}"
        );
        let e = err(discount("m7g.*", DiscountKind::SavingsPlan, 1.0));
        assert!(e.contains("Rate is 1"), "{e}");
        let e = err(discount("m7g.*", DiscountKind::SavingsPlan, f64::NAN));
        assert!(e.contains("Rate is NaN"), "{e}");
        let e = err(discount("", DiscountKind::SavingsPlan, 0.1));
        assert!(e.contains("Discounts[0].Match"), "{e}");
        let e = err(discount("m7g .*", DiscountKind::SavingsPlan, 0.1));
        assert!(e.contains("Discounts[0].Match is \"m7g .*\""), "{e}");
        assert!(Discounts::new(vec![discount("m7g.*", DiscountKind::SavingsPlan, 0.0)]).is_ok());
    }

    #[test]
    fn unpriced_types_are_named() {
        let p = LambdaPrices::default();
        let mut i = m7g_large("cp", "a", 1.0);
        i.instance_type = "m8g.large".into();
        let rep = report(
            3600.0,
            &[i],
            &[],
            &Catalog::builtin(),
            &p,
            &Discounts::default(),
        );
        assert_eq!(rep.unpriced_instance_types, ["m8g.large"]);
        assert_eq!(rep.capacity_providers[0].instances[0].hourly_usd, None);
    }
}
