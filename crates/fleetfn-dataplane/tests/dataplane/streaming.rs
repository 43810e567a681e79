//! The router through `Invoker::invoke_stream`: a streamed answer relayed as it comes, the
//! invoke counted once when the stream ends and in flight until then, the time to its first
//! part observed; refusals retried and throttles counted as for `invoke`; buffered answers
//! passed through.

use std::time::Duration;

use fleetfn_contracts::{Invoker, StreamPart, StreamingOutcome};
use fleetfn_model::ErrorKind;
use fleetfn_proto::ThrottleReason;
use tokio::time::Instant;

use crate::support::{Answer, FunctionSpec, Harness};

fn stream_answer(error: Option<&'static str>) -> Answer {
    Answer::Stream {
        chunks: 3,
        every: Duration::from_millis(100),
        error,
    }
}

fn in_flight(h: &Harness) -> u32 {
    h.dp.environments()
        .environments
        .iter()
        .map(|e| e.in_flight)
        .sum()
}

#[tokio::test(start_paused = true)]
async fn a_streamed_answer_is_relayed_and_counted_once_at_its_end() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), stream_answer(None));
    let started = Instant::now();
    let out = h.invoke_stream("f:1", "x").await.expect("invoke");
    let StreamingOutcome::Streamed(mut stream) = out else {
        panic!("expected a stream, got {out:?}");
    };
    assert_eq!(stream.content_type.as_deref(), Some("text/plain"));
    // Streamed at once: nothing waited for the function's first chunk.
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(in_flight(&h), 1);
    for i in 0..3u32 {
        let part = stream.parts.recv().await.expect("a part");
        assert_eq!(part, StreamPart::Chunk(format!("chunk-{i}").into()));
        // Each chunk comes when the function writes it.
        assert_eq!(started.elapsed(), Duration::from_millis(100) * (i + 1));
        if i < 2 {
            // Not counted while it streams (the last chunk comes with its end).
            assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), 0.0);
        }
    }
    assert_eq!(stream.parts.recv().await, Some(StreamPart::End(None)));
    assert_eq!(stream.parts.recv().await, None);
    // Counted once, at its end, and no longer in flight.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(in_flight(&h), 0);
    assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), 1.0);
    assert_eq!(h.metric("fleetfn_errors_total", "f", "1"), 0.0);
    assert_eq!(
        h.metric("fleetfn_duration_seconds_sum", "f", "1"),
        0.3,
        "the duration runs to the stream's end"
    );
    assert_eq!(
        h.function_metric("fleetfn_stream_first_byte_seconds_count", "f"),
        1.0
    );
    assert_eq!(
        h.function_metric("fleetfn_stream_first_byte_seconds_sum", "f"),
        0.1
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_ending_in_an_error_counts_an_error() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), stream_answer(Some("Boom")));
    let StreamingOutcome::Streamed(mut stream) = h.invoke_stream("f:1", "x").await.unwrap() else {
        panic!("expected a stream");
    };
    let end = loop {
        match stream.parts.recv().await.expect("a part") {
            StreamPart::Chunk(_) => {}
            StreamPart::End(end) => break end,
        }
    };
    assert_eq!(end.expect("an error").error_type, "Boom");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), 1.0);
    assert_eq!(h.metric("fleetfn_errors_total", "f", "1"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_stream_ends_the_invoke() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), stream_answer(None));
    let StreamingOutcome::Streamed(mut stream) = h.invoke_stream("f:1", "x").await.unwrap() else {
        panic!("expected a stream");
    };
    assert!(matches!(
        stream.parts.recv().await,
        Some(StreamPart::Chunk(_))
    ));
    drop(stream);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(in_flight(&h), 0);
    assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_retried_and_throttles_counted_as_for_invoke() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let agents = h.provider.running();
    agents[0].set_answer(Some(Answer::Refuse(ThrottleReason::Cpu)));
    agents[1].set_answer(Some(Answer::Refuse(ThrottleReason::Cpu)));
    agents[2].set_answer(Some(stream_answer(None)));
    let id = h.next_request_id();
    let out = h.invoke_stream("f:1", "x").await.expect("a stream");
    assert!(matches!(out, StreamingOutcome::Streamed(_)), "{out:?}");
    assert!((1..=3).contains(&h.tries(&id).len()));
    assert_eq!(h.metric("fleetfn_throttles_total", "f", "1"), 0.0);
    drop(out);

    agents[2].set_answer(Some(Answer::Refuse(ThrottleReason::Cpu)));
    let e = h.invoke_stream("f:1", "x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRequests);
    assert!(e.message.contains("(CPU throttle)"), "{}", e.message);
    assert_eq!(h.metric("fleetfn_cpu_throttles_total", "f", "1"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn buffered_answers_pass_through_and_invoke_collects_streams() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    // An ordinary function asked for a stream answers whole.
    match h.invoke_stream("f:1", "hello").await.unwrap() {
        StreamingOutcome::Buffered(o) => {
            assert_eq!(&o.payload[..], b"hello");
            assert_eq!(o.function_error, None);
        }
        other => panic!("expected a buffered answer, got {other:?}"),
    }
    assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), 1.0);
    // A streaming function invoked the ordinary way answers whole (the agent collects it).
    h.provider
        .script()
        .answers
        .insert("f".into(), stream_answer(None));
    let o = h.invoke("f:1", "x").await.unwrap();
    assert_eq!(&o.payload[..], b"chunk-0chunk-1chunk-2");
    assert_eq!(
        h.function_metric("fleetfn_stream_first_byte_seconds_count", "f"),
        0.0
    );
}

