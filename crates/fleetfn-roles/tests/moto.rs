//! [`AwsServices`] against a real AWS-compatible server (moto), run by hand:
//!
//! ```text
//! moto_server -H 127.0.0.1 -p 5123 &
//! # with boto3 (region us-east-1, any keys): SQS queue `fleetfn-dlq`, SNS topic `fleetfn-dest`,
//! # event bus `fleetfn-bus`; for the consumer, SQS queues `fleetfn-src` (VisibilityTimeout 45)
//! # and `fleetfn-src.fifo` (FifoQueue)
//! FLEETFN_MOTO_ENDPOINT=http://127.0.0.1:5123 cargo test -p fleetfn-roles --test moto -- --ignored
//! ```
//!
//! then read what arrived with boto3.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetfn_roles::{
    AwsServices, ServiceError, ServicesConfig, SourceChain, SourceCredentials, SqsMessage,
    SqsQueueAttributes,
};

const ACCOUNT: &str = "123456789012";

fn services() -> AwsServices {
    let endpoint = std::env::var("FLEETFN_MOTO_ENDPOINT").expect("FLEETFN_MOTO_ENDPOINT");
    let source = SourceChain::Static {
        credentials: SourceCredentials {
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            session_token: None,
            expires: None,
        },
        origin: "test".into(),
    };
    let cfg = ServicesConfig {
        endpoint: Some(endpoint),
    };
    AwsServices::new(cfg, Arc::new(source)).expect("client")
}

