//! `fleetfn cost`: what the capacity cost here against AWS Lambda and AWS LMI for the same
//! traffic, from `GET /fleetfn/v1/cost`.

use std::fmt::Write as _;

use anyhow::Context;
use fleetfn_contracts::CostDocument;

use crate::client::{self, ConnectArgs};

#[derive(Debug, clap::Args)]
pub struct CostArgs {
    /// The window: a duration back from now (30s, 10m, 24h, 7d, 1w), an RFC 3339 time or epoch ms.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Print the server's JSON report instead of the summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(args: CostArgs) -> anyhow::Result<()> {
    // Checked here too, so a typo never needs a server to be told about.
    fleetfn_logs::parse_since(&args.since, jiff::Timestamp::now())
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let client = client::connect(&args.connect)?;
    let body = client
        .get("/fleetfn/v1/cost", &[("Since", args.since.as_str())])
        .await
        .map_err(|e| client::command_error(&client, e))?;
    let text = std::str::from_utf8(&body).context("the cost report is not UTF-8")?;
    if args.json {
        println!(
            "{}",
            crate::status::pretty_json(text).context("the cost report is not valid JSON")?
        );
    } else {
        let doc: CostDocument =
            serde_json::from_str(text).context("the cost report is not a cost report")?;
        print!("{}", render(&doc));
    }
    Ok(())
}

/// The human summary of a cost report.
pub fn render(doc: &CostDocument) -> String {
    let mut out = String::new();
    let r = &doc.report;
    let _ = writeln!(
        out,
        "Cost from {} to {} (instance prices as of {}, Lambda prices as of {})",
        doc.since, doc.until, r.instance_prices_as_of, r.lambda_prices.as_of,
    );
    if r.capacity_providers.is_empty() {
        out.push_str("No usage in this window.\n");
        return out;
    }
    for d in r.discounts.as_slice() {
        let _ = writeln!(
            out,
            "Discount: {} {:.0} % off on-demand for {}",
            d.kind,
            d.rate * 100.0,
            d.pattern
        );
    }
    for p in &r.capacity_providers {
        let _ = writeln!(out, "\n{}", p.name);
        for i in &p.instances {
            let price = i
                .hourly_usd
                .map_or_else(|| "no price".to_string(), |h| format!("${h:.4}/h"));
            let discount = i.discount.as_ref().map_or_else(String::new, |d| {
                format!("  {} -{:.0} %", d.kind, d.rate * 100.0)
            });
            let _ = writeln!(
                out,
                "  {:<14} {:<12} {:>9.3} h  {:>12}  ${:.4}{discount}",
                i.instance_type, i.zone, i.hours, price, i.cost_usd,
            );
        }
        let _ = writeln!(
            out,
            "  {} requests, {:.1} GB-s billed; {:.2} req/s",
            p.requests, p.gb_seconds, p.observed_requests_per_second,
        );
        costs(&mut out, "  ", &p.cost, r.lambda_prices.lmi_management_fee);
        let _ = writeln!(out, "  {}", p.verdict);
    }
    out.push_str("\nTotal:\n");
    costs(&mut out, "  ", &r.total, r.lambda_prices.lmi_management_fee);
    if !r.unpriced_instance_types.is_empty() {
        let _ = writeln!(
            out,
            "\nNo price for {} (counted as $0 above): set on-demand prices in the --catalog file of fleetfn serve, e.g. {{\"Prices\": {{\"{}\": 0.1}}}}",
            r.unpriced_instance_types.join(", "),
            r.unpriced_instance_types[0],
        );
    }
    out
}