/// A stream far longer than the function's timeout (the fake agent does not end it itself).
fn endless_stream() -> Answer {
    Answer::Stream {
        chunks: 100_000,
        every: Duration::from_millis(10),
        error: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_never_reads_holds_its_environment_only_until_the_deadline() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec {
        max_concurrency: Some(1),
        timeout_secs: Some(3),
        ..FunctionSpec::default()
    })
    .await;
    h.provider
        .script()
        .answers
        .insert("f".into(), endless_stream());
    let envs = h.dp.environments().environments.len();
    assert!(envs > 0);
    // One stalled reader per slot: every environment is busy.
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..envs {
        match h.invoke_stream("f:1", "x").await.expect("a stream") {
            StreamingOutcome::Streamed(s) => stalled.push(s),
            other => panic!("expected a stream, got {other:?}"),
        }
    }
    assert_eq!(in_flight(&h), u32::try_from(envs).unwrap());
    let e = h.invoke_stream("f:1", "x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRequests, "{}", e.message);
    // The router's deadline is the timeout plus 10 s; nobody reads meanwhile.
    let deadline = Duration::from_secs(3 + 10);
    tokio::time::sleep_until(started + deadline - Duration::from_millis(20)).await;
    assert_eq!(in_flight(&h), u32::try_from(envs).unwrap());
    tokio::time::sleep_until(started + deadline + Duration::from_millis(1)).await;
    assert_eq!(
        in_flight(&h),
        0,
        "released at the deadline, though nobody read"
    );
    assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), envs as f64);
    assert_eq!(h.metric("fleetfn_errors_total", "f", "1"), envs as f64);
    let busy = h.metric("fleetfn_duration_seconds_sum", "f", "1");
    assert!(
        (busy - 13.0 * envs as f64).abs() < 0.1,
        "busy time stops at the deadline: {busy}"
    );
    // Other callers are admitted again.
    match h.invoke_stream("f:1", "x").await.expect("admitted") {
        StreamingOutcome::Streamed(mut s) => {
            assert!(matches!(s.parts.recv().await, Some(StreamPart::Chunk(_))));
        }
        other => panic!("expected a stream, got {other:?}"),
    }
    // The stalled readers get what was buffered, then the stream stops (abandoned).
    let mut s = stalled.pop().unwrap();
    let mut chunks = 0;
    while let Some(part) = s.parts.recv().await {
        assert!(matches!(part, StreamPart::Chunk(_)), "{part:?}");
        chunks += 1;
    }
    assert!(chunks > 0);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ended_leaves_flight_before_its_caller_reads_the_end() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), stream_answer(None));
    let StreamingOutcome::Streamed(mut stream) = h.invoke_stream("f:1", "x").await.unwrap() else {
        panic!("expected a stream");
    };
    // The function's three chunks and its end fit the buffers: the caller has read nothing.
    tokio::time::sleep(Duration::from_millis(301)).await;
    assert_eq!(in_flight(&h), 0);
    assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), 1.0);
    assert_eq!(h.metric("fleetfn_errors_total", "f", "1"), 0.0);
    assert_eq!(h.metric("fleetfn_duration_seconds_sum", "f", "1"), 0.3);
    // Everything is still delivered.
    for i in 0..3 {
        assert_eq!(
            stream.parts.recv().await,
            Some(StreamPart::Chunk(format!("chunk-{i}").into()))
        );
    }
    assert_eq!(stream.parts.recv().await, Some(StreamPart::End(None)));
}
