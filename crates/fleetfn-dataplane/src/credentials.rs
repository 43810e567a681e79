//! Execution-role credentials of environments ([`crate::DataPlaneConfig::roles`]): assumed when
//! an environment starts, so a role that cannot be assumed fails the environment, and with it
//! the publish, with `InsufficientRolePermissions` and STS's error code; renewed on the agents once
//! two thirds of their lifetime are gone (the AWS SDKs read them again from the environment's
//! credentials endpoint before they expire). Environments a leader adopted are given fresh ones
//! on its first pass.

use std::collections::HashMap;
use std::time::Duration;

use fleetfn_proto::{EnvState, Failure, RoleCredentials};
use tokio::time::Instant;

use crate::DataPlane;
use fleetfn_server::records::version_key;

/// `StateReasonCode` of an environment whose role could not be assumed.
pub(crate) const ROLE_REASON_CODE: &str = "InsufficientRolePermissions";

/// How long a failed renewal waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Who an environment's credentials are for: kept with the environment, so a publish with
/// another role never hands the previous publish's environments the new role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleTarget {
    pub role_arn: String,
    pub function_name: String,
}

/// Tries of a start's assume when STS fails for a moment (throttling, unreachable), and the
/// first wait between them (doubling).
const START_TRIES: u32 = 4;
const START_RETRY: Duration = Duration::from_millis(500);

/// The earliest a renewal is scheduled after the last, whatever lifetime STS granted (a peer
/// that ignores `DurationSeconds`, a skewed clock): never a renewal per deployer pass.
const MIN_RENEW_AFTER: Duration = Duration::from_secs(30);

impl DataPlane {
    /// Credentials for environment `env_id` of `target`'s function, or the failure that ends
    /// its start. Transient STS failures are retried a few times first.
    pub(crate) async fn assume_for(
        &self,
        target: &RoleTarget,
        env_id: &str,
    ) -> Result<Option<RoleCredentials>, Failure> {
        let Some(roles) = self.cfg.roles.clone() else {
            return Ok(None);
        };
        let session = fleetfn_roles::session_name(&target.function_name, env_id);
        let mut wait = START_RETRY;
        let mut tries = 0;
        loop {
            tries += 1;
            match roles.assume(&target.role_arn, &session).await {
                Ok(c) => {
                    self.note_renewal(env_id, Some(&c));
                    return Ok(Some(c));
                }
                Err(e) if e.is_transient() && tries < START_TRIES => {
                    tracing::info!(env = env_id, role = target.role_arn, error = %e, "assuming the execution role failed for now; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    tracing::warn!(env = env_id, role = target.role_arn, error = %e, "cannot assume the execution role");
                    // STS's message can name the server's own principal: the function's owner
                    // gets the code, the server's log the whole answer.
                    return Err(Failure {
                        reason_code: ROLE_REASON_CODE.to_owned(),
                        reason: format!(
                            "The role defined for the function cannot be assumed by Lambda ({}).",
                            e.code()
                        ),
                    });
                }
            }
        }
    }

    /// When `env_id` renews next: two thirds into the lifetime of `c` (at least
    /// [`MIN_RENEW_AFTER`] from now, and before it expires); without `c` (a failed renewal),
    /// after [`RETRY_AFTER`].
    fn note_renewal(&self, env_id: &str, c: Option<&RoleCredentials>) {
        let Some(roles) = &self.cfg.roles else { return };
        let after = match c {
            Some(c) => {
                let left = c
                    .expiration
                    .parse::<jiff::Timestamp>()
                    .ok()
                    .and_then(|exp| {
                        Duration::try_from(exp.duration_since(jiff::Timestamp::now())).ok()
                    })
                    .unwrap_or(Duration::ZERO);
                left.saturating_sub(roles.lifetime() / 3)
                    .max(MIN_RENEW_AFTER.min(left / 2))
                    .max(Duration::from_secs(1))
            }
            None => RETRY_AFTER,
        };
        if let Some(e) = self.state.write().envs.get_mut(env_id) {
            e.credentials_renew_at = Some(Instant::now() + after);
        }
    }

    /// One renewal pass: every Ready environment whose renewal is due gets new credentials, of
    /// the role it was started with (an environment adopted from another leader: of its
    /// version's current role).
    pub(crate) async fn renew_credentials(&self) {
        let Some(roles) = self.cfg.roles.clone() else {
            return;
        };
        let now = Instant::now();
        let due: Vec<_> = self
            .state
            .read()
            .envs
            .values()
            .filter(|e| {
                e.state == EnvState::Ready && e.credentials_renew_at.is_none_or(|t| t <= now)
            })
            .map(|e| {
                (
                    e.env_id.clone(),
                    e.version_key.clone(),
                    e.role.clone(),
                    e.instance.clone(),
                )
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let mut current: Option<HashMap<String, RoleTarget>> = None;
        for (env_id, vkey, role, inst) in due {
            let target = match role {
                Some(t) => t,
                None => {
                    if current.is_none() {
                        current = match self.cp.deployable_versions().await {
                            Ok(vs) => Some(
                                vs.iter()
                                    .map(|v| {
                                        (
                                            version_key(&v.function, &v.version),
                                            RoleTarget {
                                                role_arn: v.config.role.clone(),
                                                function_name: v.config.function_name.clone(),
                                            },
                                        )
                                    })
                                    .collect(),
                            ),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read versions to renew credentials");
                                return;
                            }
                        };
                    }
                    match current.as_ref().and_then(|m| m.get(&vkey)) {
                        Some(t) => std::sync::Arc::new(t.clone()),
                        None => {
                            self.note_renewal(&env_id, None);
                            continue;
                        }
                    }
                }
            };
            let session = fleetfn_roles::session_name(&target.function_name, &env_id);
            let creds = match roles.assume(&target.role_arn, &session).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(env = env_id, role = target.role_arn, error = %e, "cannot renew the execution role's credentials");
                    self.note_renewal(&env_id, None);
                    continue;
                }
            };
            match inst.client.put_credentials(&env_id, &creds).await {
                Ok(()) => {
                    tracing::debug!(
                        env = env_id,
                        expiration = creds.expiration,
                        "credentials renewed"
                    );
                    self.note_renewal(&env_id, Some(&creds));
                }
                Err(fleetfn_proto::ClientError::Status {
                    status: 409, body, ..
                }) if body.contains("without credentials") => {
                    // Started before the server assumed roles: it has no endpoint to serve
                    // them at; a restart of the version gives it one.
                    tracing::warn!(
                        env = env_id,
                        "environment started without credentials keeps running without them"
                    );
                    if let Some(e) = self.state.write().envs.get_mut(&env_id) {
                        e.credentials_renew_at = Some(now + Duration::from_secs(86_400 * 365));
                    }
                }
                Err(e) => {
                    tracing::debug!(env = env_id, error = %e, "cannot hand renewed credentials to the agent");
                    self.note_renewal(&env_id, None);
                }
            }
        }
    }
}
