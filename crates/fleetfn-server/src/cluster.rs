//! Join tokens and agent registration, for agents on other hosts (`fleetfn agent --join`).
//!
//! A join token is `fj1.<id>.<secret>`: the store keeps its id, the sha256 of its secret, an
//! expiry and whether it was revoked; the secret itself is shown once, at creation. An agent
//! presents a token with what it offers (address, zone, vCPUs, memory, architecture, runtimes)
//! and gets its own id and credential; the store keeps only the credential's sha256. Neither a
//! token nor an agent credential is a SigV4 key: they open only the join endpoint (and, later,
//! the agent protocol), never the admin API.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use fleetfn_model::{ErrorKind, LambdaError, Result};
use fleetfn_store::{Expect, Op, Table};

use crate::service::ControlPlane;

/// The prefix of every join token (version 1 of the format).
pub const TOKEN_PREFIX: &str = "fj1";
/// Default and bounds of a token's lifetime.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 24 * 3600;
pub const MAX_TOKEN_TTL_SECS: u64 = 365 * 24 * 3600;
/// Runtimes an agent may say it has.
const MAX_RUNTIMES: usize = 64;

/// `POST /fleetfn/v1/join-tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateJoinToken {
    /// Seconds until it expires (1 … one year; default one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// One join only: the first agent that joins with it uses it up (the `ec2` provider gives
    /// each instance it launches a token of its own this way).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_use: bool,
}

/// A join token as listed (never its secret), and as created (`Token` set, that once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinTokenDocument {
    pub token_id: String,
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: String,
    pub revoked: bool,
    /// One join only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_use: bool,
    /// A single-use token that an agent joined with.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub used: bool,
    /// The whole token, only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `GET /fleetfn/v1/join-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinTokenList {
    pub join_tokens: Vec<JoinTokenDocument>,
}

/// What a joining agent offers (`POST /fleetfn/v1/agents/join`, with the token as bearer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct JoinRequest {
    /// `HOST:PORT` the servers reach its agent API at.
    pub address: String,
    pub zone: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// `x86_64` or `arm64`.
    pub architecture: String,
    /// Runtimes the host can run (e.g. `python3.13`, `provided.al2023`).
    pub runtimes: Vec<String>,
    /// The host's name, for people.
    #[serde(default)]
    pub hostname: String,
    /// Whether the agent serves its API over TLS (`fleetfn agent --tls-cert`): servers then
    /// call it over https only, verifying its certificate for `Address`'s IP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

/// The answer to a join: the agent's id and its credential (shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinResponse {
    pub agent_id: String,
    pub credential: String,
}

/// A joined agent as listed (`GET /fleetfn/v1/agents`), without its credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentDocument {
    pub agent_id: String,
    pub address: String,
    pub zone: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub architecture: String,
    pub runtimes: Vec<String>,
    pub hostname: String,
    pub joined_at: String,
    /// The token it joined with.
    pub token_id: String,
    /// It serves its API over TLS (servers never call it over plain HTTP).
    #[serde(default)]
    pub tls: bool,
}

/// `GET /fleetfn/v1/agents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentList {
    pub agents: Vec<AgentDocument>,
}

/// The stored token: the secret only as its sha256.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    id: String,
    secret_sha256: String,
    description: String,
    created_at: i64,
    expires_at: i64,
    revoked: bool,
    #[serde(default)]
    single_use: bool,
    #[serde(default)]
    used: bool,
}

/// The stored agent: the credential as its sha256 (to check the agent's calls) and sealed with
/// the cluster's `env.key` (for servers to present when they call the agent), so the database
/// alone does not reveal it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AgentRecord {
    #[serde(flatten)]
    doc: AgentDocument,
    credential_sha256: String,
    #[serde(default)]
    credential_sealed: Option<String>,
}

/// A joined agent as the servers reach it: where, and the credential it takes.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinedAgent {
    pub doc: AgentDocument,
    pub credential: String,
}

impl std::fmt::Debug for JoinedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinedAgent")
            .field("doc", &self.doc)
            .finish_non_exhaustive()
    }
}

