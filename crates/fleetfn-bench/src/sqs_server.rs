//! `fleetfn-bench sqs-server`: an in-memory stand-in for SQS (standard queues) speaking the JSON
//! 1.0 protocol, for measuring an SQS event source mapping where the queue is not the limit.
//!
//! moto's server (what the Python suites use) does O(queued messages) work in every
//! `SendMessage`, `ReceiveMessage` and attribute read, so with thousands of messages queued it
//! serves tens of messages per second and a mapping benchmark against it measures moto. This
//! server keeps each queue as a deque of visible messages and a map of in-flight ones, so every
//! call costs O(its batch). It is not SQS: no signature check (like moto), no MD5s, no FIFO, no
//! message attributes, no dead-letter redrive, no retention; visibility timeouts, long polls
//! and the `ApproximateNumberOf*` counts are kept. Only the calls fleetfn's poller and the
//! bench make: `CreateQueue`, `DeleteQueue`, `ListQueues`, `GetQueueAttributes`,
//! `SendMessageBatch`, `ReceiveMessage`, `DeleteMessageBatch`, `ChangeMessageVisibilityBatch`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::Notify;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

struct Msg {
    id: String,
    body: String,
    sent_ms: u128,
    receives: u32,
    first_receive_ms: u128,
}

struct Queue {
    visibility: Duration,
    visible: VecDeque<Msg>,
    /// Receipt handle → (message, visible again at).
    in_flight: HashMap<String, (Msg, Instant)>,
    /// The earliest visible-again time of `in_flight` (a scan only once it has passed).
    next_expiry: Option<Instant>,
    notify: Arc<Notify>,
}

impl Queue {
    fn requeue_expired(&mut self, now: Instant) {
        if self.next_expiry.is_none_or(|t| t > now) {
            return;
        }
        let expired: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(r, _)| r.clone())
            .collect();
        for r in expired {
            if let Some((m, _)) = self.in_flight.remove(&r) {
                self.visible.push_back(m);
            }
        }
        self.next_expiry = self.in_flight.values().map(|(_, at)| *at).min();
    }
}

#[derive(Default)]
struct State {
    queues: HashMap<String, Queue>,
    seq: u64,
}