fn refused(r: Result<(), ServiceError>) -> String {
    match r {
        Err(e @ ServiceError::Refused { .. }) => {
            eprintln!("refused as expected: {e}");
            assert!(!e.is_transient(), "{e}");
            e.code().to_owned()
        }
        other => panic!("expected a refusal: {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs a moto server (FLEETFN_MOTO_ENDPOINT) with the queue, topic and bus"]
async fn delivers_to_moto() {
    let s = services();
    let queue = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:fleetfn-dlq");
    let topic = format!("arn:aws:sns:us-east-1:{ACCOUNT}:fleetfn-dest");
    let bus = format!("arn:aws:events:us-east-1:{ACCOUNT}:event-bus/fleetfn-bus");
    let body = r#"{"requestContext":{"condition":"RetriesExhausted"},"payload":"a & b = ü"}"#;
    let attrs = [("ErrorCode", "200"), ("ErrorMessage", "Unhandled: ü & =")];
    s.sqs_send_message(&queue, body, &attrs).await.expect("SQS");
    s.sns_publish(&topic, body, &attrs).await.expect("SNS");
    let function = format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:f:$LATEST");
    s.put_event(
        &bus,
        "lambda",
        "Lambda Function Invocation Result - Failure",
        body,
        &[&function],
    )
    .await
    .expect("EventBridge");

    let missing = |kind: &str, name: &str| format!("arn:aws:{kind}:us-east-1:{ACCOUNT}:{name}");
    let code = refused(s.sqs_send_message(&missing("sqs", "nope"), body, &[]).await);
    eprintln!("SQS missing queue: {code}");
    let code = refused(s.sns_publish(&missing("sns", "nope"), body, &[]).await);
    eprintln!("SNS missing topic: {code}");
    let bus = missing("events", "event-bus/nope");
    let code = refused(s.put_event(&bus, "lambda", "t", body, &[]).await);
    eprintln!("EventBridge missing bus: {code}");
}

/// Receives until `want` messages arrived (moto may hand them out over several receives).
async fn receive_all(s: &AwsServices, queue: &str, want: usize) -> Vec<SqsMessage> {
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(
            s.sqs_receive(queue, 10, 1, Some(30))
                .await
                .expect("receive"),
        );
        if got.len() >= want {
            break;
        }
    }
    assert_eq!(got.len(), want, "{got:#?}");
    got
}

#[tokio::test]
#[ignore = "needs a moto server (FLEETFN_MOTO_ENDPOINT) with the queues fleetfn-src and fleetfn-src.fifo"]
async fn consumes_from_moto() {
    let s = services();
    let queue = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:fleetfn-src");
    let fifo = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:fleetfn-src.fifo");
    let missing = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:nope");

    let attrs = s.sqs_queue_attributes(&queue).await.expect("attributes");
    assert_eq!(
        attrs,
        SqsQueueAttributes {
            visibility_timeout_secs: 45,
            fifo: false
        }
    );
    let attrs = s
        .sqs_queue_attributes(&fifo)
        .await
        .expect("FIFO attributes");
    eprintln!("FIFO queue: {attrs:?}");
    assert!(attrs.fifo);
    for e in [
        s.sqs_queue_attributes(&missing).await.map(drop),
        s.sqs_receive(&missing, 10, 0, None).await.map(drop),
        s.sqs_delete_batch(&missing, &[("a", "h")]).await.map(drop),
    ] {
        let e = e.expect_err("a missing queue");
        eprintln!("missing queue: {e}");
        assert!(e.is_not_found(), "{e}");
    }

    // Whatever an earlier run left.
    loop {
        let left = s.sqs_receive(&queue, 10, 0, None).await.expect("drain");
        if left.is_empty() {
            break;
        }
        let entries: Vec<(&str, &str)> = left
            .iter()
            .map(|m| (m.message_id.as_str(), m.receipt_handle.as_str()))
            .collect();
        s.sqs_delete_batch(&queue, &entries).await.expect("drain");
    }

    let bodies = ["one", r#"{"two":"a & b = ü"}"#, "three\nlines"];
    for (n, body) in bodies.iter().enumerate() {
        let attempt = n.to_string();
        let attrs = [("Attempt", attempt.as_str()), ("Kind", "test ü")];
        s.sqs_send_message(&queue, body, &attrs)
            .await
            .expect("send");
    }

    let got = receive_all(&s, &queue, 3).await;
    eprintln!("received: {:#?}", got[0]);
    let received: BTreeSet<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(received, bodies.into_iter().collect());
    for m in &got {
        assert_eq!(m.attributes["ApproximateReceiveCount"], "1", "{m:?}");
        for name in [
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
        ] {
            assert!(m.attributes.contains_key(name), "{name}: {m:?}");
        }
        assert!(!m.md5_of_body.is_empty() && !m.receipt_handle.is_empty());
        let kind = &m.message_attributes["Kind"];
        assert_eq!(
            (kind.data_type.as_str(), kind.string_value.as_deref()),
            ("String", Some("test ü"))
        );
        let n = bodies
            .iter()
            .position(|b| *b == m.body)
            .unwrap()
            .to_string();
        assert_eq!(
            m.message_attributes["Attempt"].string_value.as_deref(),
            Some(n.as_str())
        );
    }
    // All in flight for 30 s: nothing more now.
    assert!(
        s.sqs_receive(&queue, 10, 0, None)
            .await
            .expect("receive")
            .is_empty()
    );

    // Visible again now, but for a bogus handle.
    let mut entries: Vec<(&str, &str)> = got
        .iter()
        .map(|m| (m.message_id.as_str(), m.receipt_handle.as_str()))
        .collect();
    entries.push(("bogus", "not-a-receipt-handle"));
    let failed = s
        .sqs_change_visibility_batch(&queue, &entries, 0)
        .await
        .expect("change visibility");
    eprintln!("change visibility failed: {failed:?}");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "bogus");

    let again = receive_all(&s, &queue, 3).await;
    for m in &again {
        assert_eq!(m.attributes["ApproximateReceiveCount"], "2", "{m:?}");
    }
    let mut entries: Vec<(&str, &str)> = again
        .iter()
        .map(|m| (m.message_id.as_str(), m.receipt_handle.as_str()))
        .collect();
    entries.push(("bogus", "not-a-receipt-handle"));
    let failed = s.sqs_delete_batch(&queue, &entries).await.expect("delete");
    eprintln!("delete failed: {failed:?}");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "bogus");

    // Gone, also once they would be visible again; the long poll waits.
    let start = Instant::now();
    let none = s
        .sqs_receive(&queue, 10, 2, Some(0))
        .await
        .expect("receive");
    let waited = start.elapsed();
    eprintln!("empty long poll took {waited:?}");
    assert!(none.is_empty(), "{none:?}");
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
}
