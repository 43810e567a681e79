"""Asynchronous invocation (issue 15), with boto3 against `fleetfn serve` and moto's server on
loopback as the SQS endpoint of destinations and dead-letter queues:

- `InvocationType=Event` answers 202 with a request id once the event is stored, and the event
  runs once: its OnSuccess record (AWS's shape) reaches an SQS queue with that request id;
- a function error is retried exactly `MaximumRetryAttempts` times, then the OnFailure record
  says `RetriesExhausted` with the invoke count and the function's error;
- an OnSuccess destination that is another function gets the record as its event;
- events throttled by a one-environment, one-slot function are delivered once capacity returns
  or, past `MaximumEventAgeInSeconds`, go to the dead-letter queue; none is lost, none is both;
- `kill -9` of the server with 1,000 events stored and some in flight: after a restart every
  event is delivered at least once (counted by request id; duplicates reported);
- the event invoke config operations and their errors, oversized payloads, `InvokeAsync`.

The server retries function errors after 1 s and 2 s (`--async-retry-delay 1`) so the suite
does not wait AWS's minutes.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import events as ev
from fleetfn_testkit.moto import Moto

ECHO_PY = "def handler(event, context):\n    return event\n"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    m = Moto(tmp_path_factory.mktemp("moto") / "moto.log", None)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def server(moto, tmp_path_factory, fleetfn_binary):
    srv = ev.start_server(fleetfn_binary, tmp_path_factory.mktemp("fleetfn-async"), moto, "async")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alam(server):
    return dp.no_retry_client(server.endpoint)


@pytest.fixture(scope="module")
def acp(alam):
    name = h.uniq("asynccp")
    h.create_active_cp(alam, name, VpcConfig={"SubnetIds": list(dp.ZONES), "SecurityGroupIds": list(h.SECURITY_GROUPS)})
    return h.cp_arn_for(name)


@pytest.fixture(scope="module")
def sqs(moto):
    return ev.sqs_client(moto)


new_queue, drain, records = ev.new_queue, ev.drain, ev.records


def function(alam, server, acp, concurrency: int = 8, timeout: int = 3) -> str:
    name = dp.create_lmi_function(alam, acp, "rust", name=h.uniq("async"), concurrency=concurrency, timeout=timeout)
    dp.publish_active(alam, server.endpoint, name, "rust")
    return name


def invoke_event(alam, name: str, event: dict, **kwargs) -> str:
    resp = alam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(event).encode(), **kwargs)
    assert resp["StatusCode"] == 202, resp
    assert resp["Payload"].read() == b""
    rid = resp["ResponseMetadata"]["RequestId"]
    assert rid and rid == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    return rid


# ---------------------------------------------------------------------------------------------
# Throttled events: started by the first test (they need over a minute), checked by the last.


@pytest.fixture(scope="module")
def throttled(alam, server, acp, sqs):
    """90 events of 2.5 s each at a function capped at 3 environments of one slot each, whose
    events live 60 s: some run, the rest expire into the dead-letter queue. Started by the first
    test (it takes over a minute), checked by the last."""
    name = dp.create_lmi_function(alam, acp, "rust", name=h.uniq("async-throttled"), concurrency=1)
    ok_url, ok_arn = new_queue(sqs)
    dlq_url, dlq_arn = new_queue(sqs)
    alam.update_function_configuration(FunctionName=name, DeadLetterConfig={"TargetArn": dlq_arn})
    h.wait_function_settled(alam, name)
    dp.publish_active(alam, server.endpoint, name, "rust")
    # No scale-out: three slots in all.
    dp.set_scaling(alam, name, "$LATEST.PUBLISHED", 3, 3)
    alam.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=60,
                                          DestinationConfig={"OnSuccess": {"Destination": ok_arn}})
    sent = {invoke_event(alam, name, {"op": "sleep", "ms": 2500, "i": i}) for i in range(90)}
    return {"name": name, "sent": sent, "ok": ok_url, "dlq": dlq_url, "at": time.monotonic()}


# ---------------------------------------------------------------------------------------------


def test_an_event_is_stored_answered_202_and_runs_once(throttled, alam, server, acp, sqs):
    name = function(alam, server, acp)
    url, arn = new_queue(sqs)
    cfg = alam.put_function_event_invoke_config(FunctionName=name,
                                                DestinationConfig={"OnSuccess": {"Destination": arn}})
    assert cfg["FunctionArn"] == h.fn_arn_for(name, "$LATEST")
    assert cfg["DestinationConfig"] == {"OnSuccess": {"Destination": arn}, "OnFailure": {}}
    sent = {invoke_event(alam, name, {"op": "echo", "i": i}): i for i in range(20)}
    recs = records(drain(sqs, url, 20, 60))
    by_id = {r["requestContext"]["requestId"]: r for r in recs}
    assert len(recs) == 20 and set(by_id) == set(sent), recs
    for rid, r in by_id.items():
        assert r["version"] == "1.0"
        assert r["requestContext"] == {"requestId": rid, "functionArn": h.fn_arn_for(name, "$LATEST"),
                                       "condition": "Success", "approximateInvokeCount": 1}
        assert r["requestPayload"] == {"op": "echo", "i": sent[rid]}
        assert r["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST.PUBLISHED"}
        assert r["responsePayload"] == {"op": "echo", "i": sent[rid]}
        assert r["timestamp"].endswith("Z") and len(r["timestamp"]) == 24


@pytest.mark.parametrize("retries", [0, 2])
def test_function_errors_are_retried_exactly_then_recorded_on_failure(retries, alam, server, acp, sqs):
    name = function(alam, server, acp)
    url, arn = new_queue(sqs)
    alam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=retries,
                                          DestinationConfig={"OnFailure": {"Destination": arn}})
    rid = invoke_event(alam, name, {"op": "error"})
    started = time.monotonic()
    recs = records(drain(sqs, url, 1, 60))
    assert len(recs) == 1, recs
    r = recs[0]
    assert r["requestContext"] == {"requestId": rid, "functionArn": h.fn_arn_for(name, "$LATEST"),
                                   "condition": "RetriesExhausted", "approximateInvokeCount": retries + 1}
    assert r["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST.PUBLISHED", "functionError": "Unhandled"}
    assert r["responsePayload"]["errorType"] == "TestFnError", r
    assert r["requestPayload"] == {"op": "error"}
    # Retries wait 1 s, then 2 s (--async-retry-delay 1).
    if retries == 2:
        assert time.monotonic() - started >= 3.0
    # The function ran exactly that many times: one START per attempt in its log.
    def starts():
        log = h.raw_request(server.endpoint, "GET", f"/fleetfn/v1/functions/{name}/logs").text
        return log.count(f"START RequestId: {rid}")
    h.poll(starts, lambda n: n >= retries + 1, f"{retries + 1} START lines of {rid}", timeout=15)
    assert starts() == retries + 1


def test_on_success_to_another_function_passes_the_record(alam, server, acp, sqs):
    first = function(alam, server, acp)
    # A Python function that returns whatever event it gets (the record).
    second = dp.create_lmi_function(alam, acp, "python", name=h.uniq("async-py"),
                                    zip_bytes=h.make_zip([("app.py", ECHO_PY, 0o644)]))
    dp.publish_active(alam, server.endpoint, second, "python")
    url, arn = new_queue(sqs)
    alam.put_function_event_invoke_config(
        FunctionName=first, DestinationConfig={"OnSuccess": {"Destination": h.fn_arn_for(second)}})
    alam.put_function_event_invoke_config(FunctionName=second, DestinationConfig={"OnSuccess": {"Destination": arn}})
    rid = invoke_event(alam, first, {"op": "echo", "hop": 1})
    recs = records(drain(sqs, url, 1, 60))
    assert len(recs) == 1, recs
    outer = recs[0]
    assert outer["requestContext"]["functionArn"] == h.fn_arn_for(second, "$LATEST")
    inner = outer["requestPayload"]
    assert inner["requestContext"]["requestId"] == rid
    assert inner["requestContext"]["functionArn"] == h.fn_arn_for(first, "$LATEST")
    assert inner["responsePayload"] == {"op": "echo", "hop": 1}
    # The second function echoed the first one's record back.
    assert outer["responsePayload"] == inner


def test_sns_and_eventbridge_destinations_and_an_sns_dead_letter_topic(alam, server, acp, sqs, moto):
    """OnSuccess to an EventBridge bus (a rule forwards to a queue), OnFailure and the dead-letter
    queue to SNS topics (each subscribed by a queue)."""
    sns = boto3.client("sns", endpoint_url=moto.url, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    events = boto3.client("events", endpoint_url=moto.url, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")

    def topic_into_queue():
        url, arn = new_queue(sqs)
        topic = sns.create_topic(Name=h.uniq("t"))["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                      Attributes={"RawMessageDelivery": "true"})
        return topic, url

    failure_topic, failure_url = topic_into_queue()
    dead_topic, dead_url = topic_into_queue()
    bus = events.create_event_bus(Name=h.uniq("bus"))["EventBusArn"]
    ok_url, ok_arn = new_queue(sqs)
    rule = h.uniq("rule")
    events.put_rule(Name=rule, EventBusName=bus.split("/")[-1],
                    EventPattern=json.dumps({"source": ["lambda"]}))
    events.put_targets(Rule=rule, EventBusName=bus.split("/")[-1], Targets=[{"Id": "q", "Arn": ok_arn}])

    name = dp.create_lmi_function(alam, acp, "rust", name=h.uniq("async-dest"))
    alam.update_function_configuration(FunctionName=name, DeadLetterConfig={"TargetArn": dead_topic})
    h.wait_function_settled(alam, name)
    dp.publish_active(alam, server.endpoint, name, "rust")
    alam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0, DestinationConfig={
        "OnSuccess": {"Destination": bus}, "OnFailure": {"Destination": failure_topic}})
    ok_id = invoke_event(alam, name, {"op": "echo", "to": "bus"})
    bad_id = invoke_event(alam, name, {"op": "error"})

    delivered = records(drain(sqs, ok_url, 1, 60))
    assert len(delivered) == 1, delivered
    ev_doc = delivered[0]
    assert ev_doc["source"] == "lambda"
    assert ev_doc["detail-type"] == "Lambda Function Invocation Result - Success"
    assert ev_doc["resources"] == [h.fn_arn_for(name, "$LATEST")]
    assert ev_doc["detail"]["requestContext"]["requestId"] == ok_id
    assert ev_doc["detail"]["responsePayload"] == {"op": "echo", "to": "bus"}

    failed = records(drain(sqs, failure_url, 1, 60))
    assert len(failed) == 1, failed
    assert failed[0]["requestContext"]["requestId"] == bad_id
    assert failed[0]["requestContext"]["condition"] == "RetriesExhausted"

    dead = drain(sqs, dead_url, 1, 60)
    assert [json.loads(m["Body"]) for m in dead] == [{"op": "error"}]


def test_event_invoke_config_operations_and_errors(alam, server, acp):
    name = function(alam, server, acp)
    # Without client-side checks, so out-of-range values reach the server.
    lam = boto3.client("lambda", endpoint_url=server.endpoint, region_name=h.REGION,
                       aws_access_key_id=h.ACCESS_KEY, aws_secret_access_key=h.SECRET_KEY,
                       config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))
    h.expect_error(lam, lambda: lam.get_function_event_invoke_config(FunctionName=name),
                   "ResourceNotFoundException", 404, mentions=["EventInvokeConfig"])
    put = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    assert put["MaximumRetryAttempts"] == 1 and "MaximumEventAgeInSeconds" not in put
    upd = lam.update_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=120)
    assert (upd["MaximumRetryAttempts"], upd["MaximumEventAgeInSeconds"]) == (1, 120)
    assert upd["LastModified"].year >= 2026
    # Put replaces the whole config.
    put = lam.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=300)
    assert "MaximumRetryAttempts" not in put and put["MaximumEventAgeInSeconds"] == 300
    lam.put_function_event_invoke_config(FunctionName=name, Qualifier="$LATEST.PUBLISHED", MaximumRetryAttempts=0)
    got = lam.get_function_event_invoke_config(FunctionName=name, Qualifier="$LATEST.PUBLISHED")
    assert got["FunctionArn"] == h.fn_arn_for(name, "$LATEST.PUBLISHED") and got["MaximumRetryAttempts"] == 0
    listed = lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert sorted(c["FunctionArn"] for c in listed) == sorted([h.fn_arn_for(name, "$LATEST"), h.fn_arn_for(name, "$LATEST.PUBLISHED")])
    page = lam.list_function_event_invoke_configs(FunctionName=name, MaxItems=1)
    assert len(page["FunctionEventInvokeConfigs"]) == 1 and page["NextMarker"]
    rest = lam.list_function_event_invoke_configs(FunctionName=name, Marker=page["NextMarker"])
    assert len(rest["FunctionEventInvokeConfigs"]) == 1 and "NextMarker" not in rest
    for bad, member in [({"MaximumRetryAttempts": 3}, "maximumRetryAttempts"),
                        ({"MaximumRetryAttempts": -1}, "maximumRetryAttempts"),
                        ({"MaximumEventAgeInSeconds": 59}, "maximumEventAgeInSeconds"),
                        ({"MaximumEventAgeInSeconds": 21601}, "maximumEventAgeInSeconds")]:
        h.expect_error(lam, lambda: lam.put_function_event_invoke_config(FunctionName=name, **bad),
                       "ValidationException", 400, mentions=[member])
    for arn in ["arn:aws:s3:::bucket", "arn:aws:dynamodb:us-east-1:123456789012:table/t",
                "arn:aws:sqs:us-east-1:123:short-account", "not-an-arn"]:
        h.expect_error(lam, lambda: lam.put_function_event_invoke_config(
            FunctionName=name, DestinationConfig={"OnFailure": {"Destination": arn}}),
            "InvalidParameterValueException", 400, mentions=[arn])
    h.expect_error(lam, lambda: lam.update_function_configuration(
        FunctionName=name, DeadLetterConfig={"TargetArn": "arn:aws:events:us-east-1:123456789012:event-bus/b"}),
        "InvalidParameterValueException", 400, mentions=["SQS queue or SNS topic"])
    h.expect_error(lam, lambda: lam.put_function_event_invoke_config(
        FunctionName=name, Qualifier="nope", MaximumRetryAttempts=1), "ResourceNotFoundException", 404, mentions=["nope"])
    missing = h.uniq("missing")
    h.expect_error(lam, lambda: lam.put_function_event_invoke_config(FunctionName=missing, MaximumRetryAttempts=1),
                   "ResourceNotFoundException", 404, mentions=[missing])
    lam.delete_function_event_invoke_config(FunctionName=name, Qualifier="$LATEST.PUBLISHED")
    h.expect_error(lam, lambda: lam.delete_function_event_invoke_config(FunctionName=name, Qualifier="$LATEST.PUBLISHED"),
                   "ResourceNotFoundException", 404, mentions=["EventInvokeConfig"])
    # Oversized and unknown-function events are refused before anything is stored.
    h.expect_error(alam, lambda: alam.invoke(FunctionName=name, InvocationType="Event",
                                             Payload=b'"' + b"x" * 1_048_600 + b'"'),
                   "RequestTooLargeException", 413, mentions=["1048576"])
    h.expect_error(alam, lambda: alam.invoke(FunctionName=missing, InvocationType="Event", Payload=b"{}"),
                   "ResourceNotFoundException", 404, mentions=[missing])
    # The legacy InvokeAsync.
    resp = lam.invoke_async(FunctionName=name, InvokeArgs=b'{"op":"noop"}')
    assert resp["Status"] == 202
    # Deleting the function deletes its configs: a new function of the same name has none.
    alam.delete_function(FunctionName=name)
    h.gone(lambda: alam.get_function(FunctionName=name), f"function {name} deleted")
    dp.create_lmi_function(alam, acp, "rust", name=name)
    h.expect_error(lam, lambda: lam.get_function_event_invoke_config(FunctionName=name),
                   "ResourceNotFoundException", 404, mentions=["EventInvokeConfig"])
    assert lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"] == []
    alam.delete_function(FunctionName=name)


def test_queue_depth_in_status(alam, server):
    doc = h.raw_request(server.endpoint, "GET", "/fleetfn/v1/status").json()
    q = doc["AsyncQueue"]
    assert q["Depth"] >= 0 and q["InFlight"] >= 0


# ---------------------------------------------------------------------------------------------


def test_kill_9_with_1000_events_stored_loses_none(moto, sqs, tmp_path_factory, fleetfn_binary):
    base = tmp_path_factory.mktemp("fleetfn-async-kill")
    srv = ev.start_server(fleetfn_binary, base, moto, "async-kill", lease=5)
    try:
        lam = dp.no_retry_client(srv.endpoint)
        cp = h.uniq("killcp")
        h.create_active_cp(lam, cp, VpcConfig={"SubnetIds": list(dp.ZONES), "SecurityGroupIds": list(h.SECURITY_GROUPS)})
        name = function(lam, srv, h.cp_arn_for(cp))
        url, arn = new_queue(sqs)
        lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": arn}})
        lock = threading.Lock()
        sent: set[str] = set()

        def send(i: int):
            rid = invoke_event(lam, name, {"op": "sleep", "ms": 20, "i": i})
            with lock:
                sent.add(rid)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, range(1000)))
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(timeout=10)
        srv.proc = None
        before = drain(sqs, url, 0, 2)
        srv.start()
        after = drain(sqs, url, 1000 - len(before), 180)
        ids = [r["requestContext"]["requestId"] for r in records(before + after)]
        missing = sent - set(ids)
        dups = len(ids) - len(set(ids))
        print(f"\nkill -9 with 1000 stored: {len(before)} delivered before the kill was noticed, "
              f"{len(set(ids))} distinct delivered, {dups} duplicates")
        assert not missing, f"{len(missing)} events lost"
    finally:
        if srv.proc is not None:
            srv.stop()


def test_throttled_events_run_when_capacity_returns_or_expire_into_the_dead_letter_queue(throttled, sqs):
    # Every event is decided by about 60 s after it was sent (age) plus one 2.5 s run.
    time.sleep(max(0.0, 70 - (time.monotonic() - throttled["at"])))
    ok = records(drain(sqs, throttled["ok"], 0, 5))
    dead = drain(sqs, throttled["dlq"], len(throttled["sent"]) - len(ok), 60, attributes=True)
    ok_ids = [r["requestContext"]["requestId"] for r in ok]
    dead_ids = [m["MessageAttributes"]["RequestID"]["StringValue"] for m in dead]
    assert len(ok_ids) == len(set(ok_ids)) and len(dead_ids) == len(set(dead_ids)), "a duplicate"
    assert set(ok_ids).isdisjoint(dead_ids), "an event both ran and expired"
    assert set(ok_ids) | set(dead_ids) == throttled["sent"], "an event was lost"
    # Three slots of 2.5 s run at most 3 x 24 (+ the 3 in flight) within the events' 60 s.
    assert 1 <= len(ok_ids) <= 75 and len(dead_ids) >= 15, (len(ok_ids), len(dead_ids))
    for m in dead:
        attrs = m["MessageAttributes"]
        assert attrs["ErrorCode"]["StringValue"] == "200"
        assert json.loads(m["Body"])["op"] == "sleep"
    for r in ok:
        assert r["requestContext"]["condition"] == "Success"
