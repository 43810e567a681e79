//! The Runtime API endpoint (fleetfn-runtime-api's server.rs and state.rs): the bytes of one
//! runtime connection (any number of pipelined requests: method, path, headers, body) served
//! in memory by `fuzzing::exchange` (feature `fuzzing`), with the same hyper settings and
//! routing as a real endpoint, one invoke in flight (`fuzzing::REQUEST_ID`) and one registered
//! extension (`fuzzing::EXTENSION_ID`), so the Extensions API, Telemetry API and Logs API
//! routes are reached past their identity checks (telemetry destinations are never connected
//! to). The clock is paused, so a `/next` that parks or a body that never ends costs no real
//! time.
//!
//! Checks: no panic, no hang; once the connection is gone no `/next` stays parked; the invoke
//! is either still in flight or resolved exactly once; a `/response` outcome is within
//! `max_response_bytes`, an `/error` or `/init/error` body within `max_error_bytes` (or the
//! endpoint's own short message); whatever the server wrote is HTTP/1.1 responses.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use fleetfn_runtime_api::fuzzing::exchange;
use fleetfn_runtime_api::{
    ERROR_TYPE_RESPONSE_TOO_LARGE, ERROR_TYPE_TRUNCATED_RESPONSE, Outcome, RuntimeApiConfig,
};
use libfuzzer_sys::fuzz_target;

const MAX_RESPONSE: usize = 1024;
const MAX_ERROR: usize = 256;
/// Longest message body the endpoint writes itself.
const OWN_MESSAGE: usize = 512;

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("tokio runtime")
});

fuzz_target!(|data: &[u8]| {
    let cfg = RuntimeApiConfig {
        max_response_bytes: MAX_RESPONSE,
        max_error_bytes: MAX_ERROR,
        max_stream_bytes: MAX_RESPONSE as u64,
    };
    let ex = RT.block_on(exchange(data, cfg, Duration::from_secs(30)));

    assert_eq!(
        ex.parked, 0,
        "a /next stayed parked after its connection closed"
    );
    match &ex.outcome {
        None => assert_eq!(ex.in_flight, 1, "invoke gone without an outcome"),
        Some(o) => {
            assert_eq!(ex.in_flight, 0, "invoke resolved but still in flight");
            match o {
                Outcome::Response(b) => assert!(b.len() <= MAX_RESPONSE, "oversized response"),
                Outcome::FunctionError { error_type, body } => {
                    let own = error_type == ERROR_TYPE_RESPONSE_TOO_LARGE
                        || error_type == ERROR_TYPE_TRUNCATED_RESPONSE;
                    assert!(
                        body.len() <= if own { OWN_MESSAGE } else { MAX_ERROR },
                        "oversized error body ({error_type})"
                    );
                }
                // A streamed `/response`: its chunks were never read, so the endpoint stopped
                // reading the upload (backpressure) until the connection closed.
                Outcome::Stream(_) => {}
            }
        }
    }
    assert!(
        ex.extensions <= fleetfn_runtime_api::MAX_EXTENSIONS,
        "more extensions than AWS allows"
    );
    assert!(ex.subscribers <= 1, "only the registered extension can subscribe");
    if let Some(e) = &ex.init_error {
        assert!(e.body.len() <= MAX_ERROR.max(OWN_MESSAGE + e.error_type.len()));
    }
    assert!(
        ex.response.is_empty() || ex.response.starts_with(b"HTTP/1."),
        "not an HTTP/1.x response: {:?}",
        String::from_utf8_lossy(&ex.response[..ex.response.len().min(64)])
    );
});
