//! `fleetfn-testext-telemetry`: an external extension on `lambda-extension`'s telemetry
//! processor. Registers for `SHUTDOWN`, subscribes to `platform`, `function` and `extension`
//! telemetry (buffering 100 ms so a test does not wait long) and records every item, and the
//! size of every batch, to `<dir>/fleetfn-testext-telemetry.jsonl` (see the crate docs).
//! `function` and `extension` records are taken as any JSON (a line as a string in the text log
//! format, an object in the JSON format), as the crate documents for JSON logs; the platform
//! records are parsed by the crate's own typed schema, so a malformed one fails the batch.

use std::sync::Arc;

use fleetfn_testext::{Record, Recorder, telemetry_port_from_env};
use lambda_extension::{
    Error, Extension, LambdaEvent, LambdaTelemetry, LogBuffering, NextEvent, SharedService,
    service_fn,
};

const NAME: &str = "fleetfn-testext-telemetry";
const EVENTS: &[&str] = &["SHUTDOWN"];
const TYPES: &[&str] = &["platform", "function", "extension"];

#[tokio::main]
async fn main() -> Result<(), Error> {
    let recorder = Arc::new(Recorder::from_env(NAME)?);

    let telemetry = {
        let recorder = Arc::clone(&recorder);
        service_fn(move |items: Vec<LambdaTelemetry<serde_json::Value>>| {
            let recorder = Arc::clone(&recorder);
            async move {
                recorder.record(&Record::Batch { items: items.len() })?;
                for item in &items {
                    recorder.record(&Record::Telemetry { item })?;
                }
                Ok::<(), Error>(())
            }
        })
    };
    let events = {
        let recorder = Arc::clone(&recorder);
        service_fn(move |event: LambdaEvent| {
            let recorder = Arc::clone(&recorder);
            async move {
                if let NextEvent::Shutdown(e) = &event.next {
                    println!("{NAME}: SHUTDOWN {}", e.shutdown_reason);
                    recorder.record(&Record::Shutdown {
                        shutdown_reason: &e.shutdown_reason,
                        deadline_ms: e.deadline_ms,
                    })?;
                }
                Ok::<(), Error>(())
            }
        })
    };

    let registered = Extension::new()
        .with_events(EVENTS)
        .with_events_processor(events)
        .with_telemetry_types(TYPES)
        .with_telemetry_buffering(LogBuffering {
            timeout_ms: 100,
            max_bytes: 262_144,
            max_items: 1000,
        })
        .with_telemetry_port_number(telemetry_port_from_env())
        .with_telemetry_record_type::<serde_json::Value>()
        .with_telemetry_processor(SharedService::new(telemetry))
        .register()
        .await?;
    recorder.record(&Record::Registered {
        extension_id: &registered.extension_id,
        function_name: &registered.function_name,
        function_version: &registered.function_version,
        handler: &registered.handler,
        account_id: registered.account_id.as_deref(),
        events: EVENTS,
    })?;
    println!("{NAME}: registered and subscribed to {TYPES:?}");
    registered.run().await
}
