//! [`AwsServices`] against a real AWS-compatible server (moto), run by hand:
//!
//! ```text
//! moto_server -H 127.0.0.1 -p 5123 &
//! # with boto3 (region us-east-1, any keys): SQS queue `fleetfn-dlq`, SNS topic `fleetfn-dest`,
//! # event bus `fleetfn-bus`
//! FLEETFN_MOTO_ENDPOINT=http://127.0.0.1:5123 cargo test -p fleetfn-roles --test moto -- --ignored
//! ```
//!
//! then read what arrived with boto3.

use std::sync::Arc;

use fleetfn_roles::{AwsServices, ServiceError, ServicesConfig, SourceChain, SourceCredentials};

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
