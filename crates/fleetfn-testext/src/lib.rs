//! Test fixture: Lambda extensions written on the real `lambda-extension` crate, unchanged, so
//! fleetfn's Extensions API and Telemetry API are exercised by the client real users run.
//!
//! Two binaries, each packaged by tests/extensions as `/opt/extensions/<binary name>` in a layer
//! (the crate takes the extension's name from its file name):
//!
//! - `fleetfn-testext-events`: registers for the events named by `FLEETFN_TESTEXT_EVENTS`
//!   (comma-separated, default [`DEFAULT_EVENTS`], `SHUTDOWN`) with an events processor;
//! - `fleetfn-testext-telemetry`: registers for `SHUTDOWN` and subscribes to the Telemetry API
//!   (`platform`, `function`, `extension`) with the crate's telemetry processor, listening on
//!   [`TELEMETRY_PORT`] (`FLEETFN_TESTEXT_TELEMETRY_PORT` overrides it).
//!
//! Both append what they receive as JSON lines ([`Record`]) to `<dir>/<name>.jsonl`, where
//! `<dir>` is `FLEETFN_TESTEXT_DIR` or [`DEFAULT_DIR`]. `/tmp` is shared by every process of one
//! execution environment, so the function's handler reads the files and returns them to the
//! test. Each record is one `write` on an `O_APPEND` file: a reader sees whole lines, except
//! possibly an unfinished last one, which it skips.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// Where the records go unless `FLEETFN_TESTEXT_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/tmp/fleetfn-testext";
/// The events `fleetfn-testext-events` registers for unless `FLEETFN_TESTEXT_EVENTS` is set:
/// Lambda Managed Instances deliver only `SHUTDOWN` to extensions (registering `INVOKE` is
/// refused with `Extension.InvalidEventType`), so the crate's default (`INVOKE,SHUTDOWN`) is
/// replaced, as extensions running on LMI do.
pub const DEFAULT_EVENTS: &str = "SHUTDOWN";
/// The telemetry listener's port (the crate's default, 9003, stays free for other extensions).
pub const TELEMETRY_PORT: u16 = 9013;

/// One line of a record file.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Record<'a> {
    /// The register answer, written once after registration (and telemetry subscription).
    #[serde(rename_all = "camelCase")]
    Registered {
        extension_id: &'a str,
        function_name: &'a str,
        function_version: &'a str,
        handler: &'a str,
        account_id: Option<&'a str>,
        events: &'a [&'a str],
    },
    /// An `INVOKE` event from `/extension/event/next`.
    #[serde(rename_all = "camelCase")]
    Invoke {
        request_id: &'a str,
        deadline_ms: u64,
        invoked_function_arn: &'a str,
        tracing_type: &'a str,
        tracing_value: &'a str,
    },
    /// A `SHUTDOWN` event.
    #[serde(rename_all = "camelCase")]
    Shutdown {
        shutdown_reason: &'a str,
        deadline_ms: u64,
    },
    /// One telemetry item as the crate parsed it (`time`, `type`, `record`), re-serialized.
    Telemetry {
        item: &'a lambda_extension::LambdaTelemetry<serde_json::Value>,
    },
    /// One POST of the Telemetry API: how many items it carried.
    Batch { items: usize },
}

/// Appends [`Record`]s to one file.
pub struct Recorder {
    path: PathBuf,
    file: Mutex<fs::File>,
}

impl Recorder {
    /// The recorder of extension `name` in the directory the environment names (created).
    pub fn from_env(name: &str) -> io::Result<Self> {
        let dir = std::env::var_os("FLEETFN_TESTEXT_DIR")
            .map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from);
        Self::open(&dir, name)
    }

    /// The recorder writing `<dir>/<name>.jsonl` (the directory is created, mode 0777 so the
    /// function, which may run as another uid, can read and clear it).
    pub fn open(dir: &Path, name: &str) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        set_mode(dir, 0o777)?;
        let path = dir.join(format!("{name}.jsonl"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        set_mode(&path, 0o666)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file the records go to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line, in one write.
    pub fn record(&self, record: &Record<'_>) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(&line)
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// The events named by `FLEETFN_TESTEXT_EVENTS` (or [`DEFAULT_EVENTS`]), upper-cased, empty
/// items dropped.
pub fn events_from_env() -> Vec<String> {
    parse_events(
        &std::env::var("FLEETFN_TESTEXT_EVENTS").unwrap_or_else(|_| DEFAULT_EVENTS.to_string()),
    )
}

fn parse_events(list: &str) -> Vec<String> {
    list.split(',')
        .map(|e| e.trim().to_ascii_uppercase())
        .filter(|e| !e.is_empty())
        .collect()
}

/// The telemetry listener's port: `FLEETFN_TESTEXT_TELEMETRY_PORT` or [`TELEMETRY_PORT`].
pub fn telemetry_port_from_env() -> u16 {
    std::env::var("FLEETFN_TESTEXT_TELEMETRY_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(TELEMETRY_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_list_is_trimmed_and_upper_cased() {
        assert_eq!(
            parse_events(" invoke, SHUTDOWN ,,"),
            vec!["INVOKE", "SHUTDOWN"]
        );
        assert!(parse_events("").is_empty());
    }

    #[test]
    fn records_are_whole_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::open(&dir.path().join("sub"), "ext").unwrap();
        rec.record(&Record::Invoke {
            request_id: "r-1",
            deadline_ms: 5,
            invoked_function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f",
            tracing_type: "X-Amzn-Trace-Id",
            tracing_value: "Root=1-2-3",
        })
        .unwrap();
        rec.record(&Record::Shutdown {
            shutdown_reason: "spindown",
            deadline_ms: 7,
        })
        .unwrap();
        let text = fs::read_to_string(rec.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["kind"], "invoke");
        assert_eq!(lines[0]["requestId"], "r-1");
        assert_eq!(
            lines[1],
            serde_json::json!({"kind": "shutdown", "shutdownReason": "spindown", "deadlineMs": 7})
        );
    }

    #[test]
    fn telemetry_items_keep_the_wire_shape() {
        let wire = r#"{"time":"2022-10-12T00:00:00.000Z","type":"platform.start","record":{"requestId":"r-9","version":"$LATEST"}}"#;
        let item: lambda_extension::LambdaTelemetry<serde_json::Value> =
            serde_json::from_str(wire).unwrap();
        let line = serde_json::to_value(Record::Telemetry { item: &item }).unwrap();
        assert_eq!(line["kind"], "telemetry");
        assert_eq!(line["item"]["type"], "platform.start");
        assert_eq!(line["item"]["record"]["requestId"], "r-9");
    }
}
