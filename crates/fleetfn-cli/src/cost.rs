//! `fleetfn cost`: what the capacity cost here against AWS Lambda and AWS LMI for the same
//! traffic, from `GET /fleetfn/v1/cost`.

use std::fmt::Write as _;

use anyhow::Context;
use serde_json::Value;

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
        let doc: Value = serde_json::from_str(text).context("the cost report is not valid JSON")?;
        print!("{}", render(&doc));
    }
    Ok(())
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The human summary of a cost report.
pub fn render(doc: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Cost from {} to {} (instance prices as of {}, Lambda prices as of {})",
        doc["Since"].as_str().unwrap_or("?"),
        doc["Until"].as_str().unwrap_or("?"),
        doc["InstancePricesAsOf"].as_str().unwrap_or("?"),
        doc["LambdaPrices"]["AsOf"].as_str().unwrap_or("?"),
    );
    let providers = doc["CapacityProviders"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if providers.is_empty() {
        out.push_str("No usage in this window.\n");
        return out;
    }
    for p in &providers {
        let _ = writeln!(out, "\n{}", p["Name"].as_str().unwrap_or("?"));
        for i in p["Instances"].as_array().into_iter().flatten() {
            let price = i["HourlyUsd"]
                .as_f64()
                .map_or_else(|| "not in catalog".to_string(), |h| format!("${h:.4}/h"));
            let _ = writeln!(
                out,
                "  {:<14} {:<12} {:>9.3} h  {:>16}  ${:.4}",
                i["InstanceType"].as_str().unwrap_or("?"),
                i["Zone"].as_str().unwrap_or("?"),
                f(&i["Hours"]),
                price,
                f(&i["CostUsd"]),
            );
        }
        let _ = writeln!(
            out,
            "  {} requests, {:.1} GB-s billed; {:.2} req/s",
            p["Requests"].as_u64().unwrap_or(0),
            f(&p["GbSeconds"]),
            f(&p["ObservedRequestsPerSecond"]),
        );
        let c = &p["Cost"];
        let _ = writeln!(
            out,
            "  here ${:.4}   AWS Lambda ${:.4}   AWS LMI ${:.4}",
            f(&c["FleetfnUsd"]),
            f(&c["AwsLambdaUsd"]),
            f(&c["AwsLmiUsd"]),
        );
        let _ = writeln!(out, "  {}", p["Verdict"].as_str().unwrap_or(""));
    }
    let t = &doc["Total"];
    let _ = writeln!(
        out,
        "\nTotal: here ${:.4}   AWS Lambda ${:.4}   AWS LMI ${:.4}",
        f(&t["FleetfnUsd"]),
        f(&t["AwsLambdaUsd"]),
        f(&t["AwsLmiUsd"]),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_report() {
        let doc = serde_json::json!({
            "Since": "2026-11-27T09:00:00.000+0000",
            "Until": "2026-11-27T10:00:00.000+0000",
            "InstancePricesAsOf": "2024-06-01",
            "LambdaPrices": {"AsOf": "2024-06-01"},
            "CapacityProviders": [{
                "Name": "demo",
                "Instances": [{"InstanceType": "c7i.large", "Zone": "subnet-a", "Hours": 1.0,
                               "HourlyUsd": 0.0893, "CostUsd": 0.0893}],
                "Requests": 1000, "GbSeconds": 200.0, "ObservedRequestsPerSecond": 0.28,
                "Cost": {"FleetfnUsd": 0.0893, "AwsLambdaUsd": 0.0035, "AwsLmiUsd": 0.1029},
                "Verdict": "Cheaper on Lambda: ..."
            }],
            "Total": {"FleetfnUsd": 0.0893, "AwsLambdaUsd": 0.0035, "AwsLmiUsd": 0.1029}
        });
        let text = render(&doc);
        assert!(text.contains("demo"), "{text}");
        assert!(text.contains("c7i.large"), "{text}");
        assert!(text.contains("$0.0893/h"), "{text}");
        assert!(text.contains("1000 requests"), "{text}");
        assert!(text.contains("Cheaper on Lambda"), "{text}");
        assert!(text.contains("Total: here $0.0893"), "{text}");
        let empty = render(&serde_json::json!({"CapacityProviders": []}));
        assert!(empty.contains("No usage"), "{empty}");
    }
}