type Shared = Arc<Mutex<State>>;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The queue name of a `QueueUrl` (its last path segment).
fn queue_name(doc: &Value) -> Option<String> {
    doc["QueueUrl"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .map(str::to_owned)
}

fn error(code: &str, message: &str) -> (u16, Value) {
    (
        400,
        json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": message}),
    )
}

fn no_queue() -> (u16, Value) {
    error(
        "QueueDoesNotExist",
        "The specified queue does not exist for this wsdl version.",
    )
}

/// Runs the server on `listen` (loopback only) until killed.
pub async fn serve(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(listen.ip().is_loopback(), "loopback only");
    let l = tokio::net::TcpListener::bind(listen).await?;
    let state: Shared = Arc::default();
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    let target = req
                        .headers()
                        .get("x-amz-target")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("127.0.0.1")
                        .to_owned();
                    let b = req.into_body().collect().await?.to_bytes();
                    let doc: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                    let op = target.strip_prefix("AmazonSQS.").unwrap_or(&target);
                    let (status, v) = handle(&state, op, &doc, &host).await;
                    let resp = hyper::Response::builder()
                        .status(status)
                        .header("content-type", "application/x-amz-json-1.0")
                        .body(Full::new(Bytes::from(v.to_string())))
                        .expect("response");
                    Ok::<_, hyper::Error>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

async fn handle(state: &Shared, op: &str, doc: &Value, host: &str) -> (u16, Value) {
    match op {
        "ReceiveMessage" => receive(state, doc).await,
        _ => handle_now(state, op, doc, host),
    }
}

fn handle_now(state: &Shared, op: &str, doc: &Value, host: &str) -> (u16, Value) {
    let mut st = state.lock().expect("state");
    match op {
        "ListQueues" => {
            let urls: Vec<String> = st
                .queues
                .keys()
                .map(|n| format!("http://{host}/{ACCOUNT}/{n}"))
                .collect();
            (200, json!({"QueueUrls": urls}))
        }
        "CreateQueue" => {
            let Some(name) = doc["QueueName"].as_str() else {
                return error("MissingParameter", "QueueName");
            };
            let visibility = doc["Attributes"]["VisibilityTimeout"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(30);
            st.queues.entry(name.to_owned()).or_insert_with(|| Queue {
                visibility: Duration::from_secs(visibility),
                visible: VecDeque::new(),
                in_flight: HashMap::new(),
                next_expiry: None,
                notify: Arc::new(Notify::new()),
            });
            (
                200,
                json!({"QueueUrl": format!("http://{host}/{ACCOUNT}/{name}")}),
            )
        }
        "DeleteQueue" => match queue_name(doc).and_then(|n| st.queues.remove(&n)) {
            Some(q) => {
                q.notify.notify_waiters();
                (200, json!({}))
            }
            None => no_queue(),
        },
        "GetQueueAttributes" => {
            let Some(name) = queue_name(doc) else {
                return no_queue();
            };
            let Some(q) = st.queues.get_mut(&name) else {
                return no_queue();
            };
            q.requeue_expired(Instant::now());
            (
                200,
                json!({"Attributes": {
                    "QueueArn": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"),
                    "VisibilityTimeout": q.visibility.as_secs().to_string(),
                    "ApproximateNumberOfMessages": q.visible.len().to_string(),
                    "ApproximateNumberOfMessagesNotVisible": q.in_flight.len().to_string(),
                    "ApproximateNumberOfMessagesDelayed": "0",
                }}),
            )
        }
        "SendMessageBatch" => {
            let Some(name) = queue_name(doc) else {
                return no_queue();
            };
            let entries = doc["Entries"].as_array().cloned().unwrap_or_default();
            let first = st.seq;
            st.seq += entries.len() as u64;
            let Some(q) = st.queues.get_mut(&name) else {
                return no_queue();
            };
            let mut ok = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                let id = format!("00000000-0000-4000-8000-{:012x}", first + i as u64);
                q.visible.push_back(Msg {
                    id: id.clone(),
                    body: e["MessageBody"].as_str().unwrap_or_default().to_owned(),
                    sent_ms: now_ms(),
                    receives: 0,
                    first_receive_ms: 0,
                });
                ok.push(json!({"Id": e["Id"], "MessageId": id}));
            }
            q.notify.notify_waiters();
            (200, json!({"Successful": ok, "Failed": []}))
        }
        "DeleteMessageBatch" | "ChangeMessageVisibilityBatch" => {
            let Some(name) = queue_name(doc) else {
                return no_queue();
            };
            let Some(q) = st.queues.get_mut(&name) else {
                return no_queue();
            };
            let mut ok = Vec::new();
            let mut failed = Vec::new();
            let now = Instant::now();
            for e in doc["Entries"].as_array().into_iter().flatten() {
                let receipt = e["ReceiptHandle"].as_str().unwrap_or_default();
                let Some((m, _)) = q.in_flight.remove(receipt) else {
                    failed.push(json!({"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "Message": "unknown or expired receipt handle", "SenderFault": true}));
                    continue;
                };
                if op == "ChangeMessageVisibilityBatch" {
                    let secs = e["VisibilityTimeout"].as_u64().unwrap_or(0);
                    if secs == 0 {
                        q.visible.push_front(m);
                        q.notify.notify_waiters();
                    } else {
                        let at = now + Duration::from_secs(secs);
                        q.next_expiry = Some(q.next_expiry.map_or(at, |t| t.min(at)));
                        q.in_flight.insert(receipt.to_owned(), (m, at));
                    }
                }
                ok.push(json!({"Id": e["Id"]}));
            }
            (200, json!({"Successful": ok, "Failed": failed}))
        }
        other => error("InvalidAction", &format!("{other} is not served here")),
    }
}

/// `ReceiveMessage`: up to `MaxNumberOfMessages`, long-polling up to `WaitTimeSeconds` for the
/// first.
async fn receive(state: &Shared, doc: &Value) -> (u16, Value) {
    let Some(name) = queue_name(doc) else {
        return no_queue();
    };
    let max = usize::try_from(
        doc["MaxNumberOfMessages"]
            .as_u64()
            .unwrap_or(1)
            .clamp(1, 10),
    )
    .unwrap_or(1);
    let wait = Duration::from_secs(doc["WaitTimeSeconds"].as_u64().unwrap_or(0).min(20));
    let deadline = Instant::now() + wait;
    let notify = match state.lock().expect("state").queues.get(&name) {
        Some(q) => q.notify.clone(),
        None => return no_queue(),
    };
    loop {
        // Registered before the check, so a send between the check and the wait wakes it.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = state.lock().expect("state");
            let seq = st.seq;
            let Some(q) = st.queues.get_mut(&name) else {
                return no_queue();
            };
            let now = Instant::now();
            q.requeue_expired(now);
            if !q.visible.is_empty() || now >= deadline {
                let visibility = doc["VisibilityTimeout"]
                    .as_u64()
                    .map_or(q.visibility, Duration::from_secs);
                let at = now + visibility;
                let mut out = Vec::new();
                for i in 0..max {
                    let Some(mut m) = q.visible.pop_front() else {
                        break;
                    };
                    m.receives += 1;
                    if m.first_receive_ms == 0 {
                        m.first_receive_ms = now_ms();
                    }
                    let receipt = format!("{}#{}#{}", m.id, m.receives, seq + i as u64);
                    out.push(json!({
                        "MessageId": m.id,
                        "ReceiptHandle": receipt,
                        "Body": m.body,
                        "Attributes": {
                            "ApproximateReceiveCount": m.receives.to_string(),
                            "SentTimestamp": m.sent_ms.to_string(),
                            "ApproximateFirstReceiveTimestamp": m.first_receive_ms.to_string(),
                            "SenderId": "AIDABENCHSTANDIN",
                        },
                    }));
                    q.in_flight.insert(receipt, (m, at));
                }
                if !out.is_empty() {
                    q.next_expiry = Some(q.next_expiry.map_or(at, |t| t.min(at)));
                }
                return (200, json!({"Messages": out}));
            }
        }
        // Woken by a send (or a message made visible), or every 100 ms for visibility expiry.
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
    }
}
