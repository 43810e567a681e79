//! `fleetfn token create|list|revoke`: join tokens for agents on other hosts
//! (`/fleetfn/v1/join-tokens`, signed with the admin key).

use anyhow::Context;
use bytes::Bytes;
use fleetfn_server::cluster::{CreateJoinToken, JoinTokenDocument, JoinTokenList};

use crate::client::{self, ConnectArgs};

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token an agent joins with (`fleetfn agent --join URL --token-file F`); it is
    /// printed once.
    Create {
        /// How long it can be used (e.g. 30m, 24h, 7d).
        #[arg(long, default_value = "24h", value_parser = fleetfn_logs::parse_duration)]
        ttl: std::time::Duration,
        /// A note for people (e.g. which hosts it is for).
        #[arg(long)]
        description: Option<String>,
        /// One join only: the first agent that joins with it uses it up.
        #[arg(long)]
        single_use: bool,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// The tokens, without their secrets.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Refuse joins with a token from now on (agents that joined with it stay).
    Revoke { token_id: String },
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let client = client::connect(&args.connect)?;
    let fail = |e| client::command_error(&client, e);
    match args.command {
        TokenCommand::Create {
            ttl,
            description,
            single_use,
            json,
        } => {
            let req = CreateJoinToken {
                ttl_seconds: Some(ttl.as_secs().max(1)),
                description,
                single_use,
            };
            let body = client
                .send(
                    http::Method::POST,
                    "/fleetfn/v1/join-tokens",
                    &[],
                    Bytes::from(serde_json::to_vec(&req)?),
                )
                .await
                .map_err(fail)?;
            let doc: JoinTokenDocument =
                serde_json::from_slice(&body).context("the server's answer is not a join token")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!("{}", doc.token.as_deref().unwrap_or_default());
                eprintln!(
                    "Join token {} (expires {}). It is shown only now: put it in a file (mode 0600) on the agent's host and run\n  fleetfn agent --join {} --token-file FILE …",
                    doc.token_id, doc.expires_at, args.connect.endpoint_url
                );
            }
        }
        TokenCommand::List { json } => {
            let body = client
                .get("/fleetfn/v1/join-tokens", &[])
                .await
                .map_err(fail)?;
            let list: JoinTokenList =
                serde_json::from_slice(&body).context("the server's answer is not a token list")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<18} {:<27} {:<8} DESCRIPTION",
                    "TOKEN ID", "EXPIRES", "STATE"
                );
                let now = jiff::Timestamp::now();
                for t in &list.join_tokens {
                    let expired = t
                        .expires_at
                        .parse::<jiff::Timestamp>()
                        .is_ok_and(|e| e <= now);
                    let state = if t.revoked {
                        "revoked"
                    } else if expired {
                        "expired"
                    } else {
                        "valid"
                    };
                    println!(
                        "{:<18} {:<27} {:<8} {}",
                        t.token_id, t.expires_at, state, t.description
                    );
                }
            }
        }
        TokenCommand::Revoke { token_id } => {
            let path = format!(
                "/fleetfn/v1/join-tokens/{}",
                client::encode_component(&token_id)
            );
            client
                .send(http::Method::DELETE, &path, &[], Bytes::new())
                .await
                .map_err(fail)?;
            println!("revoked {token_id}");
        }
    }
    Ok(())
}
