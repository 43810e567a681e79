//! `fleetfn status`: the fleet at a glance, from `GET /fleetfn/v1/status` (docs/STATUS.md).

use std::fmt::Write as _;
use std::io::IsTerminal;

use anyhow::Context;
use fleetfn_contracts::{EnvState, InstanceState, StatusDocument, Throttles};
use fleetfn_model::{CapacityProviderState, LastUpdateStatus, State, ThrottleReason};

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
        let doc: StatusDocument = serde_json::from_str(text)
            .context("the status document is not a status document (docs/STATUS.md)")?;
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

/// A number as the JSON document writes it (`3.0`, `0.12`); `-` when not finite.
fn number(x: f64) -> String {
    serde_json::Number::from_f64(x).map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
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

fn function_color(state: State) -> Option<&'static str> {
    match state {
        State::Active => Some(GREEN),
        State::Pending | State::Deactivating | State::ActiveNonInvocable | State::Deleting => {
            Some(YELLOW)
        }
        State::Failed => Some(RED),
        State::Inactive | State::Deactivated => Some(DIM),
    }
}

fn provider_color(state: CapacityProviderState) -> Option<&'static str> {
    match state {
        CapacityProviderState::Active => Some(GREEN),
        CapacityProviderState::Pending | CapacityProviderState::Deleting => Some(YELLOW),
        CapacityProviderState::Failed => Some(RED),
    }
}

/// `pending`, `running`, `draining`, `terminated`, as in the document.
fn instance_state(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Pending => "pending",
        InstanceState::Running => "running",
        InstanceState::Draining => "draining",
        InstanceState::Terminated => "terminated",
    }
}

fn instance_color(state: InstanceState) -> Option<&'static str> {
    match state {
        InstanceState::Running => Some(GREEN),
        InstanceState::Pending | InstanceState::Draining => Some(YELLOW),
        InstanceState::Terminated => Some(DIM),
    }
}

fn mib(m: u64) -> String {
    format!("{m} MiB")
}