/// Instances on-demand, discounted and the difference; then Lambda and LMI (with its fee, a
/// fraction of the on-demand price).
fn costs(out: &mut String, indent: &str, c: &fleetfn_cost::Costs, fee: f64) {
    if c.discount_usd > 0.0 {
        let _ = writeln!(
            out,
            "{indent}instances: on-demand ${:.4}, discounted ${:.4}, saved ${:.4}",
            c.on_demand_usd, c.fleetfn_usd, c.discount_usd,
        );
    }
    let _ = writeln!(
        out,
        "{indent}here ${:.4}   AWS Lambda ${:.4}   AWS LMI ${:.4} (fee ${:.4}: {:.0} % of on-demand ${:.4})",
        c.fleetfn_usd,
        c.aws_lambda_usd,
        c.aws_lmi_usd,
        c.lmi_fee_usd,
        fee * 100.0,
        c.on_demand_usd,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(providers: serde_json::Value) -> CostDocument {
        let total = serde_json::json!({"OnDemandUsd": 0.0893, "FleetfnUsd": 0.0893, "DiscountUsd": 0.0,
                                       "AwsLambdaUsd": 0.0035, "AwsLmiUsd": 0.1029, "LmiFeeUsd": 0.0134});
        serde_json::from_value(serde_json::json!({
            "Since": "2026-11-27T09:00:00.000+0000",
            "Until": "2026-11-27T10:00:00.000+0000",
            "WindowSeconds": 3600.0,
            "InstancePricesAsOf": "2024-06-01",
            "LambdaPrices": {"AsOf": "2024-06-01", "X86GbSecond": 1.66667e-05,
                             "ArmGbSecond": 1.33334e-05, "PerMillionRequests": 0.2,
                             "LmiManagementFee": 0.15},
            "Discounts": [],
            "UnpricedInstanceTypes": ["x9.unknown"],
            "CapacityProviders": providers,
            "Total": total,
        }))
        .unwrap()
    }

    #[test]
    fn renders_a_report() {
        let doc = report(serde_json::json!([{
            "Name": "demo",
            "InstanceHours": 1.0,
            "Instances": [{"InstanceType": "c7i.large", "Zone": "subnet-a", "Hours": 1.0,
                           "HourlyUsd": 0.0893, "Discount": null, "OnDemandUsd": 0.0893, "CostUsd": 0.0893},
                          {"InstanceType": "x9.unknown", "Zone": "subnet-b", "Hours": 0.5,
                           "HourlyUsd": null, "Discount": null, "OnDemandUsd": 0.0, "CostUsd": 0.0}],
            "Requests": 1000, "BilledSeconds": 100.0, "GbSeconds": 200.0,
            "ObservedRequestsPerSecond": 0.28, "BreakEvenRequestsPerSecond": 80.0,
            "Cost": {"OnDemandUsd": 0.0893, "FleetfnUsd": 0.0893, "DiscountUsd": 0.0,
                     "AwsLambdaUsd": 0.0035, "AwsLmiUsd": 0.1029, "LmiFeeUsd": 0.0134},
            "Verdict": "Cheaper on Lambda: ..."
        }]));
        let text = render(&doc);
        assert!(
            text.starts_with("Cost from 2026-11-27T09:00:00.000+0000 to 2026-11-27T10:00:00.000+0000 (instance prices as of 2024-06-01, Lambda prices as of 2024-06-01)\n"),
            "{text}"
        );
        assert!(text.contains("demo"), "{text}");
        assert!(text.contains("c7i.large"), "{text}");
        assert!(text.contains("$0.0893/h"), "{text}");
        assert!(text.contains("no price"), "{text}");
        assert!(
            text.contains("No price for x9.unknown (counted as $0 above)")
                && text.contains(r#"{"Prices": {"x9.unknown": 0.1}}"#),
            "{text}"
        );
        assert!(
            text.contains("AWS LMI $0.1029 (fee $0.0134: 15 % of on-demand $0.0893)"),
            "{text}"
        );
        assert!(!text.contains("saved"), "{text}");
        assert!(
            text.contains("1000 requests, 200.0 GB-s billed; 0.28 req/s"),
            "{text}"
        );
        assert!(text.contains("Cheaper on Lambda"), "{text}");
        assert!(text.contains("Total:\n  here $0.0893"), "{text}");
        let empty = render(&report(serde_json::json!([])));
        assert!(empty.contains("No usage"), "{empty}");
    }

    #[test]
    fn renders_on_demand_discounted_and_the_fee_on_on_demand() {
        // 2 × m7g.large ($0.0816/h) for 10 h at a 30 % Savings Plan: on-demand $1.632,
        // discounted $1.1424, saved $0.4896; LMI fee 15 % of $1.632 = $0.2448.
        let discounts = fleetfn_cost::Discounts::new(vec![fleetfn_cost::Discount {
            pattern: "m7g.*".into(),
            kind: fleetfn_cost::DiscountKind::SavingsPlan,
            rate: 0.30,
        }])
        .unwrap();
        let line = |zone: &str| fleetfn_cost::InstanceSeconds {
            capacity_provider: "demo".into(),
            instance_type: "m7g.large".into(),
            zone: zone.into(),
            seconds: 36_000.0,
        };
        let report = fleetfn_cost::report(
            36_000.0,
            &[line("a"), line("b")],
            &[],
            &fleetfn_scheduler::Catalog::builtin(),
            &fleetfn_cost::LambdaPrices::default(),
            &discounts,
        );
        let doc = CostDocument {
            since: "2026-11-27T00:00:00.000+0000".into(),
            until: "2026-11-27T10:00:00.000+0000".into(),
            report,
        };
        let text = render(&doc);
        assert!(
            text.contains("Discount: Savings Plan 30 % off on-demand for m7g.*"),
            "{text}"
        );
        assert!(
            text.contains("$0.0816/h  $0.5712  Savings Plan -30 %"),
            "{text}"
        );
        assert!(
            text.contains("instances: on-demand $1.6320, discounted $1.1424, saved $0.4896"),
            "{text}"
        );
        assert!(
            text.contains("here $1.1424   AWS Lambda $0.0000   AWS LMI $1.3872 (fee $0.2448: 15 % of on-demand $1.6320)"),
            "{text}"
        );
    }
}
