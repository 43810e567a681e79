//! Lambda API request parsing: `fleetfn_api::parse::parse_request`, the steps every handler
//! runs before it calls the control plane (path parameters percent-decoded like axum's `Path`,
//! function names, partial and full ARNs, qualifiers in the path and in `?Qualifier=`,
//! capacity provider names and ARNs, taggable resources, `MaxItems`, `FunctionVersion`, the
//! logs and cost query parameters, the Invoke headers, and the JSON body into the operation's
//! typed request from `fleetfn-model`).
//!
//! Input, as in the seeds of `corpus/api_parse`:
//!
//! ```text
//! Invoke my-fn%3Aprod ?Qualifier=prod        <- operation, raw path parameters, ?query
//! x-amz-invocation-type: DryRun             <- headers
//!                                           <- blank line
//! {"body": "..."}                           <- body
//! ```
//!
//! An unknown operation name picks one by the first byte. Checks: no panic; a parsed function
//! has a valid name (`[a-zA-Z0-9-_]+`) and qualifier; a parsed capacity provider name is
//! valid; every rejection is a 4xx error (never a 500 for bad input) that renders into a
//! response.
#![no_main]

use fleetfn_api::parse::{Operation, parse_request};
use fleetfn_model::Scope;
use fleetfn_model::arn::{is_qualifier, is_simple_name};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &data[data.len()..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let mut words = first.split(' ');
    let name = words.next().unwrap_or("");
    let op = Operation::ALL
        .iter()
        .copied()
        .find(|op| format!("{op:?}") == name)
        .unwrap_or(
            Operation::ALL[usize::from(data.first().copied().unwrap_or(0)) % Operation::ALL.len()],
        );
    let mut path = Vec::new();
    let mut query = None;
    for w in words {
        match w.strip_prefix('?') {
            Some(q) => query = Some(q),
            None => path.push(w),
        }
    }
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((n, v)) = line.split_once(':')
            && let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            )
        {
            headers.append(n, v);
        }
    }

    let scope = Scope::default();
    match parse_request(op, &scope, &path, query, &headers, body) {
        Ok(parsed) => {
            if let Some(f) = &parsed.function {
                assert!(
                    is_simple_name(&f.name) && f.name.len() <= 256,
                    "{op:?}: bad function name {f:?}"
                );
                if let Some(q) = &f.qualifier {
                    assert!(is_qualifier(q), "{op:?}: bad qualifier {f:?}");
                }
            }
            if matches!(
                op,
                Operation::GetCapacityProvider
                    | Operation::UpdateCapacityProvider
                    | Operation::DeleteCapacityProvider
                    | Operation::ListFunctionVersionsByCapacityProvider
            ) {
                let name = parsed.resource.as_deref().unwrap_or("");
                assert!(
                    is_simple_name(name) && name.len() <= 140,
                    "{op:?}: bad capacity provider name {name:?}"
                );
            }
        }
        Err(e) => {
            assert!(
                (400..500).contains(&e.kind.status()),
                "{op:?}: bad input answered with {}: {e}",
                e.kind.status()
            );
            let resp = fleetfn_api::render(&e);
            assert_eq!(resp.status().as_u16(), e.kind.status());
        }
    }
});
