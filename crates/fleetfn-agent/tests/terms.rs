//! The agent API over its Unix socket, with the real `AgentClient`, and the leader terms it
//! keeps: a leader's report polls teach it a new term (so a leader that never starts or stops
//! anything there still fences its predecessor), starts and stops from an older term are
//! refused, reads never are, and the highest term survives a restart through the term file.

use std::time::Duration;

use fleetfn_agent::{Agent, AgentConfig, InstanceShape, RuntimeProvider, RuntimeProviderConfig};
use fleetfn_proto::{AgentClient, ClientError};

const TOKEN: &str = "term-token";

fn agent(dir: &std::path::Path) -> Agent {
    Agent::new(
        AgentConfig {
            instance_id: "i-terms".into(),
            zone: "z1".into(),
            token: TOKEN.into(),
            artifacts_dir: dir.join("artifacts"),
            logs_dir: dir.join("logs"),
            log_limits: Default::default(),
            isolation: "none".into(),
            instance: InstanceShape {
                instance_type: "local".into(),
                vcpus: 2,
                memory_mib: 4096,
                cpu_scale: 1.0,
            },
            instance_slice: None,
        },
        RuntimeProvider::detect(RuntimeProviderConfig::new(dir.join("rt"), dir.join("envs"))),
    )
    .unwrap()
    .with_term_file(dir.join("leader-term"))
}

/// Serves `agent` on a fresh Unix socket in `dir`; returns a client without a term.
fn serve(agent: &Agent, dir: &std::path::Path, name: &str) -> AgentClient {
    let path = dir.join(name);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let router = agent.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = AgentClient::new_unix("127.0.0.1:9".parse().unwrap(), &path, TOKEN);
    assert!(client.is_unix());
    client
}

fn refused(r: Result<(), ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Status { status, body, .. }) => (status, body),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn report_polls_teach_the_term_and_it_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = agent(dir.path());
    let plain = serve(&first, dir.path(), "a.sock");

    // A poll without a term (a follower) reads; so does the leader of term 5, which the agent
    // now follows although it started or stopped nothing.
    assert!(
        plain
            .report(None, Duration::ZERO)
            .await
            .unwrap()
            .environments
            .is_empty()
    );
    plain
        .clone()
        .with_term(5)
        .report(None, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("leader-term"))
            .unwrap()
            .trim(),
        "5"
    );
    let (status, body) = refused(plain.clone().with_term(4).delete_environment("e1").await);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("follows term 5"), "{body}");
    // An older leader may still read (it learns nothing it could misuse), and is not recorded.
    plain
        .clone()
        .with_term(3)
        .report(None, Duration::ZERO)
        .await
        .unwrap();
    // The current leader's stop of an unknown environment is fine.
    plain
        .clone()
        .with_term(5)
        .delete_environment("e1")
        .await
        .unwrap();

    // A restarted agent (same term file) still refuses term 4.
    first.close();
    let second = agent(dir.path());
    let again = serve(&second, dir.path(), "b.sock");
    let (status, body) = refused(again.clone().with_term(4).delete_environment("e1").await);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("follows term 5"), "{body}");
    // And a wrong token is refused before anything else.
    let stranger = AgentClient::new_unix(
        "127.0.0.1:9".parse().unwrap(),
        &dir.path().join("b.sock"),
        "nope",
    );
    let (status, _) = refused(stranger.with_term(9).delete_environment("e1").await);
    assert_eq!(status, 401);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("leader-term"))
            .unwrap()
            .trim(),
        "5"
    );
}
