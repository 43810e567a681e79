"""SQS event source mappings (issue 15), with boto3 against `fleetfn serve` and moto's server
on loopback as SQS (the server polls it with its own credentials):

- 1,000 messages through a Python function that reports every seventh message of a first
  delivery as a batch item failure: the failed ones come back after their visibility timeout
  and are processed then, every message is processed, and the queue ends empty;
- FilterCriteria: messages that match no filter are deleted without an invoke;
- a function error leaves the whole batch in the queue (SQS's own redrive then moves it to a
  dead-letter queue after maxReceiveCount receives);
- the API: states (`Creating` → `Enabled`, `Disabling` → `Disabled`, `Enabling`, `Deleting`),
  disabled mappings do not poll, validation and errors as botocore's model says.

The functions print one line per message they handle; the function logs count them.
"""

from __future__ import annotations

import json
import re

import boto3
import pytest
from botocore.config import Config

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import events as ev
from fleetfn_testkit.moto import Moto

# Every seventh message fails on its first delivery (ReportBatchItemFailures).
PARTIAL_PY = '''
import json

def handler(event, context):
    failures = []
    for r in event["Records"]:
        n = json.loads(r["body"])["n"]
        first = r["attributes"]["ApproximateReceiveCount"] == "1"
        assert r["eventSource"] == "aws:sqs" and r["eventSourceARN"].startswith("arn:aws:sqs:")
        if first and n % 7 == 0:
            failures.append({"itemIdentifier": r["messageId"]})
            print(f"FAILED n={n}")
        else:
            print(f"DONE n={n} receives={r['attributes']['ApproximateReceiveCount']}")
    return {"batchItemFailures": failures}
'''

# Handles every record (prints its body), or fails the whole batch when asked.
PLAIN_PY = '''
import json

def handler(event, context):
    for r in event["Records"]:
        if r["body"] == "explode":
            raise RuntimeError("explode")
        print("GOT " + r["body"])
    return None
'''


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    m = Moto(tmp_path_factory.mktemp("moto") / "moto.log", None)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def server(moto, tmp_path_factory, fleetfn_binary):
    srv = ev.start_server(fleetfn_binary, tmp_path_factory.mktemp("fleetfn-esm"), moto, "esm")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def lam(server):
    return dp.no_retry_client(server.endpoint)


@pytest.fixture(scope="module")
def cp(lam):
    name = h.uniq("esmcp")
    h.create_active_cp(lam, name, VpcConfig={"SubnetIds": list(dp.ZONES), "SecurityGroupIds": list(h.SECURITY_GROUPS)})
    return h.cp_arn_for(name)


@pytest.fixture(scope="module")
def sqs(moto):
    return ev.sqs_client(moto)


def python_function(lam, server, cp, code: str, timeout: int = 10) -> str:
    name = dp.create_lmi_function(lam, cp, "python", name=h.uniq("esm"), timeout=timeout,
                                  zip_bytes=h.make_zip([("app.py", code, 0o644)]))
    dp.publish_active(lam, server.endpoint, name, "python")
    return name


def wait_state(lam, uuid: str, state: str, timeout: float = 30) -> dict:
    return h.poll(lambda: lam.get_event_source_mapping(UUID=uuid), lambda m: m["State"] == state,
                  f"mapping {uuid} {state}", timeout=timeout)


def send(sqs, url: str, bodies: list[str]):
    for i in range(0, len(bodies), 10):
        entries = [{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i:i + 10])]
        resp = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not resp.get("Failed"), resp


