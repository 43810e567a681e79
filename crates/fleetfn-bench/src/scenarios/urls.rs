//! Issue 16's numbers: a function URL (`function-url`) against the Invoke API on the same
//! fleet and function, at one client and at 32, and the time to first byte of a streamed
//! response through a `RESPONSE_STREAM` URL and through `InvokeWithResponseStream`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::{Ctx, closed_level, deploy, rust_fn};
use crate::fleet::{Fleet, ServeOptions, free_port, plain_request, sign};
use crate::load::{self, round};

/// `fleetfn serve` with its URL endpoint on a port of its own.
async fn start_fleet(ctx: &Ctx) -> anyhow::Result<(Fleet, SocketAddr)> {
    let urls: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let opts = ServeOptions {
        args: vec!["--url-listen".into(), urls.to_string()],
        env: Vec::new(),
    };
    Ok((Fleet::start_with(&ctx.bin_dir, &opts).await?, urls))
}

/// Gives `name` a public URL (`AuthType` NONE with the two statements AWS asks for) in
/// `mode`, and returns the URL on the endpoint's path prefix (no DNS needed).
async fn public_url(
    fleet: &Fleet,
    urls: SocketAddr,
    name: &str,
    mode: &str,
) -> anyhow::Result<String> {
    let cfg = fleet
        .api
        .ok(
            "POST",
            &format!("/2021-10-31/functions/{name}/url"),
            "",
            Some(json!({"AuthType": "NONE", "InvokeMode": mode})),
        )
        .await?;
    for (sid, statement) in [
        (
            "url",
            json!({"Action": "lambda:InvokeFunctionUrl", "FunctionUrlAuthType": "NONE"}),
        ),
        (
            "invoke",
            json!({"Action": "lambda:InvokeFunction", "InvokedViaFunctionUrl": true}),
        ),
    ] {
        let mut body = statement;
        body["StatementId"] = json!(sid);
        body["Principal"] = json!("*");
        fleet
            .api
            .ok(
                "POST",
                &format!("/2015-03-31/functions/{name}/policy"),
                "",
                Some(body),
            )
            .await?;
    }
    let url = cfg["FunctionUrl"]
        .as_str()
        .context("CreateFunctionUrlConfig: no FunctionUrl")?;
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .context("FunctionUrl without a url id")?;
    Ok(format!("http://{urls}/_fleetfn/url/{host}/"))
}

// ---------------------------------------------------------------------------------------------
// 13. Function URL vs the Invoke API.

pub async fn function_url(ctx: &Ctx) -> anyhow::Result<Value> {
    let (fleet, urls) = start_fleet(ctx).await?;
    let cp = fleet.capacity_provider().await?;
    let f = rust_fn(ctx, "url-rust", 64)?;
    deploy(&fleet, &cp, &f, 3).await?;
    let url = public_url(&fleet, urls, &f.name, "BUFFERED").await?;
    let via_url = plain_request(&url, r#"{"op":"noop"}"#);
    let via_api = fleet.api.invoke_request(&f.name, r#"{"op":"noop"}"#);
    // One check that the URL answers the function (and not an error page) before measuring.
    let probe = load::client(1).request(via_url()).await?;
    if probe.status() != 200 {
        bail!("the function URL answered HTTP {}", probe.status());
    }
    let mut runs = serde_json::Map::new();
    for (c, n) in [(1, 20_000), (32, 100_000)] {
        eprintln!("  function URL");
        runs.insert(
            format!("url_c{c}"),
            closed_level(ctx, fleet.pid(), via_url.clone(), c, n).await,
        );
        eprintln!("  Invoke API");
        runs.insert(
            format!("invoke_c{c}"),
            closed_level(ctx, fleet.pid(), via_api.clone(), c, n).await,
        );
    }
    Ok(json!({
        "what": "fleetfn-testfn op=noop, 3 environments × 64: a function URL (AuthType NONE, BUFFERED, path prefix, no signature) and the Invoke API (SigV4) on the same fleet, levels alternating",
        "runs": runs,
    }))
}

// ---------------------------------------------------------------------------------------------
// 14. Time to first byte of a streamed response.

/// Time to the response head, to the first body byte and to the end, in µs, of one request.
async fn first_byte(
    client: &load::HttpClient,
    req: http::Request<Full<Bytes>>,
) -> anyhow::Result<(f64, f64, f64, usize)> {
    let t0 = Instant::now();
    let resp = client.request(req).await?;
    let head = t0.elapsed();
    if resp.status() != 200 {
        bail!("HTTP {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut first = None;
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            if first.is_none() && !data.is_empty() {
                first = Some(t0.elapsed());
            }
            bytes += data.len();
        }
    }
    let end = t0.elapsed();
    let us = |d: Duration| round(d.as_secs_f64() * 1e6, 0);
    Ok((us(head), us(first.unwrap_or(end)), us(end), bytes))
}

fn percentiles(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    json!({"p50_us": at(0.5), "p99_us": at(0.99), "n": v.len()})
}

pub async fn stream_first_byte(ctx: &Ctx) -> anyhow::Result<Value> {
    let (fleet, urls) = start_fleet(ctx).await?;
    let cp = fleet.capacity_provider().await?;
    let f = rust_fn(ctx, "stream-rust", 16)?;
    deploy(&fleet, &cp, &f, 1).await?;
    let url = public_url(&fleet, urls, &f.name, "RESPONSE_STREAM").await?;
    // Four chunks 50 ms apart: the first byte should come a function's first write after
    // the request, the end 150 ms later.
    let payload = r#"{"op":"stream","chunks":4,"ms":50,"size":1024}"#;
    let via_url = plain_request(&url, payload);
    let api_uri = format!(
        "http://{}/2021-11-15/functions/{}/response-streaming-invocations",
        fleet.addr, f.name
    );
    let via_api = {
        let payload = Bytes::from_static(payload.as_bytes());
        Arc::new(move || {
            let mut req = http::Request::builder()
                .method("POST")
                .uri(&api_uri)
                .header("content-type", "application/json")
                .body(payload.clone())
                .expect("request");
            sign(&mut req);
            let (parts, body) = req.into_parts();
            http::Request::from_parts(parts, Full::new(body))
        })
    };
    let client = load::client(4);
    let mut out = serde_json::Map::new();
    for (label, make) in [
        ("url", via_url as load::MakeRequest),
        ("invoke_with_response_stream", via_api as load::MakeRequest),
    ] {
        let (mut heads, mut firsts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        let mut size = 0;
        for i in 0..60 {
            let (h, fb, e, n) = first_byte(&client, make()).await.with_context(|| label)?;
            if i >= 10 {
                heads.push(h);
                firsts.push(fb);
                ends.push(e);
                size = n;
            }
        }
        eprintln!(
            "  {label}: first byte p50 {} µs, end p50 {} µs",
            percentiles(firsts.clone())["p50_us"],
            percentiles(ends.clone())["p50_us"]
        );
        out.insert(
            label.into(),
            json!({
                "head": percentiles(heads),
                "first_byte": percentiles(firsts),
                "end": percentiles(ends),
                "body_bytes": size,
            }),
        );
    }
    Ok(json!({
        "what": "fleetfn-testfn op=stream (lambda_runtime streaming response): 4 chunks of 1 KiB, 50 ms apart; one client, 10 warm-up requests then 50 measured; times from the request's send",
        "runs": out,
    }))
}
