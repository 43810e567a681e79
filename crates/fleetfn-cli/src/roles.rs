//! `--assume-roles`: whether and how the server gets functions' execution-role credentials
//! (fleetfn-roles), said once at start.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetfn_roles::{RoleAssumer, SourceChain, StsClient, StsConfig};

/// Execution-role options of `fleetfn serve` and `fleetfn server`.
#[derive(Debug, Clone, clap::Args)]
pub struct RoleArgs {
    /// Give every environment its function's execution role: the server assumes `Role` with
    /// STS (`AssumeRole`, one session per environment) using its own AWS credentials (the
    /// standard chain: AWS_ACCESS_KEY_ID…, the AWS_PROFILE profile, the EC2 instance role) and
    /// serves them, renewed, at the environment's container credentials endpoint. The STS
    /// endpoint is AWS_ENDPOINT_URL_STS (or AWS_ENDPOINT_URL) when set.
    #[arg(long, env = "FLEETFN_ASSUME_ROLES")]
    pub assume_roles: bool,
    /// Lifetime of the assumed credentials (`DurationSeconds`; AWS STS accepts 900 up to the
    /// role's maximum session duration).
    #[arg(
        long,
        default_value_t = 3600,
        env = "FLEETFN_ROLE_SESSION_SECONDS",
        value_name = "SECONDS"
    )]
    pub role_session_seconds: u64,
}

/// The role assumer, or `None` (said once) when roles are not assumed.
pub async fn assumer(
    args: &RoleArgs,
    region: &str,
) -> anyhow::Result<Option<Arc<dyn RoleAssumer>>> {
    if !args.assume_roles {
        tracing::info!(
            "execution roles: not assumed; functions get no AWS credentials (start with --assume-roles to give them their role's)"
        );
        return Ok(None);
    }
    anyhow::ensure!(
        args.role_session_seconds >= 1,
        "--role-session-seconds must be at least 1"
    );
    if args.role_session_seconds < 900 {
        tracing::warn!(
            seconds = args.role_session_seconds,
            "--role-session-seconds is below 900, which AWS STS refuses"
        );
    }
    let source = SourceChain::detect()
        .await
        .context("reading the server's AWS credentials for --assume-roles")?
        .context(
            "--assume-roles needs AWS credentials for the server: none in the environment \
             (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), the shared credentials or config file \
             (AWS_PROFILE), or an EC2 instance role",
        )?;
    let cfg = StsConfig::from_env(region, Duration::from_secs(args.role_session_seconds));
    tracing::info!(
        sts = cfg.endpoint,
        credentials = source.describe(),
        seconds = args.role_session_seconds,
        "execution roles: assumed with STS for every environment"
    );
    let sts = StsClient::new(cfg, Arc::new(source)).context("setting up the STS client")?;
    Ok(Some(Arc::new(sts)))
}
