//! The server's end of the invoke stream against a scripted peer on loopback (a fake agent: this
//! tests the client alone; the real agent is tested in fleetfn-agent's `invoke_stream`): a
//! stream that closes with an invoke in flight fails it as `NoAnswer` and the next invoke opens a
//! new one; a malformed reply closes the stream; an invoke past its deadline is cancelled on
//! the wire; an agent without the stream (404) gets invokes as HTTP requests, asked once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fleetfn_proto::stream::{self, ToAgent};
use fleetfn_proto::{AgentClient, ClientError, InvokeReply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const GUARD: Duration = Duration::from_secs(20);

/// Reads an HTTP request head from `s`.
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "peer closed mid-head");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

async fn accept_upgrade(l: &TcpListener) -> TcpStream {
    let (mut s, _) = l.accept().await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("GET /v1/invoke-stream HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer tok"),
        "{head}"
    );
    s.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: fleetfn-invoke/1\r\n\r\n",
    )
    .await
    .unwrap();
    s
}

/// The next frame the client sent.
async fn next_frame(s: &mut TcpStream, buf: &mut BytesMut) -> ToAgent {
    loop {
        if let Some(f) = stream::decode_to_agent(buf).unwrap() {
            return f;
        }
        assert!(
            s.read_buf(buf).await.unwrap() > 0,
            "client closed the stream"
        );
    }
}

async fn reply(s: &mut TcpStream, id: u64, r: &InvokeReply) {
    let mut b = BytesMut::new();
    let payload = stream::encode_reply(&mut b, id, r);
    b.extend_from_slice(&payload);
    s.write_all(&b).await.unwrap();
}

fn invoke(
    c: &AgentClient,
    deadline: Duration,
    rid: &'static str,
) -> tokio::task::JoinHandle<Result<InvokeReply, ClientError>> {
    let c = c.clone();
    tokio::spawn(async move {
        c.invoke(
            deadline,
            "env-1",
            rid,
            Bytes::from_static(b"{}"),
            None,
            None,
        )
        .await
    })
}

#[tokio::test]
async fn a_stream_that_closes_fails_its_invoke_and_the_next_one_reconnects() {
    tokio::time::timeout(GUARD, async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = AgentClient::new(l.local_addr().unwrap(), "tok");
        let first = invoke(&c, Duration::from_secs(10), "r1");
        let mut s = accept_upgrade(&l).await;
        let mut buf = BytesMut::new();
        match next_frame(&mut s, &mut buf).await {
            ToAgent::Invoke(_, f) => {
                assert_eq!((f.env_id.as_str(), f.request_id.as_str()), ("env-1", "r1"));
            }
            other => panic!("{other:?}"),
        }
        drop(s);
        assert!(
            matches!(first.await.unwrap(), Err(ClientError::NoAnswer { .. })),
            "an invoke that was sent and got no reply may have run: NoAnswer"
        );
        // A new connection for the next one.
        let second = invoke(&c, Duration::from_secs(10), "r2");
        let mut s = accept_upgrade(&l).await;
        let mut buf = BytesMut::new();
        let ToAgent::Invoke(id, f) = next_frame(&mut s, &mut buf).await else {
            panic!("expected an invoke")
        };
        assert_eq!(f.request_id, "r2");
        let done = InvokeReply::Done {
            payload: Bytes::from_static(b"\"ok\""),
            function_error: None,
        };
        reply(&mut s, id, &done).await;
        assert_eq!(second.await.unwrap().unwrap(), done);

        // A malformed reply (unknown kind) closes the stream: the invoke waiting fails.
        let third = invoke(&c, Duration::from_secs(10), "r3");
        let ToAgent::Invoke(id, _) = next_frame(&mut s, &mut buf).await else {
            panic!("expected an invoke")
        };
        s.write_all(&[0, 0, 0, 9, 99]).await.unwrap();
        s.write_all(&id.to_be_bytes()).await.unwrap();
        assert!(matches!(
            third.await.unwrap(),
            Err(ClientError::NoAnswer { .. })
        ));
        let mut rest = Vec::new();
        assert_eq!(
            s.read_to_end(&mut rest).await.unwrap(),
            0,
            "stream not closed"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_invoke_past_its_deadline_is_cancelled_on_the_wire() {
    tokio::time::timeout(GUARD, async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = AgentClient::new(l.local_addr().unwrap(), "tok");
        let late = invoke(&c, Duration::from_millis(300), "late");
        let mut s = accept_upgrade(&l).await;
        let mut buf = BytesMut::new();
        let ToAgent::Invoke(id, _) = next_frame(&mut s, &mut buf).await else {
            panic!("expected an invoke")
        };
        // No reply: the client gives up and says so on the wire.
        assert!(matches!(
            late.await.unwrap(),
            Err(ClientError::NoAnswer { .. })
        ));
        assert_eq!(next_frame(&mut s, &mut buf).await, ToAgent::Cancel(id));
        // A reply that comes after all is dropped, and the stream goes on.
        reply(&mut s, id, &InvokeReply::Gone).await;
        let next = invoke(&c, Duration::from_secs(10), "next");
        let ToAgent::Invoke(id2, _) = next_frame(&mut s, &mut buf).await else {
            panic!("expected an invoke")
        };
        assert_ne!(id, id2);
        reply(&mut s, id2, &InvokeReply::Gone).await;
        assert_eq!(next.await.unwrap().unwrap(), InvokeReply::Gone);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_agent_without_the_stream_gets_http_invokes_and_is_asked_once() {
    tokio::time::timeout(GUARD, async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = AgentClient::new(l.local_addr().unwrap(), "tok");
        let upgrades = Arc::new(AtomicUsize::new(0));
        let seen = upgrades.clone();
        // An older agent: 404 for the upgrade, the invoke route over keep-alive HTTP.
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    loop {
                        let mut head = Vec::new();
                        let mut b = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            if s.read(&mut b).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(b[0]);
                        }
                        let head = String::from_utf8(head).unwrap();
                        if head.starts_with("GET /v1/invoke-stream") {
                            seen.fetch_add(1, Ordering::SeqCst);
                            s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                                .await
                                .unwrap();
                            continue;
                        }
                        assert!(
                            head.starts_with("POST /v1/environments/env-1/invoke"),
                            "{head}"
                        );
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(str::to_owned)
                            })
                            .unwrap()
                            .trim()
                            .parse()
                            .unwrap();
                        let mut body = vec![0u8; len];
                        s.read_exact(&mut body).await.unwrap();
                        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n\"ok\"")
                            .await
                            .unwrap();
                    }
                });
            }
        });
        for rid in ["a", "b", "c"] {
            let r = invoke(&c, Duration::from_secs(10), rid).await.unwrap();
            assert_eq!(
                r.unwrap(),
                InvokeReply::Done {
                    payload: Bytes::from_static(b"\"ok\""),
                    function_error: None
                }
            );
        }
        assert_eq!(upgrades.load(Ordering::SeqCst), 1);
    })
    .await
    .unwrap();
}