/// Renders the status document as a compact summary; unknown values show as `-`.
pub fn render(doc: &StatusDocument, color: bool) -> String {
    let mut out = String::new();

    // Header: when, data plane, host budget.
    let mut header = String::from("fleetfn status");
    if let Some(at) = &doc.generated_at {
        let _ = write!(header, " at {at}");
    }
    out.push_str(&header);
    out.push('\n');
    if doc.data_plane {
        out.push_str("data plane: on");
        if let Some(host) = &doc.host {
            let _ = write!(
                out,
                "; host: {} of {} vCPUs in use",
                host.v_cpus_in_use, host.max_v_cpus
            );
            if host.v_cpu_scale.is_finite() {
                let _ = write!(out, " ({} host CPUs per vCPU)", number(host.v_cpu_scale));
            }
        }
        out.push('\n');
    } else {
        out.push_str("data plane: off (control plane only; --no-data-plane)\n");
    }
    if let Some(q) = &doc.async_queue {
        let _ = write!(
            out,
            "async queue: {} events ({} being delivered)",
            q.depth, q.in_flight
        );
        if let Some(age) = q.oldest_age_seconds {
            let _ = write!(out, ", oldest {} s", number(age));
        }
        out.push('\n');
    }

    // Capacity providers and their instances, per zone.
    let providers = &doc.capacity_providers;
    out.push('\n');
    if providers.is_empty() {
        out.push_str("Capacity providers: none\n");
    } else {
        out.push_str("Capacity providers\n");
    }
    for cp in providers {
        let mut line = String::from("  ");
        paint(&mut line, &cp.name, None, color);
        line.push_str("  ");
        paint(
            &mut line,
            cp.state.as_str(),
            provider_color(cp.state),
            color,
        );
        let _ = write!(
            line,
            "  {}  instances {} vCPUs / {} (allocated {} vCPUs / {})  max {} vCPUs",
            cp.architecture,
            cp.v_cpus,
            mib(cp.memory_mib),
            number(cp.allocated_v_cpus),
            mib(cp.allocated_memory_mib),
            cp.max_v_cpu_count,
        );
        out.push_str(&line);
        out.push('\n');
        if let Some(err) = &cp.launch_error {
            let mut line = String::from("    ");
            let msg = format!(
                "launch failed: {} (at {}; retrying at {})",
                err.message, err.at, err.retry_at
            );
            paint(&mut line, &msg, Some(RED), color);
            out.push_str(&line);
            out.push('\n');
        }
        for f in &cp.capacity_fallbacks {
            let mut line = String::from("    ");
            let msg = format!(
                "no capacity: {} in {}: {} (at {}; fell back to another type or zone)",
                f.instance_type, f.zone, f.code, f.at
            );
            paint(&mut line, &msg, Some(YELLOW), color);
            out.push_str(&line);
            out.push('\n');
        }
        let mut zones: Vec<&str> = cp.zones.iter().map(String::as_str).collect();
        for i in &cp.instances {
            if !zones.contains(&i.zone.as_str()) {
                zones.push(&i.zone);
            }
        }
        let mut rows = Vec::new();
        for zone in &zones {
            let here: Vec<_> = cp.instances.iter().filter(|i| i.zone == *zone).collect();
            if here.is_empty() {
                rows.push(vec![
                    Cell::plain(*zone),
                    Cell::colored("(no instances)", Some(DIM)),
                ]);
            }
            for i in here {
                let n = i.environments;
                rows.push(vec![
                    Cell::plain(*zone),
                    Cell::plain(&i.instance_id),
                    Cell::plain(&i.instance_type),
                    Cell::plain(format!("{} vCPU", i.v_cpus)),
                    Cell::plain(mib(i.memory_mib)),
                    Cell::colored(instance_state(i.state), instance_color(i.state)),
                    Cell::plain(cpu_bar(i.cpu_utilization)),
                    Cell::plain(format!("{n} env{}", if n == 1 { "" } else { "s" })),
                ]);
            }
        }
        table(&mut out, "    ", &rows, color);
    }

    // Function versions.
    let functions = &doc.functions;
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
            "INV/S",
            "CPU",
            "THROTTLES",
        ]
        .into_iter()
        .map(|h| Cell::colored(h, Some(DIM)))
        .collect::<Vec<_>>(),
    ];
    for f in functions {
        let envs = &f.environments;
        let ready = envs.iter().filter(|e| e.state == EnvState::Ready);
        let capacity: u64 = ready.clone().map(|e| u64::from(e.max_concurrency)).sum();
        let ready = ready.count();
        let in_flight: u64 = envs.iter().map(|e| u64::from(e.in_flight)).sum();
        let mut state = f.state.to_string();
        if let Some(code) = &f.state_reason_code {
            let _ = write!(state, " ({code})");
        }
        if f.last_update_status != LastUpdateStatus::Successful {
            let _ = write!(state, ", update {}", f.last_update_status);
        }
        let (mut throttles, throttle_c) = throttle_summary(&f.throttles);
        if f.throttles_last_minute > 0 {
            let _ = write!(
                throttles,
                "; {} in the last minute",
                f.throttles_last_minute
            );
        }
        rows.push(vec![
            Cell::plain(format!("{}:{}", f.function_name, f.version)),
            Cell::plain(or_dash(f.capacity_provider.as_deref())),
            Cell::colored(state, function_color(f.state)),
            Cell::plain(format!("{ready}/{}", envs.len())),
            Cell::plain(f.desired_execution_environments.to_string()),
            Cell::plain(format!(
                "{}/{}",
                f.min_execution_environments,
                or_dash(f.max_execution_environments)
            )),
            Cell::plain(if capacity > 0 {
                format!("{in_flight}/{capacity}")
            } else {
                format!("{in_flight}")
            }),
            Cell::plain(rate(f.invocations_per_second)),
            Cell::plain(cpu_bar(f.cpu_utilization)),
            Cell::colored(throttles, throttle_c),
        ]);
    }
    table(&mut out, "  ", &rows, color);
    out
}