/// A joined agent claimed as an instance of a `static` capacity provider (one instance per
/// agent), written by the leader through its fenced store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentClaim {
    pub agent_id: String,
    pub instance_id: String,
    pub capacity_provider: String,
    pub zone: String,
    /// The catalog instance type it serves as.
    pub instance_type: String,
    /// RFC 3339.
    pub claimed_at: String,
}

fn credential_aad(agent_id: &str) -> String {
    format!("agent-credential:{agent_id}")
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Equal without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), |t| t.to_string())
}

fn denied(message: &str) -> LambdaError {
    LambdaError::new(ErrorKind::AccessDenied, message)
}

impl TokenRecord {
    fn document(&self, token: Option<String>) -> JoinTokenDocument {
        JoinTokenDocument {
            token_id: self.id.clone(),
            description: self.description.clone(),
            created_at: rfc3339(self.created_at),
            expires_at: rfc3339(self.expires_at),
            revoked: self.revoked,
            single_use: self.single_use,
            used: self.used,
            token,
        }
    }
}

/// `[a-z0-9-]`, 1–64 characters: zones and the like.
fn is_label(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_join(req: &JoinRequest) -> Result<()> {
    let bad = |what: &str| Err(LambdaError::invalid(what.to_string()));
    if req.address.parse::<std::net::SocketAddr>().is_err() {
        return bad("Address must be the IP:PORT the servers reach the agent at");
    }
    if !is_label(&req.zone) {
        return bad("Zone must be 1-64 characters of a-z, 0-9 and -");
    }
    if !(1..=1024).contains(&req.vcpus) {
        return bad("Vcpus must be between 1 and 1024");
    }
    if !(512..=64 * 1024 * 1024).contains(&req.memory_mib) {
        return bad("MemoryMib must be between 512 and 67108864");
    }
    if !matches!(req.architecture.as_str(), "x86_64" | "arm64") {
        return bad("Architecture must be x86_64 or arm64");
    }
    if req.runtimes.len() > MAX_RUNTIMES
        || req.runtimes.iter().any(|r| r.is_empty() || r.len() > 64)
    {
        return bad("Runtimes must be at most 64 names of 1-64 characters");
    }
    if req.hostname.len() > 253 {
        return bad("Hostname must be at most 253 characters");
    }
    Ok(())
}

impl ControlPlane {
    /// A new join token; the answer holds the whole token, which is never shown again.
    pub async fn create_join_token(
        &self,
        req: CreateJoinToken,
        now: i64,
    ) -> Result<JoinTokenDocument> {
        let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
        if !(1..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
            return Err(LambdaError::invalid(format!(
                "TtlSeconds must be between 1 and {MAX_TOKEN_TTL_SECS}"
            )));
        }
        let description = req.description.unwrap_or_default();
        if description.len() > 256 {
            return Err(LambdaError::invalid(
                "Description must be at most 256 characters",
            ));
        }
        let id = random_hex(8);
        let secret = random_hex(32);
        let rec = TokenRecord {
            id: id.clone(),
            secret_sha256: sha256_hex(&secret),
            description,
            created_at: now,
            expires_at: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            revoked: false,
            single_use: req.single_use,
            used: false,
        };
        self.commit(vec![Op::put(Table::JoinTokens, &id, &rec, Expect::Absent)])
            .await?;
        Ok(rec.document(Some(format!("{TOKEN_PREFIX}.{id}.{secret}"))))
    }

    pub async fn list_join_tokens(&self) -> Result<JoinTokenList> {
        let tokens: Vec<(TokenRecord, String, i64)> = self
            .list_records(Table::JoinTokens, "", None, 10_000)
            .await?;
        Ok(JoinTokenList {
            join_tokens: tokens
                .into_iter()
                .map(|(t, _, _)| t.document(None))
                .collect(),
        })
    }

    /// Revokes a token: joins with it are refused from now on (agents that joined with it
    /// keep their own credentials).
    pub async fn revoke_join_token(&self, id: &str) -> Result<JoinTokenDocument> {
        let Some((mut rec, rev)) = self
            .get_record::<TokenRecord>(Table::JoinTokens, id)
            .await?
        else {
            return Err(LambdaError::not_found(format!(
                "Join token not found: {id}"
            )));
        };
        rec.revoked = true;
        self.commit(vec![Op::put(
            Table::JoinTokens,
            id,
            &rec,
            Expect::Revision(rev),
        )])
        .await?;
        Ok(rec.document(None))
    }

    /// Registers an agent that presents `token`; `Err(AccessDenied)` for a token that is
    /// malformed, unknown, wrong, expired or revoked (one message for all: nothing to probe).
    pub async fn join_agent(
        &self,
        token: &str,
        req: JoinRequest,
        now: i64,
    ) -> Result<JoinResponse> {
        let refused = || {
            denied(
                "The join token is not valid: it is unknown, expired or revoked. \
                 Create one with `fleetfn token create` on a server.",
            )
        };
        let mut parts = token.trim().splitn(3, '.');
        let (Some(TOKEN_PREFIX), Some(id), Some(secret)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(refused());
        };
        if !is_label(id) {
            return Err(refused());
        }
        let Some((rec, token_rev)) = self
            .get_record::<TokenRecord>(Table::JoinTokens, id)
            .await?
        else {
            return Err(refused());
        };
        if !same(&sha256_hex(secret), &rec.secret_sha256)
            || rec.revoked
            || rec.used
            || now >= rec.expires_at
        {
            return Err(refused());
        }
        check_join(&req)?;
        let agent_id = format!("agent-{}", random_hex(6));
        let credential = random_hex(32);
        let doc = AgentDocument {
            agent_id: agent_id.clone(),
            address: req.address,
            zone: req.zone,
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
            architecture: req.architecture,
            runtimes: req.runtimes,
            hostname: req.hostname,
            joined_at: rfc3339(now),
            token_id: rec.id.clone(),
            tls: req.tls,
        };
        let sealed = crate::secrets::seal_secret(&credential_aad(&agent_id), &credential)
            .map_err(|e| LambdaError::service(e.to_string()))?;
        let stored = AgentRecord {
            doc,
            credential_sha256: sha256_hex(&credential),
            credential_sealed: Some(sealed),
        };
        // With a check of the token as read: a revocation racing this join wins, and of two
        // joins racing on a single-use token one wins.
        let token_op = if rec.single_use {
            let used = TokenRecord {
                used: true,
                ..rec.clone()
            };
            Op::put(
                Table::JoinTokens,
                &rec.id,
                &used,
                Expect::Revision(token_rev),
            )
        } else {
            Op::check(Table::JoinTokens, &rec.id, token_rev)
        };
        let joined = self
            .commit(vec![
                Op::put(Table::Agents, &agent_id, &stored, Expect::Absent),
                token_op,
            ])
            .await;
        match joined {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::ResourceConflict => return Err(refused()),
            Err(e) => return Err(e),
        }
        Ok(JoinResponse {
            agent_id,
            credential,
        })
    }

    pub async fn list_agents(&self) -> Result<AgentList> {
        let agents: Vec<(AgentRecord, String, i64)> =
            self.list_records(Table::Agents, "", None, 100_000).await?;
        Ok(AgentList {
            agents: agents.into_iter().map(|(a, _, _)| a.doc).collect(),
        })
    }

    /// Removes a joined agent: its credential opens nothing from now on (a leaked one, a host
    /// retired). To come back it joins again with a new token.
    pub async fn remove_agent(&self, agent_id: &str) -> Result<AgentDocument> {
        let Some((rec, rev)) = self
            .get_record::<AgentRecord>(Table::Agents, agent_id)
            .await?
        else {
            return Err(LambdaError::not_found(format!(
                "Agent not found: {agent_id}"
            )));
        };
        let mut ops = vec![Op::delete(Table::Agents, agent_id, rev)];
        if let Some((_, claim_rev)) = self
            .get_record::<AgentClaim>(Table::Claims, agent_id)
            .await?
        {
            ops.push(Op::delete(Table::Claims, agent_id, claim_rev));
        }
        self.commit(ops).await?;
        Ok(rec.doc)
    }

    /// The joined agents with the credentials servers present to them. An agent whose credential
    /// cannot be opened with this server's `env.key` (another cluster's key, or joined before
    /// credentials were sealed) is left out, with a warning: it must join again.
    pub async fn joined_agents(&self) -> Result<Vec<JoinedAgent>> {
        let agents: Vec<(AgentRecord, String, i64)> =
            self.list_records(Table::Agents, "", None, 100_000).await?;
        Ok(agents
            .into_iter()
            .filter_map(|(a, _, _)| {
                let opened = a.credential_sealed.as_deref().map(|sealed| {
                    crate::secrets::open_secret(&credential_aad(&a.doc.agent_id), sealed)
                });
                match opened {
                    Some(Ok(credential)) => Some(JoinedAgent {
                        doc: a.doc,
                        credential,
                    }),
                    Some(Err(e)) => {
                        tracing::warn!(agent = %a.doc.agent_id, error = %e, "cannot open a joined agent's credential: is env.key the cluster's? The agent is not used");
                        None
                    }
                    None => {
                        tracing::warn!(agent = %a.doc.agent_id, "a joined agent without a sealed credential is not used: remove it and join it again");
                        None
                    }
                }
            })
            .collect())
    }

    /// The claims of `static` providers on joined agents.
    pub async fn agent_claims(&self) -> Result<Vec<AgentClaim>> {
        let claims: Vec<(AgentClaim, String, i64)> =
            self.list_records(Table::Claims, "", None, 100_000).await?;
        Ok(claims.into_iter().map(|(c, _, _)| c).collect())
    }

    /// Claims an agent; `Ok(false)` when it is claimed already (or was removed meanwhile).
    pub async fn claim_agent(&self, claim: &AgentClaim) -> Result<bool> {
        let Some((_, agent_rev)) = self
            .get_record::<AgentRecord>(Table::Agents, &claim.agent_id)
            .await?
        else {
            return Ok(false);
        };
        let done = self
            .commit_unless_raced(vec![
                Op::put(Table::Claims, &claim.agent_id, claim, Expect::Absent),
                Op::check(Table::Agents, &claim.agent_id, agent_rev),
            ])
            .await?;
        Ok(done.is_some())
    }

    /// Gives an agent back (its instance was terminated); idempotent.
    pub async fn release_agent(&self, agent_id: &str, instance_id: &str) -> Result<()> {
        let Some((claim, rev)) = self
            .get_record::<AgentClaim>(Table::Claims, agent_id)
            .await?
        else {
            return Ok(());
        };
        if claim.instance_id != instance_id {
            return Ok(());
        }
        self.commit_unless_raced(vec![Op::delete(Table::Claims, agent_id, rev)])
            .await?;
        Ok(())
    }

    /// Whether `credential` is agent `agent_id`'s (for the agent protocol).
    pub async fn agent_credential_valid(&self, agent_id: &str, credential: &str) -> Result<bool> {
        let rec = self
            .get_record::<AgentRecord>(Table::Agents, agent_id)
            .await?;
        Ok(rec.is_some_and(|(a, _)| same(&sha256_hex(credential), &a.credential_sha256)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> JoinRequest {
        JoinRequest {
            address: "10.0.0.7:9700".into(),
            zone: "zone-a".into(),
            vcpus: 4,
            memory_mib: 8192,
            architecture: "x86_64".into(),
            runtimes: vec!["python3.13".into()],
            hostname: "host-7".into(),
            tls: false,
        }
    }

    #[tokio::test]
    async fn a_single_use_token_joins_once_even_when_two_joins_race() {
        let (_dir, cp) = crate::tests::cp().await;
        let t0 = 1_800_000_000;
        let created = cp
            .create_join_token(
                CreateJoinToken {
                    ttl_seconds: Some(600),
                    description: Some("ec2 launch i-1".into()),
                    single_use: true,
                },
                t0,
            )
            .await
            .unwrap();
        assert!(created.single_use && !created.used);
        let token = created.token.unwrap();
        let (a, b) = tokio::join!(
            cp.join_agent(&token, offer(), t0 + 1),
            cp.join_agent(&token, offer(), t0 + 1)
        );
        let ok: Vec<_> = [a, b].into_iter().filter_map(Result::ok).collect();
        assert_eq!(ok.len(), 1, "exactly one of two racing joins wins");
        let agents = cp.list_agents().await.unwrap().agents;
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].token_id, created.token_id);
        // Used up: a later join is refused like any invalid token.
        let err = cp.join_agent(&token, offer(), t0 + 2).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::AccessDenied);
        let listed = cp.list_join_tokens().await.unwrap().join_tokens;
        assert!(listed[0].single_use && listed[0].used);
    }

    #[tokio::test]
    async fn a_token_joins_until_it_expires_or_is_revoked() {
        let (_dir, cp) = crate::tests::cp().await;
        let t0 = 1_800_000_000;
        let created = cp
            .create_join_token(
                CreateJoinToken {
                    ttl_seconds: Some(60),
                    description: Some("rack 3".into()),
                    single_use: false,
                },
                t0,
            )
            .await
            .unwrap();
        let token = created.token.clone().unwrap();
        assert!(token.starts_with("fj1."), "{token}");
        // Listed without the secret.
        let listed = cp.list_join_tokens().await.unwrap();
        assert_eq!(listed.join_tokens.len(), 1);
        assert_eq!(listed.join_tokens[0].token, None);
        let secret = token.rsplit('.').next().unwrap();
        assert!(!serde_json::to_string(&listed).unwrap().contains(secret));

        let joined = cp.join_agent(&token, offer(), t0 + 59).await.unwrap();
        assert!(
            cp.agent_credential_valid(&joined.agent_id, &joined.credential)
                .await
                .unwrap()
        );
        assert!(
            !cp.agent_credential_valid(&joined.agent_id, "nope")
                .await
                .unwrap()
        );
        let agents = cp.list_agents().await.unwrap().agents;
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].zone, "zone-a");
        assert!(
            !serde_json::to_string(&agents)
                .unwrap()
                .contains(&joined.credential)
        );

        // Expired at t0 + 60.
        let err = cp.join_agent(&token, offer(), t0 + 60).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::AccessDenied);
        // A wrong secret, a malformed token, an unknown id.
        let wrong = format!("{}0", &token[..token.len() - 1]);
        let wrong = if wrong == token {
            format!("{}1", &token[..token.len() - 1])
        } else {
            wrong
        };
        for bad in [
            wrong.as_str(),
            "fj1",
            "garbage",
            "fj1.zz.zz",
            "fj1.0123456789abcdef.00",
        ] {
            let err = cp.join_agent(bad, offer(), t0).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::AccessDenied, "{bad}");
        }
        // Revoked.
        cp.revoke_join_token(&created.token_id).await.unwrap();
        let err = cp.join_agent(&token, offer(), t0 + 1).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::AccessDenied);
        assert!(
            err.message.contains("unknown, expired or revoked"),
            "{}",
            err.message
        );
        assert_eq!(cp.list_agents().await.unwrap().agents.len(), 1);
    }

    #[tokio::test]
    async fn bad_offers_and_lifetimes_are_refused_with_the_reason() {
        let (_dir, cp) = crate::tests::cp().await;
        for ttl in [0, MAX_TOKEN_TTL_SECS + 1] {
            let err = cp
                .create_join_token(
                    CreateJoinToken {
                        ttl_seconds: Some(ttl),
                        description: None,
                        single_use: false,
                    },
                    0,
                )
                .await
                .unwrap_err();
            assert!(err.message.contains("TtlSeconds"), "{}", err.message);
        }
        let token = cp
            .create_join_token(CreateJoinToken::default(), 0)
            .await
            .unwrap()
            .token
            .unwrap();
        type Spoil = fn(&mut JoinRequest);
        let cases: [(Spoil, &str); 5] = [
            (|r| r.address = "not-an-address".into(), "Address"),
            (|r| r.zone = "Zone A".into(), "Zone"),
            (|r| r.vcpus = 0, "Vcpus"),
            (|r| r.architecture = "mips".into(), "Architecture"),
            (|r| r.runtimes = vec![String::new()], "Runtimes"),
        ];
        for (spoil, field) in cases {
            let mut req = offer();
            spoil(&mut req);
            let err = cp.join_agent(&token, req, 1).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidParameterValue, "{field}");
            assert!(err.message.contains(field), "{}", err.message);
        }
        assert!(cp.list_agents().await.unwrap().agents.is_empty());
    }

    #[tokio::test]
    async fn servers_get_the_credential_and_claims_are_exclusive() {
        let (_dir, cp) = crate::tests::cp().await;
        let token = cp
            .create_join_token(CreateJoinToken::default(), 0)
            .await
            .unwrap()
            .token
            .unwrap();
        let joined = cp.join_agent(&token, offer(), 1).await.unwrap();
        // Stored sealed, opened for servers.
        let raw = cp
            .store
            .get(Table::Agents, &joined.agent_id)
            .await
            .unwrap()
            .unwrap();
        assert!(!String::from_utf8_lossy(&raw.value).contains(&joined.credential));
        let agents = cp.joined_agents().await.unwrap();
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].credential, joined.credential);
        assert!(!format!("{agents:?}").contains(&joined.credential));

        let claim = |instance: &str| AgentClaim {
            agent_id: joined.agent_id.clone(),
            instance_id: instance.into(),
            capacity_provider: "cp".into(),
            zone: "zone-a".into(),
            instance_type: "c7i.large".into(),
            claimed_at: String::new(),
        };
        assert!(cp.claim_agent(&claim("i-1")).await.unwrap());
        assert!(
            !cp.claim_agent(&claim("i-2")).await.unwrap(),
            "claimed already"
        );
        // Another instance's release does not free it.
        cp.release_agent(&joined.agent_id, "i-2").await.unwrap();
        assert_eq!(cp.agent_claims().await.unwrap().len(), 1);
        cp.release_agent(&joined.agent_id, "i-1").await.unwrap();
        assert!(cp.agent_claims().await.unwrap().is_empty());
        // A removed agent takes its claim with it, and cannot be claimed.
        assert!(cp.claim_agent(&claim("i-3")).await.unwrap());
        cp.remove_agent(&joined.agent_id).await.unwrap();
        assert!(cp.agent_claims().await.unwrap().is_empty());
        assert!(!cp.claim_agent(&claim("i-4")).await.unwrap());
    }

    #[tokio::test]
    async fn an_agent_that_serves_tls_is_recorded_so() {
        let (_dir, cp) = crate::tests::cp().await;
        let token = cp
            .create_join_token(CreateJoinToken::default(), 0)
            .await
            .unwrap()
            .token
            .unwrap();
        let plain = cp.join_agent(&token, offer(), 1).await.unwrap();
        let tls = cp
            .join_agent(
                &token,
                JoinRequest {
                    tls: true,
                    ..offer()
                },
                1,
            )
            .await
            .unwrap();
        let agents = cp.joined_agents().await.unwrap();
        let tls_of = |id: &str| {
            agents
                .iter()
                .find(|a| a.doc.agent_id == id)
                .unwrap()
                .doc
                .tls
        };
        assert!(!tls_of(&plain.agent_id));
        assert!(tls_of(&tls.agent_id));
        // The offer of a plain agent is the document it always was; an older record reads as
        // plain.
        assert!(!serde_json::to_string(&offer()).unwrap().contains("Tls"));
        let mut doc = serde_json::to_value(&agents[0].doc).unwrap();
        doc.as_object_mut().unwrap().remove("Tls");
        assert!(!serde_json::from_value::<AgentDocument>(doc).unwrap().tls);
    }
}
