//! `fleetfn status`: the fleet at a glance, from `GET /fleetfn/v1/status` (docs/STATUS.md).

use std::fmt::Write as _;
use std::io::IsTerminal;

use anyhow::Context;
use serde_json::Value;

use crate::client::{self, ConnectArgs};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the server's JSON document (pretty-printed) instead of the summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let client = client::connect(&args.connect)?;
    let body = client
        .get("/fleetfn/v1/status", &[])
        .await
        .map_err(|e| client::command_error(&client, e))?;
    let text = std::str::from_utf8(&body).context("the status document is not UTF-8")?;
    if args.json {
        println!(
            "{}",
            pretty_json(text).context("the status document is not valid JSON")?
        );
    } else {
        let doc: Value =
            serde_json::from_str(text).context("the status document is not valid JSON")?;
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!("{}", render(&doc, color));
    }
    Ok(())
}

/// Re-indents a JSON document (two spaces, like `serde_json::to_string_pretty`) keeping the
/// server's key order, which a round trip through `serde_json::Value` would sort.
pub fn pretty_json(text: &str) -> Result<String, serde_json::Error> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(s) = chars.next() {
                    out.push(s);
                    match s {
                        '\\' => out.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|n| n.is_ascii_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|&n| n == '}' || n == ']') {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    Ok(out)
}

const GREEN: &str = "32";
const YELLOW: &str = "33";
const RED: &str = "31";
const DIM: &str = "2";

/// One table cell: its text and an optional SGR color applied after padding.
struct Cell {
    text: String,
    color: Option<&'static str>,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            color: None,
        }
    }
    fn colored(text: impl Into<String>, color: Option<&'static str>) -> Self {
        Self {
            text: text.into(),
            color,
        }
    }
}

fn paint(out: &mut String, text: &str, color: Option<&'static str>, enabled: bool) {
    match color {
        Some(code) if enabled => {
            let _ = write!(out, "\x1b[{code}m{text}\x1b[0m");
        }
        _ => out.push_str(text),
    }
}

/// Writes rows as aligned columns (two spaces apart, no trailing blanks), each line indented.
fn table(out: &mut String, indent: &str, rows: &[Vec<Cell>], color: bool) {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.text.chars().count();
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    for row in rows {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            paint(&mut line, &cell.text, cell.color, color);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.text.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "-".to_owned(),
    }
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// `[####------]  41%` for a utilization fraction; `-` when unknown.
pub fn cpu_bar(util: Option<f64>) -> String {
    let Some(u) = util.filter(|u| u.is_finite()) else {
        return "-".to_owned();
    };
    let u = u.max(0.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let filled = (u.min(1.0) * 10.0).round() as usize;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let pct = (u * 100.0).round() as u64;
    format!(
        "[{}{}] {pct:>3}%",
        "#".repeat(filled),
        "-".repeat(10 - filled)
    )
}

fn state_color(state: &str) -> Option<&'static str> {
    match state {
        "Active" | "Ready" | "running" | "Successful" => Some(GREEN),
        "Pending" | "pending" | "Starting" | "Draining" | "draining" | "InProgress"
        | "Deactivating" | "ActiveNonInvocable" => Some(YELLOW),
        "Failed" | "failed" => Some(RED),
        "terminated" | "Exited" | "Inactive" | "Deactivated" => Some(DIM),
        _ => None,
    }
}

fn mib(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |m| format!("{m} MiB"))
}

