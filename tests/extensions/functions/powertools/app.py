"""Powertools for AWS Lambda (Python) function of the extension tests (handler `app.handler`,
python3.13), with Powertools from a layer (/opt/python): Logger (JSON lines with the request id),
Metrics (one EMF document per invoke in the logs), Tracer with POWERTOOLS_TRACE_DISABLED=true
(no X-Ray daemon) and LambdaFunctionUrlResolver routing function-URL events:

  GET  /hello/<name>?ms=N   sleeps N ms, logs "hello" with `who`, adds metric Hellos=1
  POST /echo                answers the JSON body
  anything else             the resolver's 404

A direct invoke (not a function-URL event) with {"op": "hello", "name", "ms"} runs the same route.
"""

import os
import time

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()      # service from POWERTOOLS_SERVICE_NAME
metrics = Metrics()    # namespace from POWERTOOLS_METRICS_NAMESPACE
tracer = Tracer()      # disabled by POWERTOOLS_TRACE_DISABLED
app = LambdaFunctionUrlResolver()


@tracer.capture_method
def greet(name: str, ms: int) -> dict:
    time.sleep(ms / 1000.0)
    logger.info("hello", extra={"who": name})
    metrics.add_metric(name="Hellos", unit=MetricUnit.Count, value=1)
    return {"hello": name, "pid": os.getpid(), "tracerDisabled": tracer.disabled}


@app.get("/hello/<name>")
def hello(name: str):
    ms = int(app.current_event.get_query_string_value(name="ms", default_value="0"))
    body = greet(name, ms)
    body["requestId"] = app.lambda_context.aws_request_id
    return body


@app.post("/echo")
def echo():
    return {"echo": app.current_event.json_body, "requestId": app.lambda_context.aws_request_id}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event, context):
    if isinstance(event, dict) and event.get("op") == "hello":
        body = greet(event.get("name", "direct"), int(event.get("ms", 0)))
        body["requestId"] = context.aws_request_id
        return body
    return app.resolve(event, context)
