"""Asynchronous invocation and event source mapping helpers: a `fleetfn serve` whose AWS
endpoint for destinations and SQS is a moto server (fleetfn_testkit.moto), and SQS queues on
that moto read with boto3."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3

from . import api as h
from .moto import Moto
from .server import FleetfnServer

# The server's own AWS credentials (moto accepts any).
SERVER_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAFLEETFNSERVER", "AWS_SECRET_ACCESS_KEY": "server-secret"}


def start_server(fleetfn_binary: Path, base: Path, moto: Moto, name: str, lease: int = 60) -> FleetfnServer:
    """`fleetfn serve` with moto as its AWS endpoint, function errors retried after 1 s and 2 s."""
    srv = FleetfnServer(
        fleetfn_binary, base / "data", base / "logs", name=name, data_plane=True,
        extra_args=["--aws-endpoint-url", moto.url, "--async-retry-delay", "1",
                    "--async-lease", str(lease), "--metrics-listen", "off"],
        extra_env=SERVER_KEYS)
    return srv.start()


def sqs_client(moto: Moto):
    return boto3.client("sqs", endpoint_url=moto.url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def new_queue(sqs, **attributes: str) -> tuple[str, str]:
    """A new queue on moto: (url, arn)."""
    url = sqs.create_queue(QueueName=h.uniq("q"), Attributes=dict(attributes))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def drain(sqs, url: str, want: int, timeout: float, attributes: bool = False) -> list[dict]:
    """Messages of `url` (deleted as read) until `want` have arrived or `timeout` passes, then
    two more empty polls to catch extras (duplicates)."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    empty_after = 0
    while time.monotonic() < deadline and empty_after < 2:
        kwargs = {"MessageAttributeNames": ["All"]} if attributes else {}
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **kwargs)
        msgs = resp.get("Messages", [])
        for m in msgs:
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if len(got) >= want and not msgs:
            empty_after += 1
    return got


def records(msgs: list[dict]) -> list[dict]:
    return [json.loads(m["Body"]) for m in msgs]


def queue_count(sqs, url: str) -> int:
    """Messages in the queue, visible or in flight."""
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def log_messages(endpoint: str, function: str) -> list[str]:
    """The `message` of every log record of `function` (up to 10,000)."""
    resp = h.raw_request(endpoint, "GET", f"/fleetfn/v1/functions/{function}/logs", query={"Limit": "10000"})
    assert resp.status_code == 200, resp.text
    out = []
    for line in resp.text.splitlines():
        if line.strip():
            out.append(json.loads(line).get("message", ""))
    return out
