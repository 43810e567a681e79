//! `fleetfn wait FUNCTION`: poll GetFunctionConfiguration until the function (version) reaches a
//! state, e.g. `Active` after a publish once its execution environments are up.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use fleetfn_model::{LastUpdateStatus, State};
use serde::Deserialize;

use crate::client::{self, ClientError, ConnectArgs, encode_component};

const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Function states a wait can aim for.
pub const STATES: [State; 7] = [
    State::Active,
    State::ActiveNonInvocable,
    State::Pending,
    State::Inactive,
    State::Failed,
    State::Deactivating,
    State::Deactivated,
];

fn state_parser() -> impl TypedValueParser<Value = State> {
    PossibleValuesParser::new(STATES.map(State::as_str)).try_map(|s| s.parse::<State>())
}

/// The members of a GetFunctionConfiguration answer a wait reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Lifecycle {
    pub state: Option<State>,
    pub state_reason: Option<String>,
    pub state_reason_code: Option<String>,
    pub last_update_status: Option<LastUpdateStatus>,
    pub last_update_status_reason: Option<String>,
    pub last_update_status_reason_code: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Function name or ARN.
    pub function: String,
    /// Version or alias, e.g. `$LATEST.PUBLISHED` or `1` (default: the unqualified function).
    #[arg(long)]
    pub qualifier: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value = "300", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// The state to wait for.
    #[arg(long, default_value = "Active", value_parser = state_parser())]
    pub state: State,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 31_536_000.0) {
        return Err(format!("{s:?}: the timeout must be between 0 and 1 year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What one GetFunctionConfiguration answer says about the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// The function failed while waiting for another state; the message says why.
    Failed(String),
    Waiting,
}

/// Decides from a function configuration: `wanted` reached (and no update in progress), failed
/// instead, or not yet.
pub fn judge(cfg: &Lifecycle, wanted: State) -> Verdict {
    if cfg.state == Some(wanted) && cfg.last_update_status != Some(LastUpdateStatus::InProgress) {
        return Verdict::Done;
    }
    if cfg.state == Some(State::Failed) && wanted != State::Failed {
        return Verdict::Failed(describe(cfg));
    }
    Verdict::Waiting
}

/// `State Pending (Creating: waiting for environments), LastUpdateStatus InProgress (...)`.
pub fn describe(cfg: &Lifecycle) -> String {
    let field = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let with_reason = |label: &str, value: &str, code: Option<&str>, reason: Option<&str>| {
        let mut s = format!("{label} {value}");
        match (code, reason) {
            (Some(c), Some(r)) => s.push_str(&format!(" ({c}: {r})")),
            (Some(x), None) | (None, Some(x)) => s.push_str(&format!(" ({x})")),
            (None, None) => {}
        }
        s
    };
    let mut out = with_reason(
        "State",
        cfg.state.map_or("unknown", State::as_str),
        field(&cfg.state_reason_code).as_deref(),
        field(&cfg.state_reason).as_deref(),
    );
    if let Some(u) = cfg.last_update_status {
        out.push_str(", ");
        out.push_str(&with_reason(
            "LastUpdateStatus",
            u.as_str(),
            field(&cfg.last_update_status_reason_code).as_deref(),
            field(&cfg.last_update_status_reason).as_deref(),
        ));
    }
    out
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

pub async fn run(args: WaitArgs) -> anyhow::Result<()> {
    let client = client::connect(&args.connect)?;
    let target = match &args.qualifier {
        Some(q) => format!("{}:{q}", args.function),
        None => args.function.clone(),
    };
    let path = format!(
        "/2015-03-31/functions/{}/configuration",
        encode_component(&args.function)
    );
    let query: Vec<(&str, &str)> = args
        .qualifier
        .as_deref()
        .map(|q| ("Qualifier", q))
        .into_iter()
        .collect();
    let progress = std::io::stderr().is_terminal();
    let start = Instant::now();
    let deadline = start + args.timeout;
    let mut last: Option<Lifecycle> = None;
    let mut last_error: Option<ClientError> = None;
    let mut spins = 0usize;
    let outcome = loop {
        match tokio::time::timeout_at(deadline.into(), client.get_json(&path, &query)).await {
            Err(_) => break Err(()),
            Ok(Ok(cfg)) => {
                let cfg: Lifecycle = serde_json::from_value(cfg).context(
                    "the function configuration has an unknown State or LastUpdateStatus",
                )?;
                match judge(&cfg, args.state) {
                    Verdict::Done => break Ok(cfg),
                    Verdict::Failed(why) => {
                        clear_progress(progress);
                        anyhow::bail!("{target} failed while waiting for {}: {why}", args.state);
                    }
                    Verdict::Waiting => {}
                }
                last = Some(cfg);
                last_error = None;
            }
            Ok(Err(e)) if e.is_transient() => last_error = Some(e),
            Ok(Err(e)) => {
                clear_progress(progress);
                return Err(client::command_error(&client, e));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break Err(());
        }
        if progress {
            let frame = ['|', '/', '-', '\\'][spins % 4];
            spins += 1;
            let seen = last.as_ref().map_or_else(
                || "no answer yet".to_owned(),
                |c| c.state.map_or("?", State::as_str).to_owned(),
            );
            eprint!(
                "\r{frame} waiting for {target} to be {}: {seen} ({:.1}s)\x1b[K",
                args.state,
                start.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    };
    clear_progress(progress);
    match outcome {
        Ok(_) => {
            if progress {
                eprintln!(
                    "{target} is {} ({:.1}s)",
                    args.state,
                    start.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
        Err(()) => {
            let seen = match (&last, &last_error) {
                (_, Some(e)) => format!("last answer: {e}"),
                (Some(cfg), None) => format!("last seen: {}", describe(cfg)),
                (None, None) => "no answer from the server".to_owned(),
            };
            let hint = match last.as_ref().and_then(|c| c.state) {
                Some(State::ActiveNonInvocable) if args.state == State::Active => {
                    " (the unpublished $LATEST of a capacity-provider function is never Active; \
                     wait for a published version, e.g. --qualifier '$LATEST.PUBLISHED')"
                }
                _ => "",
            };
            anyhow::bail!(
                "timed out after {} waiting for {target} to be {}; {seen}{hint}",
                secs(args.timeout),
                args.state
            )
        }
    }
}

fn clear_progress(progress: bool) {
    if progress {
        eprint!("\r\x1b[K");
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> Lifecycle {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn verdicts() {
        let active = cfg(json!({"State": "Active", "LastUpdateStatus": "Successful"}));
        assert_eq!(judge(&active, State::Active), Verdict::Done);
        let updating = cfg(json!({"State": "Active", "LastUpdateStatus": "InProgress"}));
        assert_eq!(judge(&updating, State::Active), Verdict::Waiting);
        let pending = cfg(json!({"State": "Pending", "LastUpdateStatus": "Successful"}));
        assert_eq!(judge(&pending, State::Active), Verdict::Waiting);
        assert_eq!(judge(&pending, State::Pending), Verdict::Done);
        let failed = cfg(json!({
            "State": "Failed",
            "StateReasonCode": "InvalidRuntime",
            "StateReason": "python3.13 not found",
            "LastUpdateStatus": "Failed",
        }));
        assert_eq!(
            judge(&failed, State::Active),
            Verdict::Failed(
                "State Failed (InvalidRuntime: python3.13 not found), LastUpdateStatus Failed"
                    .into()
            )
        );
        assert_eq!(judge(&failed, State::Failed), Verdict::Done);
        assert_eq!(
            judge(&Lifecycle::default(), State::Active),
            Verdict::Waiting
        );
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            describe(&cfg(
                json!({"State": "Pending", "StateReasonCode": "Creating"})
            )),
            "State Pending (Creating)"
        );
        assert_eq!(
            describe(&cfg(json!({
                "State": "Active",
                "LastUpdateStatus": "InProgress",
                "LastUpdateStatusReason": "rolling out"
            }))),
            "State Active, LastUpdateStatus InProgress (rolling out)"
        );
        assert_eq!(describe(&Lifecycle::default()), "State unknown");
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("1").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_timeout("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-3").is_err());
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("inf").is_err());
        assert_eq!(secs(Duration::from_secs(300)), "300s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
    }
}