/// Renders the status document as a compact summary. Missing fields show as `-`, so older or
/// newer servers (fields are only ever added) still render.
pub fn render(doc: &Value, color: bool) -> String {
    let mut out = String::new();

    // Header: when, data plane, host budget.
    let mut header = String::from("fleetfn status");
    if let Some(at) = str_of(doc, "GeneratedAt") {
        let _ = write!(header, " at {at}");
    }
    out.push_str(&header);
    out.push('\n');
    match doc.get("DataPlane").and_then(Value::as_bool) {
        Some(false) => out.push_str("data plane: off (control plane only; --no-data-plane)\n"),
        Some(true) => {
            out.push_str("data plane: on");
            if let Some(host) = doc.get("Host") {
                let _ = write!(
                    out,
                    "; host: {} of {} vCPUs in use",
                    text(host, "VCpusInUse"),
                    text(host, "MaxVCpus")
                );
                if host.get("VCpuScale").is_some_and(Value::is_number) {
                    let _ = write!(out, " ({} host CPUs per vCPU)", text(host, "VCpuScale"));
                }
            }
            out.push('\n');
        }
        None => {}
    }

    // Capacity providers and their instances, per zone.
    let providers = list(doc, "CapacityProviders");
    out.push('\n');
    if providers.is_empty() {
        out.push_str("Capacity providers: none\n");
    } else {
        out.push_str("Capacity providers\n");
    }
    for cp in providers {
        let state = text(cp, "State");
        let mut line = String::from("  ");
        paint(&mut line, &text(cp, "Name"), None, color);
        line.push_str("  ");
        paint(&mut line, &state, state_color(&state), color);
        let _ = write!(
            line,
            "  {}  instances {} vCPUs / {} (allocated {} vCPUs / {})  max {} vCPUs",
            text(cp, "Architecture"),
            text(cp, "VCpus"),
            mib(num(cp, "MemoryMiB")),
            text(cp, "AllocatedVCpus"),
            mib(num(cp, "AllocatedMemoryMiB")),
            text(cp, "MaxVCpuCount"),
        );
        out.push_str(&line);
        out.push('\n');
        if let Some(err) = cp.get("LaunchError").filter(|e| e.is_object()) {
            let mut line = String::from("    ");
            let msg = format!(
                "launch failed: {} (at {}; retrying at {})",
                text(err, "Message"),
                text(err, "At"),
                text(err, "RetryAt")
            );
            paint(&mut line, &msg, Some(RED), color);
            out.push_str(&line);
            out.push('\n');
        }
        let instances = list(cp, "Instances");
        let mut zones: Vec<&str> = list(cp, "Zones").iter().filter_map(Value::as_str).collect();
        for i in instances {
            if let Some(z) = str_of(i, "Zone")
                && !zones.contains(&z)
            {
                zones.push(z);
            }
        }
        let mut rows = Vec::new();
        for zone in &zones {
            let here: Vec<&Value> = instances
                .iter()
                .filter(|i| str_of(i, "Zone") == Some(zone))
                .collect();
            if here.is_empty() {
                rows.push(vec![
                    Cell::plain(*zone),
                    Cell::colored("(no instances)", Some(DIM)),
                ]);
            }
            for i in here {
                let st = text(i, "State");
                let envs = num(i, "Environments").map_or_else(
                    || "-".to_owned(),
                    |n| {
                        format!(
                            "{n} env{}",
                            if (n - 1.0).abs() < f64::EPSILON {
                                ""
                            } else {
                                "s"
                            }
                        )
                    },
                );
                rows.push(vec![
                    Cell::plain(*zone),
                    Cell::plain(text(i, "InstanceId")),
                    Cell::plain(text(i, "InstanceType")),
                    Cell::plain(format!("{} vCPU", text(i, "VCpus"))),
                    Cell::plain(mib(num(i, "MemoryMiB"))),
                    Cell::colored(st.clone(), state_color(&st)),
                    Cell::plain(cpu_bar(num(i, "CpuUtilization"))),
                    Cell::plain(envs),
                ]);
            }
        }
        table(&mut out, "    ", &rows, color);
    }

    // Function versions.
    let functions = list(doc, "Functions");
    out.push('\n');
    if functions.is_empty() {
        out.push_str("Function versions: none\n");
        return out;
    }
    out.push_str("Function versions\n");
    let mut rows = vec![
        [
            "VERSION",
            "PROVIDER",
            "STATE",
            "READY",
            "DESIRED",
            "MIN/MAX",
            "IN-FLIGHT",
            "CPU",
            "THROTTLES",
        ]
        .into_iter()
        .map(|h| Cell::colored(h, Some(DIM)))
        .collect::<Vec<_>>(),
    ];
    for f in functions {
        let envs = list(f, "Environments");
        let ready = envs
            .iter()
            .filter(|e| str_of(e, "State") == Some("Ready"))
            .count();
        let in_flight: f64 = envs.iter().filter_map(|e| num(e, "InFlight")).sum();
        let capacity: f64 = envs
            .iter()
            .filter(|e| str_of(e, "State") == Some("Ready"))
            .filter_map(|e| num(e, "MaxConcurrency"))
            .sum();
        let mut state = text(f, "State");
        let state_c = state_color(&state);
        if let Some(code) = str_of(f, "StateReasonCode") {
            let _ = write!(state, " ({code})");
        }
        if let Some(u) = str_of(f, "LastUpdateStatus")
            && u != "Successful"
        {
            let _ = write!(state, ", update {u}");
        }
        let (mut throttles, throttle_c) = throttle_summary(f.get("Throttles"));
        if let Some(n) = num(f, "ThrottlesLastMinute").filter(|n| *n > 0.0) {
            let _ = write!(throttles, "; {n} in the last minute");
        }
        rows.push(vec![
            Cell::plain(format!(
                "{}:{}",
                text(f, "FunctionName"),
                text(f, "Version")
            )),
            Cell::plain(text(f, "CapacityProvider")),
            Cell::colored(state, state_c),
            Cell::plain(format!("{ready}/{}", envs.len())),
            Cell::plain(text(f, "DesiredExecutionEnvironments")),
            Cell::plain(format!(
                "{}/{}",
                text(f, "MinExecutionEnvironments"),
                text(f, "MaxExecutionEnvironments")
            )),
            Cell::plain(if capacity > 0.0 {
                format!("{in_flight}/{capacity}")
            } else {
                format!("{in_flight}")
            }),
            Cell::plain(cpu_bar(num(f, "CpuUtilization"))),
            Cell::colored(throttles, throttle_c),
        ]);
    }
    table(&mut out, "  ", &rows, color);
    out
}

