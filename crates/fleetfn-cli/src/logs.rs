//! `fleetfn logs FUNCTION`: a function's log records, from `GET
//! /fleetfn/v1/functions/{function}/logs`, optionally followed as they are written.

use std::io::Write;
use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::client::{self, ConnectArgs, encode_component};

const PAGE_LIMIT: &str = "1000";

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Function name or ARN.
    pub function: String,
    /// Version or alias, e.g. `$LATEST.PUBLISHED` or `1` (default: every version).
    #[arg(long)]
    pub qualifier: Option<String>,
    /// Start this far back (30s, 10m, 2h, 1d, 1w) or at this time (RFC 3339, or epoch
    /// milliseconds) [default: 10m].
    #[arg(long)]
    pub since: Option<String>,
    /// Keep printing records as they are written, until interrupted.
    #[arg(long, short)]
    pub follow: bool,
    /// Only the records of this invoke.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Print the records as JSON lines, as stored.
    #[arg(long)]
    pub json: bool,
    /// Seconds one follow request lasts on the server before the command renews it.
    #[arg(long, hide = true, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=900))]
    pub follow_wait: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Splits the answer into lines and prints them; remembers the cursor of a follow's last line.
struct Printer {
    json: bool,
    pending: Vec<u8>,
    end_cursor: Option<String>,
    error: Option<std::io::Error>,
}

impl Printer {
    fn feed(&mut self, chunk: &[u8]) -> ControlFlow<()> {
        self.pending.extend_from_slice(chunk);
        let Some(last) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return ControlFlow::Continue(());
        };
        let complete: Vec<u8> = self.pending.drain(..=last).collect();
        let mut out = std::io::stdout().lock();
        let mut written = Ok(());
        for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            written = self.print(&mut out, line);
            if written.is_err() {
                break;
            }
        }
        match written.and_then(|()| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    fn print(&mut self, out: &mut impl Write, line: &[u8]) -> std::io::Result<()> {
        let Ok(rec) = serde_json::from_slice::<Value>(line) else {
            return writeln!(out, "{}", String::from_utf8_lossy(line));
        };
        if rec["type"] == fleetfn_api::FOLLOW_END_TYPE {
            self.end_cursor = rec["cursor"].as_str().map(str::to_owned);
            return Ok(());
        }
        if self.json {
            out.write_all(line)?;
            return out.write_all(b"\n");
        }
        writeln!(out, "{}", human(&rec, line))
    }
}

/// `timestamp level requestId message`.
pub fn human(rec: &Value, raw: &[u8]) -> String {
    let field = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or("-");
    let message = match rec.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::from_utf8_lossy(raw).into_owned(),
    };
    format!(
        "{} {} {} {}",
        field("timestamp"),
        field("level"),
        field("requestId"),
        message
    )
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let since = fleetfn_logs::parse_since(
        args.since.as_deref().unwrap_or("10m"),
        jiff::Timestamp::now(),
    )
    .context("--since")?
    .to_string();
    let client = client::connect(&args.connect)?;
    let path = format!(
        "/fleetfn/v1/functions/{}/logs",
        encode_component(&args.function)
    );
    let idle = if args.follow {
        Duration::from_secs(args.follow_wait + 30)
    } else {
        Duration::from_secs(30)
    };
    let wait = args.follow_wait.to_string();
    let mut printer = Printer {
        json: args.json,
        pending: Vec::new(),
        end_cursor: None,
        error: None,
    };
    let mut cursor: Option<String> = None;
    loop {
        let mut query: Vec<(&str, &str)> = vec![("Since", &since)];
        if let Some(q) = &args.qualifier {
            query.push(("Qualifier", q));
        }
        if let Some(id) = &args.request_id {
            query.push(("RequestId", id));
        }
        if let Some(c) = &cursor {
            query.push(("Cursor", c));
        }
        if args.follow {
            query.extend([("Follow", "true"), ("Wait", wait.as_str())]);
        } else {
            query.push(("Limit", PAGE_LIMIT));
        }
        printer.end_cursor = None;
        let headers = client
            .get_streaming(&path, &query, idle, |chunk| printer.feed(chunk))
            .await
            .map_err(|e| client::command_error(&client, e))?;
        if let Some(e) = printer.error.take() {
            // `fleetfn logs ... | head`: the reader has what it wanted.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("writing to standard output");
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if args.follow {
            cursor = Some(printer.end_cursor.take().context(
                "the log stream ended before the server said where it stopped (did the server stop?)",
            )?);
        } else if header("x-fleetfn-more") == Some("true") {
            cursor = Some(
                header("x-fleetfn-cursor")
                    .context("the server said more records follow but sent no cursor")?
                    .to_owned(),
            );
        } else {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn human_lines() {
        let rec = json!({"timestamp": "2026-01-01T00:00:00.000Z", "level": "WARN", "requestId": "r1", "message": "hi there"});
        assert_eq!(
            human(&rec, b""),
            "2026-01-01T00:00:00.000Z WARN r1 hi there"
        );
        let rec = json!({"timestamp": "t", "level": "INFO", "message": {"k": 1}});
        assert_eq!(human(&rec, b""), "t INFO - {\"k\":1}");
        let rec = json!({"timestamp": "t", "other": 1});
        assert_eq!(human(&rec, b"{raw}"), "t - - {raw}");
    }

    #[test]
    fn printer_splits_chunks_and_takes_the_cursor() {
        let mut p = Printer {
            json: true,
            pending: Vec::new(),
            end_cursor: None,
            error: None,
        };
        assert!(p.feed(b"").is_continue());
        let end = format!(
            "{}\n",
            json!({"type": fleetfn_api::FOLLOW_END_TYPE, "cursor": "abc"})
        );
        let mut sink = Vec::new();
        p.print(&mut sink, b"{\"message\":\"x\"}").unwrap();
        p.print(&mut sink, end.trim_end().as_bytes()).unwrap();
        assert_eq!(sink, b"{\"message\":\"x\"}\n");
        assert_eq!(p.end_cursor.as_deref(), Some("abc"));
        // A line split across chunks waits for its end.
        assert!(p.feed(b"{\"type\":\"fleetfn.fol").is_continue());
        assert!(!p.pending.is_empty());
        assert!(p.feed(b"lowEnd\",\"cursor\":\"def\"}\n").is_continue());
        assert!(p.pending.is_empty());
        assert_eq!(p.end_cursor.as_deref(), Some("def"));
    }
}