/// Invokes per second: `0`, `0.4`, `12.0`, `1250`.
fn rate(x: f64) -> String {
    if x <= 0.0 || !x.is_finite() {
        "0".into()
    } else if x < 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// `0`, or `12 (Concurrency 10, CPU 2)`: the total and its non-zero reasons.
fn throttle_summary(t: &Throttles) -> (String, Option<&'static str>) {
    let reasons: Vec<String> = ThrottleReason::ALL
        .iter()
        .map(|r| (r.label(), t.get(*r)))
        .filter(|(_, n)| *n > 0)
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    if t.total == 0 {
        ("0".to_owned(), None)
    } else if reasons.is_empty() {
        (t.total.to_string(), Some(YELLOW))
    } else {
        (
            format!("{} ({})", t.total, reasons.join(", ")),
            Some(YELLOW),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

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
  VERSION  PROVIDER  STATE   READY  DESIRED  MIN/MAX  IN-FLIGHT  INV/S  CPU                THROTTLES
  hello:1  cp1       Active  1/1    3        3/-      0/16       0      [----------]   4%  0
";

    #[test]
    fn renders_the_documented_sample() {
        let doc: StatusDocument = serde_json::from_str(SAMPLE).unwrap();
        let got = render(&doc, false);
        assert_eq!(got, EXPECTED, "\n--- got ---\n{got}");
        assert!(!got.contains('\x1b'));
    }

    #[test]
    fn colors_only_when_asked() {
        let doc: StatusDocument = serde_json::from_str(SAMPLE).unwrap();
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
        let mut doc: StatusDocument = serde_json::from_str(SAMPLE).unwrap();
        let f = &mut doc.functions[0];
        f.state = State::Failed;
        f.state_reason_code = Some("InvalidRuntime".into());
        f.last_update_status = LastUpdateStatus::Failed;
        f.max_execution_environments = Some(9);
        f.throttles = Throttles::from_counts([10, 2, 0, 0]);
        f.throttles_last_minute = 3;
        f.invocations_per_second = 12.34;
        f.environments[0].in_flight = 5;
        doc.capacity_providers[0].launch_error = Some(fleetfn_contracts::LaunchError {
            message: "no capacity".into(),
            at: "2026-11-27T10:59:00Z".into(),
            retry_at: "2026-11-27T11:00:04Z".into(),
        });
        doc.capacity_providers[0].capacity_fallbacks = vec![fleetfn_contracts::CapacityFallback {
            instance_type: "c7i.large".into(),
            zone: "subnet-b".into(),
            code: "InsufficientInstanceCapacity".into(),
            message: "none left".into(),
            at: "2026-11-27T10:58:00Z".into(),
        }];
        let got = render(&doc, false);
        assert!(
            got.contains("no capacity: c7i.large in subnet-b: InsufficientInstanceCapacity (at 2026-11-27T10:58:00Z; fell back to another type or zone)"),
            "{got}"
        );
        assert!(
            got.contains("launch failed: no capacity (at 2026-11-27T10:59:00Z; retrying at 2026-11-27T11:00:04Z)"),
            "{got}"
        );
        assert!(
            got.contains("Failed (InvalidRuntime), update Failed"),
            "{got}"
        );
        assert!(got.contains("3/9"), "{got}");
        assert!(got.contains("5/16"), "{got}");
        assert!(got.contains("  12.3  "), "{got}");
        assert!(
            got.contains("12 (Concurrency 10, CPU 2); 3 in the last minute"),
            "{got}"
        );
    }

    #[test]
    fn renders_a_control_plane_only_server() {
        let doc: StatusDocument = serde_json::from_value(
            serde_json::json!({"DataPlane": false, "CapacityProviders": [], "Functions": []}),
        )
        .unwrap();
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
        let sample: StatusDocument = serde_json::from_str(&doc[start..end]).unwrap();
        let got = render(&sample, false);
        for name in sample
            .capacity_providers
            .iter()
            .map(|c| &c.name)
            .chain(sample.functions.iter().map(|f| &f.function_name))
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