/// `0`, or `12 (Concurrency 10, CPU 2)`: the total and its non-zero reasons.
fn throttle_summary(t: Option<&Value>) -> (String, Option<&'static str>) {
    let Some(t) = t.filter(|t| t.is_object()) else {
        return ("-".to_owned(), None);
    };
    let total = num(t, "Total").unwrap_or(0.0);
    let reasons: Vec<String> = ["Concurrency", "CPU", "Memory", "Disk"]
        .iter()
        .filter_map(|r| num(t, r).filter(|n| *n > 0.0).map(|n| format!("{r} {n}")))
        .collect();
    if total <= 0.0 {
        ("0".to_owned(), None)
    } else if reasons.is_empty() {
        (total.to_string(), Some(YELLOW))
    } else {
        (format!("{total} ({})", reasons.join(", ")), Some(YELLOW))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of docs/STATUS.md.
    const SAMPLE: &str = r#"{
      "GeneratedAt": "2026-11-27T11:00:00.000Z",
      "DataPlane": true,
      "Host": { "VCpuScale": 1.0, "MaxVCpus": 64, "VCpusInUse": 6 },
      "CapacityProviders": [
        {
          "Name": "cp1",
          "Arn": "arn:aws:lambda:us-east-1:000000000000:capacity-provider:cp1",
          "State": "Active",
          "Architecture": "x86_64",
          "Zones": ["subnet-a", "subnet-b", "subnet-c"],
          "MaxVCpuCount": 400,
          "VCpus": 6,
          "MemoryMiB": 12288,
          "AllocatedVCpus": 3.0,
          "AllocatedMemoryMiB": 6144,
          "LaunchError": null,
          "Instances": [
            {
              "InstanceId": "i-0123456789abcdef0",
              "InstanceType": "c7i.large",
              "Zone": "subnet-a",
              "VCpus": 2,
              "MemoryMiB": 4096,
              "State": "running",
              "CpuUtilization": 0.12,
              "Environments": 1,
              "LaunchedAt": "2026-11-27T10:59:58.120Z"
            }
          ]
        }
      ],
      "Functions": [
        {
          "FunctionName": "hello",
          "Version": "1",
          "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:hello:1",
          "CapacityProvider": "cp1",
          "State": "Active",
          "StateReasonCode": null,
          "LastUpdateStatus": "Successful",
          "MinExecutionEnvironments": 3,
          "MaxExecutionEnvironments": null,
          "DesiredExecutionEnvironments": 3,
          "CpuUtilization": 0.04,
          "ConcurrencySaturation": 0.01,
          "Throttles": { "Total": 0, "Concurrency": 0, "CPU": 0, "Memory": 0, "Disk": 0 },
          "Environments": [
            {
              "EnvironmentId": "e-0123456789abcdef",
              "InstanceId": "i-0123456789abcdef0",
              "Zone": "subnet-a",
              "State": "Ready",
              "MaxConcurrency": 16,
              "InFlight": 0,
              "CpuUtilization": 0.04,
              "MemoryBytes": 41943040
            }
          ]
        }
      ]
    }"#;

    const EXPECTED: &str = "\
fleetfn status at 2026-11-27T11:00:00.000Z
data plane: on; host: 6 of 64 vCPUs in use (1.0 host CPUs per vCPU)

Capacity providers
  cp1  Active  x86_64  instances 6 vCPUs / 12288 MiB (allocated 3.0 vCPUs / 6144 MiB)  max 400 vCPUs
    subnet-a  i-0123456789abcdef0  c7i.large  2 vCPU  4096 MiB  running  [#---------]  12%  1 env
    subnet-b  (no instances)
    subnet-c  (no instances)

Function versions
  VERSION  PROVIDER  STATE   READY  DESIRED  MIN/MAX  IN-FLIGHT  CPU                THROTTLES
  hello:1  cp1       Active  1/1    3        3/-      0/16       [----------]   4%  0
";

    #[test]
    fn renders_the_documented_sample() {
        let doc: Value = serde_json::from_str(SAMPLE).unwrap();
        let got = render(&doc, false);
        assert_eq!(got, EXPECTED, "\n--- got ---\n{got}");
        assert!(!got.contains('\x1b'));
    }

    #[test]
    fn colors_only_when_asked() {
        let doc: Value = serde_json::from_str(SAMPLE).unwrap();
        let got = render(&doc, true);
        assert!(got.contains("\x1b[32mActive\x1b[0m"), "{got}");
        // Colors do not disturb the alignment: stripping them gives the plain rendering.
        let mut stripped = String::new();
        let mut rest = got.as_str();
        while let Some(i) = rest.find('\x1b') {
            stripped.push_str(&rest[..i]);
            let end = rest[i..].find('m').unwrap();
            rest = &rest[i + end + 1..];
        }
        stripped.push_str(rest);
        assert_eq!(stripped, EXPECTED);
    }

    #[test]
    fn renders_throttles_failures_and_launch_errors() {
        let mut doc: Value = serde_json::from_str(SAMPLE).unwrap();
        doc["Functions"][0]["State"] = "Failed".into();
        doc["Functions"][0]["StateReasonCode"] = "InvalidRuntime".into();
        doc["Functions"][0]["MaxExecutionEnvironments"] = 9.into();
        doc["Functions"][0]["Throttles"] = serde_json::json!({
            "Total": 12, "Concurrency": 10, "CPU": 2, "Memory": 0, "Disk": 0
        });
        doc["Functions"][0]["Environments"][0]["InFlight"] = 5.into();
        doc["CapacityProviders"][0]["LaunchError"] = serde_json::json!({
            "Message": "no capacity", "At": "2026-11-27T10:59:00Z", "RetryAt": "2026-11-27T11:00:04Z"
        });
        let got = render(&doc, false);
        assert!(
            got.contains("launch failed: no capacity (at 2026-11-27T10:59:00Z; retrying at 2026-11-27T11:00:04Z)"),
            "{got}"
        );
        assert!(got.contains("Failed (InvalidRuntime)"), "{got}");
        assert!(got.contains("3/9"), "{got}");
        assert!(got.contains("5/16"), "{got}");
        assert!(got.contains("12 (Concurrency 10, CPU 2)"), "{got}");
    }

    #[test]
    fn renders_a_control_plane_only_server() {
        let doc = serde_json::json!({"DataPlane": false, "CapacityProviders": [], "Functions": []});
        assert_eq!(
            render(&doc, false),
            "fleetfn status\ndata plane: off (control plane only; --no-data-plane)\n\n\
             Capacity providers: none\n\nFunction versions: none\n"
        );
    }

    #[test]
    fn the_example_in_the_docs_still_renders() {
        let doc = include_str!("../../../docs/STATUS.md");
        let start = doc.find("```json\n").expect("a json block") + "```json\n".len();
        let end = start + doc[start..].find("```").expect("end of the json block");
        let sample: Value = serde_json::from_str(&doc[start..end]).unwrap();
        let got = render(&sample, false);
        for name in list(&sample, "CapacityProviders")
            .iter()
            .filter_map(|c| str_of(c, "Name"))
            .chain(
                list(&sample, "Functions")
                    .iter()
                    .filter_map(|f| str_of(f, "FunctionName")),
            )
        {
            assert!(got.contains(name), "{name} missing from\n{got}");
        }
    }

    #[test]
    fn cpu_bars() {
        assert_eq!(cpu_bar(Some(0.41)), "[####------]  41%");
        assert_eq!(cpu_bar(Some(0.0)), "[----------]   0%");
        assert_eq!(cpu_bar(Some(1.0)), "[##########] 100%");
        assert_eq!(cpu_bar(Some(1.3)), "[##########] 130%");
        assert_eq!(cpu_bar(Some(-0.1)), "[----------]   0%");
        assert_eq!(cpu_bar(None), "-");
    }

    #[test]
    fn pretty_json_keeps_key_order() {
        let raw = r#"{"b":1,"a":[1, {"z":"x,\"y:{"}],"e":{},"f":[] ,"g":null}"#;
        let want = "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    {\n      \"z\": \"x,\\\"y:{\"\n    }\n  ],\n  \"e\": {},\n  \"f\": [],\n  \"g\": null\n}";
        assert_eq!(pretty_json(raw).unwrap(), want);
        let reparsed: Value = serde_json::from_str(want).unwrap();
        assert_eq!(reparsed, serde_json::from_str::<Value>(raw).unwrap());
        assert!(pretty_json("{").is_err());
    }
}