def test_1000_messages_with_partial_batch_failures_are_each_processed(lam, server, cp, sqs):
    name = python_function(lam, server, cp, PARTIAL_PY)
    url, arn = ev.new_queue(sqs, VisibilityTimeout="3")
    send(sqs, url, [json.dumps({"n": n}) for n in range(1000)])
    m = lam.create_event_source_mapping(FunctionName=name, EventSourceArn=arn, BatchSize=10,
                                        FunctionResponseTypes=["ReportBatchItemFailures"])
    assert m["State"] == "Creating" and m["ResponseMetadata"]["HTTPStatusCode"] == 202
    wait_state(lam, m["UUID"], "Enabled")

    def progress():
        done = [int(re.search(r"n=(\d+)", x).group(1)) for x in ev.log_messages(server.endpoint, name)
                if x.startswith("DONE")]
        return done
    done = h.poll(progress, lambda d: len(set(d)) == 1000, "all 1000 messages processed", timeout=240)
    failed = [x for x in ev.log_messages(server.endpoint, name) if x.startswith("FAILED")]
    # Every message was processed; the reported failures came back and were processed then.
    assert set(done) == set(range(1000))
    assert len(failed) >= 1000 // 7
    redelivered = [x for x in ev.log_messages(server.endpoint, name)
                   if x.startswith("DONE") and "receives=1" not in x]
    assert {int(re.search(r"n=(\d+)", x).group(1)) for x in redelivered} >= {n for n in range(1000) if n % 7 == 0}
    print(f"\n1000 messages: {len(done)} processed lines ({len(done) - 1000} duplicates), {len(failed)} reported failures")
    h.poll(lambda: ev.queue_count(sqs, url), lambda n: n == 0, "the queue empty", timeout=30)
    got = lam.get_event_source_mapping(UUID=m["UUID"])
    assert got["LastProcessingResult"] in ("OK", "PROBLEM: Function call failed (1 messages left for redelivery)") or \
        got["LastProcessingResult"].startswith("PROBLEM: Function call failed"), got
    lam.delete_event_source_mapping(UUID=m["UUID"])


def test_filter_criteria_drop_what_matches_no_filter(lam, server, cp, sqs):
    name = python_function(lam, server, cp, PLAIN_PY)
    url, arn = ev.new_queue(sqs)
    keep = [json.dumps({"kind": "keep", "i": i}) for i in range(10)]
    drop = [json.dumps({"kind": "drop", "i": i}) for i in range(10)] + ["plain text"]
    send(sqs, url, keep + drop)
    m = lam.create_event_source_mapping(
        FunctionName=name, EventSourceArn=arn, BatchSize=5,
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"kind": ["keep"]}})}]})
    assert json.loads(m["FilterCriteria"]["Filters"][0]["Pattern"]) == {"body": {"kind": ["keep"]}}
    wait_state(lam, m["UUID"], "Enabled")
    h.poll(lambda: ev.queue_count(sqs, url), lambda n: n == 0, "the queue empty", timeout=60)
    got = [x[4:] for x in ev.log_messages(server.endpoint, name) if x.startswith("GOT ")]
    # Every kept message ran and no dropped one did. A message may run twice (delivery is at
    # least once, and moto's threaded server can hand one message to two concurrent pollers:
    # the second poller's deletes then fail with ReceiptHandleIsInvalid).
    assert sorted(set(got)) == sorted(keep), got
    lam.delete_event_source_mapping(UUID=m["UUID"])


def test_a_function_error_leaves_the_batch_for_redelivery(lam, server, cp, sqs):
    name = python_function(lam, server, cp, PLAIN_PY)
    dlq_url, dlq_arn = ev.new_queue(sqs)
    url, arn = ev.new_queue(sqs, VisibilityTimeout="1", RedrivePolicy=json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}))
    send(sqs, url, ["explode"])
    m = lam.create_event_source_mapping(FunctionName=name, EventSourceArn=arn, BatchSize=1)
    wait_state(lam, m["UUID"], "Enabled")
    # Received twice, failed twice, then SQS moves it to its dead-letter queue.
    moved = ev.drain(sqs, dlq_url, 1, 60)
    assert [x["Body"] for x in moved] == ["explode"]
    assert ev.queue_count(sqs, url) == 0
    got = h.poll(lambda: lam.get_event_source_mapping(UUID=m["UUID"]),
                 lambda x: x.get("LastProcessingResult", "").startswith("PROBLEM: Function call failed"),
                 "the failure reported", timeout=10)
    assert got["State"] == "Enabled"
    lam.delete_event_source_mapping(UUID=m["UUID"])


