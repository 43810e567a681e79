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
    for p in &r.capacity_providers {
        let _ = writeln!(out, "\n{}", p.name);
        for i in &p.instances {
            let price = i
                .hourly_usd
                .map_or_else(|| "not in catalog".to_string(), |h| format!("${h:.4}/h"));
            let _ = writeln!(
                out,
                "  {:<14} {:<12} {:>9.3} h  {:>16}  ${:.4}",
                i.instance_type, i.zone, i.hours, price, i.cost_usd,
            );
        }
        let _ = writeln!(
            out,
            "  {} requests, {:.1} GB-s billed; {:.2} req/s",
            p.requests, p.gb_seconds, p.observed_requests_per_second,
        );
        let c = &p.cost;
        let _ = writeln!(
            out,
            "  here ${:.4}   AWS Lambda ${:.4}   AWS LMI ${:.4}",
            c.fleetfn_usd, c.aws_lambda_usd, c.aws_lmi_usd,
        );
        let _ = writeln!(out, "  {}", p.verdict);
    }
    let t = &r.total;
    let _ = writeln!(
        out,
        "\nTotal: here ${:.4}   AWS Lambda ${:.4}   AWS LMI ${:.4}",
        t.fleetfn_usd, t.aws_lambda_usd, t.aws_lmi_usd,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(providers: serde_json::Value) -> CostDocument {
        let total =
            serde_json::json!({"FleetfnUsd": 0.0893, "AwsLambdaUsd": 0.0035, "AwsLmiUsd": 0.1029});
        serde_json::from_value(serde_json::json!({
            "Since": "2026-11-27T09:00:00.000+0000",
            "Until": "2026-11-27T10:00:00.000+0000",
            "WindowSeconds": 3600.0,
            "InstancePricesAsOf": "2024-06-01",
            "LambdaPrices": {"AsOf": "2024-06-01", "X86GbSecond": 1.66667e-05,
                             "ArmGbSecond": 1.33334e-05, "PerMillionRequests": 0.2,
                             "LmiManagementFee": 0.15},
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
                           "HourlyUsd": 0.0893, "CostUsd": 0.0893},
                          {"InstanceType": "x9.unknown", "Zone": "subnet-b", "Hours": 0.5,
                           "HourlyUsd": null, "CostUsd": 0.0}],
            "Requests": 1000, "BilledSeconds": 100.0, "GbSeconds": 200.0,
            "ObservedRequestsPerSecond": 0.28, "BreakEvenRequestsPerSecond": 80.0,
            "Cost": {"FleetfnUsd": 0.0893, "AwsLambdaUsd": 0.0035, "AwsLmiUsd": 0.1029},
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
        assert!(text.contains("not in catalog"), "{text}");
        assert!(
            text.contains("1000 requests, 200.0 GB-s billed; 0.28 req/s"),
            "{text}"
        );
        assert!(text.contains("Cheaper on Lambda"), "{text}");
        assert!(text.contains("Total: here $0.0893"), "{text}");
        let empty = render(&report(serde_json::json!([])));
        assert!(empty.contains("No usage"), "{empty}");
    }
}
