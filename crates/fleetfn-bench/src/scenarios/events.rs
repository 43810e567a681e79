//! Issue 15's numbers: asynchronous invocation (`async`) and SQS event source mappings
//! (`sqs-mapping`), with moto's server, or for mappings also the bench's own in-memory SQS
//! stand-in (crate::sqs_server), on loopback as the SQS endpoint (the bench's own SQS calls go
//! through [`crate::sqs`], `fleetfn serve`'s through its `--aws-endpoint-url`).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{Ctx, deploy, measured, rust_fn, with_cpu};
use crate::fleet::{Fleet, ServeOptions, event_invoke, free_port};
use crate::load::{self, round};
use crate::procs;
use crate::sqs::{Endpoint, SERVER_KEYS, Sqs, find_moto};

/// `fleetfn serve` with its metrics on a port of its own and, with an SQS endpoint, that as its
/// AWS endpoint (the server's own keys; moto accepts any). Returns the fleet and its metrics address.
async fn start_fleet(ctx: &Ctx, sqs: Option<&Endpoint>) -> anyhow::Result<(Fleet, SocketAddr)> {
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut opts = ServeOptions {
        args: vec!["--metrics-listen".into(), metrics.to_string()],
        env: Vec::new(),
    };
    if let Some(m) = sqs {
        opts.args.extend(["--aws-endpoint-url".into(), m.url()]);
        opts.env.extend([
            ("AWS_ACCESS_KEY_ID".into(), SERVER_KEYS.0.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SERVER_KEYS.1.into()),
            ("AWS_REGION".into(), crate::fleet::REGION.into()),
        ]);
    }
    Ok((Fleet::start_with(&ctx.bin_dir, &opts).await?, metrics))
}

/// moto started, or why not.
async fn moto() -> Result<Endpoint, String> {
    let exe = find_moto()?;
    Endpoint::moto(&exe).await.map_err(|e| format!("{e:#}"))
}

/// The sum of the samples of counter `family` whose labels contain every one of `labels`
/// (e.g. `function="x"`), from `fleetfn serve`'s `/metrics`.
async fn metric(fleet: &Fleet, metrics: SocketAddr, family: &str, labels: &[&str]) -> f64 {
    let Ok((200, text)) = fleet.api.text(metrics, "/metrics").await else {
        return f64::NAN;
    };
    metric_sum(&text, family, labels)
}

fn metric_sum(text: &str, family: &str, labels: &[&str]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if &line[..name_end] != family {
            continue;
        }
        let label_part = line.rfind('}').map_or("", |e| &line[name_end..e]);
        if !labels.iter().all(|l| label_part.contains(l)) {
            continue;
        }
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += v;
        }
    }
    sum
}

/// The asynchronous queue's (depth, in flight) from `/fleetfn/v1/status`.
async fn queue_depth(fleet: &Fleet) -> anyhow::Result<(u64, u64)> {
    let s = fleet.api.status().await?;
    let q = &s["AsyncQueue"];
    Ok((
        q["Depth"].as_u64().context("status: no AsyncQueue.Depth")?,
        q["InFlight"].as_u64().unwrap_or(0),
    ))
}

