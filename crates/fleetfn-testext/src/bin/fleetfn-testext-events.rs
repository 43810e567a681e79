//! `fleetfn-testext-events`: an external extension on `lambda-extension`'s events processor.
//! Registers for `FLEETFN_TESTEXT_EVENTS` (default `SHUTDOWN`, all LMI delivers) and records the register
//! answer and every event to `<dir>/fleetfn-testext-events.jsonl` (see the crate docs).

use std::sync::Arc;

use fleetfn_testext::{Record, Recorder, events_from_env};
use lambda_extension::{Error, Extension, LambdaEvent, NextEvent, service_fn};

const NAME: &str = "fleetfn-testext-events";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let recorder = Arc::new(Recorder::from_env(NAME)?);
    let events = events_from_env();
    let events: Vec<&str> = events.iter().map(String::as_str).collect();

    let processor = {
        let recorder = Arc::clone(&recorder);
        service_fn(move |event: LambdaEvent| {
            let recorder = Arc::clone(&recorder);
            async move {
                match &event.next {
                    NextEvent::Invoke(e) => recorder.record(&Record::Invoke {
                        request_id: &e.request_id,
                        deadline_ms: e.deadline_ms,
                        invoked_function_arn: &e.invoked_function_arn,
                        tracing_type: &e.tracing.r#type,
                        tracing_value: &e.tracing.value,
                    })?,
                    NextEvent::Shutdown(e) => {
                        println!("{NAME}: SHUTDOWN {}", e.shutdown_reason);
                        recorder.record(&Record::Shutdown {
                            shutdown_reason: &e.shutdown_reason,
                            deadline_ms: e.deadline_ms,
                        })?
                    }
                }
                Ok::<(), Error>(())
            }
        })
    };

    let registered = Extension::new()
        .with_events(&events)
        .with_events_processor(processor)
        .register()
        .await?;
    recorder.record(&Record::Registered {
        extension_id: &registered.extension_id,
        function_name: &registered.function_name,
        function_version: &registered.function_version,
        handler: &registered.handler,
        account_id: registered.account_id.as_deref(),
        events: &events,
    })?;
    println!("{NAME}: registered for {events:?}");
    registered.run().await
}