def test_states_disable_enable_delete_and_a_disabled_mapping_does_not_poll(lam, server, cp, sqs):
    name = python_function(lam, server, cp, PLAIN_PY)
    url, arn = ev.new_queue(sqs)
    m = lam.create_event_source_mapping(FunctionName=name, EventSourceArn=arn, Enabled=False)
    assert m["State"] == "Creating"
    wait_state(lam, m["UUID"], "Disabled")
    send(sqs, url, ["while-disabled"])
    import time
    time.sleep(3)  # a disabled mapping must leave the message alone; nothing to wait for
    assert ev.queue_count(sqs, url) == 1
    upd = lam.update_event_source_mapping(UUID=m["UUID"], Enabled=True, BatchSize=3)
    assert upd["State"] == "Enabling" and upd["BatchSize"] == 3
    wait_state(lam, m["UUID"], "Enabled")
    h.poll(lambda: ev.queue_count(sqs, url), lambda n: n == 0, "the queue empty", timeout=60)
    upd = lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False)
    assert upd["State"] == "Disabling"
    wait_state(lam, m["UUID"], "Disabled")
    listed = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert [x["UUID"] for x in listed] == [m["UUID"]]
    assert lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"][0]["UUID"] == m["UUID"]
    d = lam.delete_event_source_mapping(UUID=m["UUID"])
    assert d["State"] == "Deleting"
    h.gone(lambda: lam.get_event_source_mapping(UUID=m["UUID"]), f"mapping {m['UUID']} deleted")


def test_mapping_validation_and_errors(lam, server, cp, sqs):
    name = python_function(lam, server, cp, PLAIN_PY)
    url, arn = ev.new_queue(sqs)
    raw = boto3.client("lambda", endpoint_url=server.endpoint, region_name=h.REGION,
                       aws_access_key_id=h.ACCESS_KEY, aws_secret_access_key=h.SECRET_KEY,
                       config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))
    bad = "InvalidParameterValueException"
    cases = [
        (dict(EventSourceArn="arn:aws:kinesis:us-east-1:123456789012:stream/s"), bad, 400, "SQS"),
        (dict(EventSourceArn=arn, BatchSize=11), bad, 400, "batch window"),
        (dict(EventSourceArn=arn, BatchSize=10001, MaximumBatchingWindowInSeconds=1), "ValidationException", 400, "batchSize"),
        (dict(EventSourceArn=arn + "-x.fifo", BatchSize=11, MaximumBatchingWindowInSeconds=1), bad, 400, "FIFO"),
        (dict(EventSourceArn=arn, StartingPosition="LATEST"), bad, 400, "StartingPosition"),
        (dict(EventSourceArn=arn, FunctionResponseTypes=["Nope"]), "ValidationException", 400, "functionResponseTypes"),
        (dict(EventSourceArn=arn, ScalingConfig={"MaximumConcurrency": 1}), "ValidationException", 400, "maximumConcurrency"),
        (dict(EventSourceArn=arn, FilterCriteria={"Filters": [{"Pattern": "{\"body\": 5}"}]}), bad, 400, "filter"),
        (dict(EventSourceArn=arn, FilterCriteria={"Filters": [{"Pattern": "not json"}]}), bad, 400, "filter"),
    ]
    for kwargs, code, status, mention in cases:
        h.expect_error(raw, lambda: raw.create_event_source_mapping(FunctionName=name, **kwargs), code, status,
                       mentions=[mention])
    h.expect_error(raw, lambda: raw.create_event_source_mapping(FunctionName=h.uniq("missing"), EventSourceArn=arn),
                   "ResourceNotFoundException", 404, mentions=["Function not found"])
    m = lam.create_event_source_mapping(FunctionName=name, EventSourceArn=arn, BatchSize=100,
                                        MaximumBatchingWindowInSeconds=2, ScalingConfig={"MaximumConcurrency": 2})
    assert m["EventSourceMappingArn"].endswith(f":event-source-mapping:{m['UUID']}")
    assert m["FunctionArn"] == h.fn_arn_for(name)
    h.expect_error(raw, lambda: raw.create_event_source_mapping(FunctionName=name, EventSourceArn=arn),
                   "ResourceConflictException", 409, mentions=[m["UUID"]])
    # An update while it is still Creating is refused as AWS does.
    try:
        raw.update_event_source_mapping(UUID=m["UUID"], BatchSize=5)
    except raw.exceptions.ResourceInUseException as err:
        assert "Creating" in str(err) or "Enabling" in str(err)
    wait_state(lam, m["UUID"], "Enabled")
    missing = "00000000-0000-0000-0000-000000000000"
    h.expect_error(raw, lambda: raw.get_event_source_mapping(UUID=missing), "ResourceNotFoundException", 404,
                   mentions=[missing])
    h.expect_error(raw, lambda: raw.get_event_source_mapping(UUID="short"), "ValidationException", 400,
                   mentions=["uUID"])
    page = lam.list_event_source_mappings(MaxItems=1)
    assert len(page["EventSourceMappings"]) == 1
    lam.delete_event_source_mapping(UUID=m["UUID"])