/// Waits until the asynchronous queue is empty; how long that took, or `None` at `timeout`.
async fn wait_drained(fleet: &Fleet, timeout: Duration) -> anyhow::Result<Option<f64>> {
    let t0 = Instant::now();
    loop {
        if queue_depth(fleet).await? == (0, 0) {
            return Ok(Some(t0.elapsed().as_secs_f64()));
        }
        if t0.elapsed() > timeout {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Nearest-rank percentiles of `v` (sorted here), in the summary shape of the load generator.
fn percentiles(v: &mut [i64]) -> Value {
    if v.is_empty() {
        return json!({"count": 0});
    }
    v.sort_unstable();
    let at = |q: f64| {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    };
    json!({
        "count": v.len(),
        "min_us": v[0],
        "p50_us": at(0.50),
        "p90_us": at(0.90),
        "p99_us": at(0.99),
        "max_us": v[v.len() - 1],
    })
}

// ---------------------------------------------------------------------------------------------
// async

pub(super) async fn async_invoke(ctx: &Ctx) -> anyhow::Result<Value> {
    let moto = moto().await;
    let (fleet, metrics) = start_fleet(ctx, moto.as_ref().ok()).await?;
    let cp = fleet.capacity_provider().await?;
    // (b) first, on a fresh store: 200 events at 20/s, each timed to its handler's start.
    let latency = match &moto {
        Ok(m) => {
            let f = rust_fn(ctx, "async-now", 64)?;
            deploy(&fleet, &cp, &f, 3).await?;
            enqueue_to_handler(ctx, &fleet, &Sqs::new(m.addr), &f.name, 20.0, 10).await?
        }
        Err(why) => {
            eprintln!("    enqueue → handler: skipped ({why})");
            json!({"skipped": why})
        }
    };
    // (a) accepted events per second, 32 clients.
    let f = rust_fn(ctx, "async-noop", 64)?;
    deploy(&fleet, &cp, &f, 3).await?;
    let accept = accept_rate(ctx, &fleet, metrics, &f.name, 32).await?;
    let data_fs = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(fleet.data.path())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let summary = format!(
        "async: {} events accepted/s at c=32 (202 p50 {} / p99 {} µs), all delivered {} s after the load; enqueue → handler at 20/s: {}",
        accept["accepted_rps"],
        accept["accepted"]["p50_us"],
        accept["accepted"]["p99_us"],
        accept["drain_seconds_after_load"],
        if latency["skipped"].is_string() {
            format!("skipped ({})", latency["skipped"].as_str().unwrap_or("?"))
        } else {
            format!(
                "p50 {} / p99 {} µs ({} of {} events)",
                latency["enqueue_to_handler"]["p50_us"],
                latency["enqueue_to_handler"]["p99_us"],
                latency["enqueue_to_handler"]["count"],
                latency["sent"]
            )
        }
    );
    eprintln!("    {summary}");
    Ok(json!({
        "what": "InvocationType=Event invokes (SigV4, unqualified) of fleetfn-testfn on 3 environments × 64, SQLite store in a temporary data dir; (a) accepted: closed loop of 32 clients sending {\"op\":\"noop\"} events (no destination) for 2 × level seconds after 500 warm-up events, 202 latency at the client, deliveries (fleetfn_invocations_total) during the load and until the queue (fleetfn status AsyncQueue) is empty; (b) enqueue → handler: open loop of 20 {\"op\":\"now\"} events/s for 10 s after 20 warm-up events, each carrying the client's wall clock just before it was signed and sent; the handler returns its wall clock at entry and the OnSuccess record (SQS on moto_server, drained by the bench) carries both",
        "data_dir_fs": data_fs,
        "summary": summary,
        "accept": accept,
        "latency": latency,
    }))
}

async fn accept_rate(
    ctx: &Ctx,
    fleet: &Fleet,
    metrics: SocketAddr,
    name: &str,
    clients: usize,
) -> anyhow::Result<Value> {
    let make = fleet.api.event_request(name, r#"{"op":"noop"}"#);
    let m = make.clone();
    let warm = ctx
        .loadgen
        .spawn(async move { load::closed(m, clients, 500, 0, Duration::from_secs(30)).await })
        .await?;
    anyhow::ensure!(
        warm.by_status.contains_key(&202),
        "no event was accepted in the warm-up: {}",
        warm.to_json()["by_status"]
    );
    if wait_drained(fleet, Duration::from_secs(60))
        .await?
        .is_none()
    {
        bail!("the warm-up events were not delivered within 60 s");
    }
    let fl = format!("function=\"{name}\"");
    let inv0 = metric(fleet, metrics, "fleetfn_invocations_total", &[&fl]).await;
    let secs = ctx.level_secs * 2;
    let (r, cpu, lg) = measured(ctx, fleet.pid(), async move {
        load::closed(make, clients, 2_000_000, 0, Duration::from_secs(secs)).await
    })
    .await;
    let inv_end = metric(fleet, metrics, "fleetfn_invocations_total", &[&fl]).await;
    let (depth_end, _) = queue_depth(fleet).await?;
    let drain = wait_drained(fleet, Duration::from_secs(300)).await?;
    let inv_final = metric(fleet, metrics, "fleetfn_invocations_total", &[&fl]).await;
    let dropped = metric(fleet, metrics, "fleetfn_async_events_dropped_total", &[&fl]).await;
    let accepted = r
        .by_status
        .get(&202)
        .map_or(0, hdrhistogram::Histogram::len);
    #[allow(clippy::cast_precision_loss)]
    let accepted_rps = accepted as f64 / r.seconds.max(1e-9);
    let delivered = inv_final - inv0;
    let mut all = with_cpu(&r, &cpu, lg);
    // Success here is 202.
    all["ok"] = json!(accepted);
    all["errors"] = json!(r.count() - accepted);
    all["note"] = json!(
        "CPU per request = CPU of the whole tree during the load / events sent: it includes the dispatcher's deliveries within the load window, not those after it"
    );
    eprintln!(
        "    c={clients}: {accepted} accepted in {:.1} s = {accepted_rps:.0}/s, 202 p50 {:?} µs p99 {:?} µs; {} delivered during the load, {depth_end} queued at its end, drained {drain:?} s later; {delivered} delivered in all",
        r.seconds,
        r.by_status.get(&202).map(|h| h.value_at_quantile(0.5)),
        r.by_status.get(&202).map(|h| h.value_at_quantile(0.99)),
        inv_end - inv0
    );
    let total_secs = r.seconds + drain.unwrap_or(f64::NAN);
    Ok(json!({
        "clients": clients,
        "seconds": round(r.seconds, 3),
        "sent": r.count(),
        "accepted_count": accepted,
        "not_accepted": r.count() - accepted,
        "accepted_rps": round(accepted_rps, 1),
        "accepted": r.by_status.get(&202).map_or(json!({"count": 0}), load::summary),
        "delivered_during_load": inv_end - inv0,
        "delivered_rps_during_load": round((inv_end - inv0) / r.seconds.max(1e-9), 1),
        "queued_at_end_of_load": depth_end,
        "drain_seconds_after_load": drain.map(|s| round(s, 2)),
        "delivered_total": delivered,
        "delivered_rps_end_to_end": round(delivered / total_secs, 1),
        "dropped": dropped,
        "load": all,
    }))
}

/// One event of the open loop: (seq, its send's wall clock, status, 202 latency, the answer's
/// wall clock).
type Sent = (u64, i64, u16, Duration, i64);

async fn enqueue_to_handler(
    ctx: &Ctx,
    fleet: &Fleet,
    sqs: &Sqs,
    name: &str,
    rate: f64,
    secs: u64,
) -> anyhow::Result<Value> {
    let queue = format!("bench-async-ok-{}", std::process::id());
    let (url, arn) = sqs.create_queue(&queue, &json!({})).await?;
    fleet
        .api
        .ok(
            "PUT",
            &format!("/2019-09-25/functions/{name}/event-invoke-config"),
            "",
            Some(json!({"DestinationConfig": {"OnSuccess": {"Destination": arn}}})),
        )
        .await?;
    let uri = fleet.api.invocations_uri(name);
    // Warm-up: the dispatcher's path, the server's connection to moto.
    let warm = send_paced(ctx, &uri, 20, 20.0, 1_000_000).await?;
    let got = drain_records(sqs, &url, warm.len(), Duration::from_secs(60)).await?;
    anyhow::ensure!(
        got.len() == warm.len(),
        "{} of {} warm-up records reached the OnSuccess queue",
        got.len(),
        warm.len()
    );
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = (rate * secs as f64).round() as u64;
    let sent = send_paced(ctx, &uri, n, rate, 0).await?;
    let accepted: Vec<&Sent> = sent.iter().filter(|s| s.2 == 202).collect();
    let records = drain_records(sqs, &url, accepted.len(), Duration::from_secs(60)).await?;
    let by_seq: std::collections::HashMap<u64, &Sent> = sent.iter().map(|s| (s.0, s)).collect();
    let mut lat = Vec::new();
    let mut after_202 = Vec::new();
    let mut bad = 0usize;
    for r in &records {
        let seq = r["requestPayload"]["seq"].as_u64();
        let sent_us = r["requestPayload"]["sent_us"].as_i64();
        let now_us = r["responsePayload"]["now_us"].as_i64();
        match (seq, sent_us, now_us) {
            (Some(seq), Some(s), Some(h)) => {
                lat.push(h - s);
                if let Some(x) = by_seq.get(&seq) {
                    after_202.push(h - x.4);
                }
            }
            _ => bad += 1,
        }
    }
    let mut ack: Vec<i64> = accepted
        .iter()
        .map(|s| i64::try_from(s.3.as_micros()).unwrap_or(i64::MAX))
        .collect();
    let l = percentiles(&mut lat);
    eprintln!(
        "    enqueue → handler at {rate}/s: p50 {} µs, p99 {} µs, max {} µs ({} records of {} sent)",
        l["p50_us"],
        l["p99_us"],
        l["max_us"],
        records.len(),
        sent.len()
    );
    let _ = sqs.delete_queue(&url).await;
    Ok(json!({
        "rate_rps": rate,
        "seconds": secs,
        "sent": sent.len(),
        "accepted": accepted.len(),
        "records": records.len(),
        "records_unreadable": bad,
        "enqueue_to_handler": l,
        "accepted_202": percentiles(&mut ack),
        "handler_after_202_received": percentiles(&mut after_202),
        "how": "OnSuccess destination: an SQS queue on moto_server; latency = responsePayload.now_us (handler entry, fleetfn-testfn op=now) − requestPayload.sent_us (client wall clock before signing and sending); same host, same CLOCK_REALTIME",
    }))
}

/// `n` events `{"op":"now","seq":i,"sent_us":T}` at `rate` per second, each sent on its own task
/// (an open loop: a slow answer does not delay the next event).
async fn send_paced(
    ctx: &Ctx,
    uri: &str,
    n: u64,
    rate: f64,
    seq0: u64,
) -> anyhow::Result<Vec<Sent>> {
    let uri = uri.to_owned();
    let task =
        ctx.loadgen.spawn(async move {
            let client = load::client(64);
            let interval = Duration::from_secs_f64(1.0 / rate);
            let start = tokio::time::Instant::now();
            let mut tasks = Vec::new();
            for i in 0..n {
                #[allow(clippy::cast_possible_truncation)]
                tokio::time::sleep_until(start + interval * (i as u32)).await;
                let (client, uri) = (client.clone(), uri.clone());
                tasks.push(tokio::spawn(async move {
                    let seq = seq0 + i;
                    let sent_us = wall_us();
                    let payload = json!({"op": "now", "seq": seq, "sent_us": sent_us}).to_string();
                    let req = event_invoke(&uri, Bytes::from(payload));
                    let t = Instant::now();
                    let status =
                        match tokio::time::timeout(Duration::from_secs(30), client.request(req))
                            .await
                        {
                            Ok(Ok(resp)) => {
                                let s = resp.status().as_u16();
                                match resp.into_body().collect().await {
                                    Ok(_) => s,
                                    Err(_) => 0,
                                }
                            }
                            _ => 0,
                        };
                    (seq, sent_us, status, t.elapsed(), wall_us())
                }));
            }
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                if let Ok(s) = t.await {
                    out.push(s);
                }
            }
            out
        });
    Ok(task.await?)
}

/// Destination records read (and deleted) from `url` until `want` arrived or `timeout`.
async fn drain_records(
    sqs: &Sqs,
    url: &str,
    want: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Value>> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    while out.len() < want && t0.elapsed() < timeout {
        let msgs = sqs.receive(url, 10, 1).await?;
        sqs.delete_batch(url, &msgs).await?;
        for m in msgs {
            let body = m["Body"].as_str().unwrap_or_default();
            out.push(serde_json::from_str(body).unwrap_or(Value::Null));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// sqs-mapping

/// One mapping benchmark: where the queue is, how many messages, how often the queue is read.
struct Setup<'a> {
    endpoint: &'a Endpoint,
    messages: usize,
    sample: Duration,
}

pub(super) async fn sqs_mapping(ctx: &Ctx) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    let mut parts = Vec::new();
    // The stand-in first: fleetfn's own rate, the queue not being the limit.
    let standin = Endpoint::standin().await?;
    let (v, line) = mapping_suite(
        ctx,
        &Setup {
            endpoint: &standin,
            messages: 50_000,
            sample: Duration::from_millis(20),
        },
        &[(10, 0), (100, 1)],
    )
    .await?;
    drop(standin);
    out.insert("bench_sqs_server".into(), v);
    parts.push(line);
    // moto (what the Python suites use): it slows down with every message queued, so a small
    // preload.
    match moto().await {
        Ok(m) => {
            let (v, line) = mapping_suite(
                ctx,
                &Setup {
                    endpoint: &m,
                    messages: 500,
                    sample: Duration::from_millis(250),
                },
                &[(10, 0)],
            )
            .await?;
            out.insert("moto".into(), v);
            parts.push(line);
        }
        Err(why) => {
            eprintln!("    moto: skipped ({why})");
            out.insert("moto".into(), json!({"skipped": why}));
            parts.push(format!("moto skipped ({why})"));
        }
    }
    let summary = format!("sqs-mapping: {}", parts.join("; "));
    eprintln!("    {summary}");
    out.insert("summary".into(), json!(summary));
    out.insert("what".into(), json!("an SQS event source mapping (no ScalingConfig: 5 concurrent pollers) from a preloaded queue to fleetfn-testfn (3 environments × 64, TESTFN_DEFAULT_OP=noop so the {\"Records\":[…]} event is a no-op returning {}); ApproximateNumberOfMessages + NotVisible read every `sample_ms` from CreateEventSourceMapping until 0; msgs_per_s = the messages left at the first reading below the preload / the time from that reading to the empty one (excludes the mapping's start, includes the last partial batch, which with a batching window waits out the window); steady_msgs_per_s = the same up to the first reading at or below 10 % left; fleetfn_cpu_us_per_msg = CPU of fleetfn serve and its agents from create to empty / messages; the queue on fleetfn-bench's in-memory SQS stand-in (50,000 messages; BatchSize 10, then 100 with a 1 s window) and on moto_server (500 messages, BatchSize 10: moto does O(queued messages) work per call); floor = the bench draining the same preload itself with 5 concurrent ReceiveMessage(10) + DeleteMessageBatch loops (the endpoint alone)"));
    Ok(Value::Object(out))
}

/// A fleet whose AWS endpoint is `setup.endpoint`, one no-op function, a mapping run per
/// (BatchSize, window), and the endpoint's own floor. The JSON and a summary line.
async fn mapping_suite(
    ctx: &Ctx,
    setup: &Setup<'_>,
    configs: &[(u32, u32)],
) -> anyhow::Result<(Value, String)> {
    let (fleet, metrics) = start_fleet(ctx, Some(setup.endpoint)).await?;
    let cp = fleet.capacity_provider().await?;
    let mut f = rust_fn(ctx, "esm-noop", 64)?;
    // The mapping's event is {"Records":[…]}, without an `op`.
    f.env = vec![("TESTFN_DEFAULT_OP", "noop")];
    deploy(&fleet, &cp, &f, 3).await?;
    let sqs = Sqs::new(setup.endpoint.addr);
    let mut runs = serde_json::Map::new();
    let mut line = Vec::new();
    for &(batch, window) in configs {
        let v = mapping_run(&fleet, metrics, setup, &sqs, &f.name, batch, window).await?;
        line.push(format!(
            "BatchSize {batch}{}: {} msgs/s steady, {} to empty ({} s from create to empty, {} µs fleetfn CPU/msg)",
            if window > 0 {
                format!(" + {window} s window")
            } else {
                String::new()
            },
            v["steady_msgs_per_s"],
            v["msgs_per_s"],
            v["seconds_create_to_empty"],
            v["fleetfn_cpu_us_per_msg"]
        ));
        runs.insert(format!("batch{batch}_window{window}"), v);
    }
    drop(fleet);
    let floor = endpoint_floor(setup, &sqs, 5).await?;
    let line = format!(
        "{} ({} messages): {}; the endpoint alone {} msgs/s",
        setup.endpoint.kind,
        setup.messages,
        line.join(", "),
        floor["msgs_per_s"]
    );
    Ok((
        json!({
            "endpoint": setup.endpoint.kind,
            "messages": setup.messages,
            "sample_ms": setup.sample.as_millis(),
            "runs": runs,
            "floor": floor,
        }),
        line,
    ))
}

/// Preloads `n` messages into `url` with 8 concurrent `SendMessageBatch` loops; seconds taken.
async fn preload(sqs: &Sqs, url: &str, n: usize) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (sqs, url, next) = (sqs.clone(), url.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(10, Ordering::SeqCst);
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                let bodies: Vec<String> = (i..(i + 10).min(n))
                    .map(|k| json!({"n": k}).to_string())
                    .collect();
                sqs.send_batch(&url, &bodies).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let (visible, hidden) = sqs.count(url).await?;
    anyhow::ensure!(
        visible + hidden == n as u64,
        "preloaded {n} messages, the queue holds {visible} + {hidden}"
    );
    Ok(t0.elapsed().as_secs_f64())
}

async fn mapping_run(
    fleet: &Fleet,
    metrics: SocketAddr,
    setup: &Setup<'_>,
    sqs: &Sqs,
    function: &str,
    batch: u32,
    window: u32,
) -> anyhow::Result<Value> {
    let (url, arn) = sqs
        .create_queue(
            &format!("bench-esm-b{batch}-{}", std::process::id()),
            &json!({}),
        )
        .await?;
    let preload_s = preload(sqs, &url, setup.messages).await?;
    let fl = format!("function=\"{function}\"");
    let inv0 = metric(fleet, metrics, "fleetfn_invocations_total", &[&fl]).await;
    let err0 = metric(fleet, metrics, "fleetfn_errors_total", &[&fl]).await;
    let tree0 = procs::tree(fleet.pid());
    let sqs0 = procs::cpu_secs(setup.endpoint.pid());
    let mut body = json!({
        "FunctionName": function,
        "EventSourceArn": arn,
        "BatchSize": batch,
    });
    if window > 0 {
        body["MaximumBatchingWindowInSeconds"] = json!(window);
    }
    let t0 = Instant::now();
    let m = fleet
        .api
        .ok("POST", "/2015-03-31/event-source-mappings/", "", Some(body))
        .await?;
    let uuid = m["UUID"]
        .as_str()
        .context("CreateEventSourceMapping: no UUID")?
        .to_owned();
    let path = format!("/2015-03-31/event-source-mappings/{uuid}");
    let n = setup.messages as u64;
    let mut enabled_at = None;
    let mut first_delete: Option<(f64, u64)> = None;
    let mut ninety: Option<(f64, u64)> = None;
    let mut empty_at = None;
    let mut left = n;
    let mut timeline = Vec::new();
    while t0.elapsed() < Duration::from_secs(240) {
        if enabled_at.is_none() {
            let v = fleet.api.ok("GET", &path, "", None).await?;
            if v["State"] == "Enabled" {
                enabled_at = Some(t0.elapsed().as_secs_f64());
            }
        }
        let (visible, hidden) = sqs.count(&url).await?;
        let t = t0.elapsed().as_secs_f64();
        left = visible + hidden;
        if timeline.len() < 3000 {
            timeline.push(json!([round(t, 2), left]));
        }
        if first_delete.is_none() && left < n {
            first_delete = Some((t, left));
        }
        if ninety.is_none() && left <= n / 10 {
            ninety = Some((t, left));
        }
        if left == 0 {
            empty_at = Some(t);
            break;
        }
        tokio::time::sleep(setup.sample).await;
    }
    let sqs_cpu = procs::cpu_secs(setup.endpoint.pid()) - sqs0;
    let cpu = procs::cpu_delta(fleet.pid(), &tree0, &procs::tree(fleet.pid()));
    let scraped = fleet
        .api
        .text(metrics, "/metrics")
        .await
        .map(|(_, t)| t)
        .unwrap_or_default();
    let invokes = metric_sum(&scraped, "fleetfn_invocations_total", &[&fl]) - inv0;
    let errors = metric_sum(&scraped, "fleetfn_errors_total", &[&fl]) - err0;
    let mapping = format!("mapping=\"{uuid}\"");
    let by_outcome: serde_json::Map<String, Value> = ["Polled", "Filtered", "Processed", "Failed"]
        .iter()
        .map(|o| {
            let ol = format!("outcome=\"{o}\"");
            let v = metric_sum(
                &scraped,
                "fleetfn_event_source_messages_total",
                &[&mapping, &ol],
            );
            ((*o).to_owned(), json!(v))
        })
        .collect();
    let last = fleet.api.ok("GET", &path, "", None).await?;
    fleet.api.ok("DELETE", &path, "", None).await?;
    // The mapping's pollers stop before its queue goes.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if let Ok((404, _)) = fleet.api.raw("GET", &path, "", None, true).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = sqs.delete_queue(&url).await;
    #[allow(clippy::cast_precision_loss)]
    let rate = match (first_delete, empty_at) {
        (Some((t1, left1)), Some(t2)) if t2 > t1 => Some(left1 as f64 / (t2 - t1)),
        _ => None,
    };
    #[allow(clippy::cast_precision_loss)]
    let steady = match (first_delete, ninety) {
        (Some((t1, left1)), Some((t2, left2))) if t2 > t1 => {
            Some((left1 - left2) as f64 / (t2 - t1))
        }
        _ => None,
    };
    let processed = by_outcome["Processed"].as_f64().unwrap_or(f64::NAN);
    let secs = empty_at.unwrap_or_else(|| t0.elapsed().as_secs_f64());
    let fleetfn_cpu =
        cpu.get("server").copied().unwrap_or(0.0) + cpu.get("agent").copied().unwrap_or(0.0);
    eprintln!(
        "    BatchSize {batch}, window {window} s: Enabled after {enabled_at:?} s, first delete {first_delete:?}, empty after {empty_at:?} s ({left} left) = {rate:?} msgs/s (steady {steady:?}); {invokes} invokes ({:.1} msgs each), {errors} function errors; CPU fleetfn {fleetfn_cpu:.2} s, {} {sqs_cpu:.2} s",
        processed / invokes.max(1.0),
        setup.endpoint.kind
    );
    let cpu_map: serde_json::Map<String, Value> = cpu
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(round(*v, 3))))
        .collect();
    Ok(json!({
        "batch_size": batch,
        "batching_window_s": window,
        "preload_seconds": round(preload_s, 2),
        "seconds_create_to_enabled": enabled_at.map(|s| round(s, 2)),
        "seconds_create_to_first_delete": first_delete.map(|(t, _)| round(t, 2)),
        "seconds_create_to_empty": empty_at.map(|s| round(s, 2)),
        "left_at_end": left,
        "msgs_per_s": rate.map(|r| round(r, 1)),
        "steady_msgs_per_s": steady.map(|r| round(r, 1)),
        "msgs_per_s_from_create": empty_at.map(|s| round(n as f64 / s, 1)),
        "fleetfn_cpu_us_per_msg": round(fleetfn_cpu * 1e6 / (n - left).max(1) as f64, 1),
        "invokes": invokes,
        "function_errors": errors,
        "mean_batch": round(processed / invokes.max(1.0), 2),
        "messages_by_outcome": by_outcome,
        "last_processing_result": last["LastProcessingResult"],
        "cpu_seconds": {
            "fleetfn_tree": cpu_map,
            "sqs_endpoint": round(sqs_cpu, 3),
            "wall": round(secs, 3),
        },
        "timeline": timeline,
    }))
}

/// The endpoint alone: the bench drains a preloaded queue with `workers` concurrent
/// ReceiveMessage(10, no wait) + DeleteMessageBatch loops, like the mapping's pollers minus the
/// invoke.
async fn endpoint_floor(setup: &Setup<'_>, sqs: &Sqs, workers: usize) -> anyhow::Result<Value> {
    let n_msgs = setup.messages;
    let (url, _) = sqs
        .create_queue(
            &format!("bench-esm-floor-{}", std::process::id()),
            &json!({}),
        )
        .await?;
    preload(sqs, &url, n_msgs).await?;
    let sqs0 = procs::cpu_secs(setup.endpoint.pid());
    let deleted = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(240);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (sqs, url, deleted) = (sqs.clone(), url.clone(), deleted.clone());
        tasks.push(tokio::spawn(async move {
            let mut calls = 0u64;
            while deleted.load(Ordering::SeqCst) < n_msgs && Instant::now() < deadline {
                let msgs = sqs.receive(&url, 10, 0).await?;
                calls += 1;
                if msgs.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                sqs.delete_batch(&url, &msgs).await?;
                calls += 1;
                deleted.fetch_add(msgs.len(), Ordering::SeqCst);
            }
            Ok::<u64, anyhow::Error>(calls)
        }));
    }
    let mut calls = 0;
    for t in tasks {
        calls += t.await??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let sqs_cpu = procs::cpu_secs(setup.endpoint.pid()) - sqs0;
    let n = deleted.load(Ordering::SeqCst);
    let _ = sqs.delete_queue(&url).await;
    #[allow(clippy::cast_precision_loss)]
    let rate = n as f64 / secs.max(1e-9);
    eprintln!(
        "    {} alone: {n} messages received and deleted in {secs:.2} s = {rate:.0}/s ({calls} calls, its CPU {sqs_cpu:.2} s)",
        setup.endpoint.kind
    );
    Ok(json!({
        "workers": workers,
        "messages": n,
        "seconds": round(secs, 3),
        "msgs_per_s": round(rate, 1),
        "sqs_calls": calls,
        "endpoint_cpu_seconds": round(sqs_cpu, 3),
    }))
}
