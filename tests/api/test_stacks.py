"""Stack records of `fleetfn deploy` on the API (`/fleetfn/v1/stacks`, SigV4 like every route):
create at revision 0, update at the revision read, 412 for a stale writer, list, delete; bad
names, bodies that are not a stack record, and records over 1 MiB refused with AWS error types.
Runs on whichever store the suite uses (SQLite, or PostgreSQL with FLEETFN_TEST_STORE).
"""

from __future__ import annotations

import json

from fleetfn_testkit import api as h

BASE = "/fleetfn/v1/stacks"


def record(name: str, status: str = "CREATE_COMPLETE", **extra) -> str:
    doc = {
        "StackName": name,
        "StackId": f"arn:aws:cloudformation:us-east-1:000000000000:stack/{name}/1",
        "StackStatus": status,
        "LastUpdatedTime": "2026-12-04T22:00:00.000+0000",
        "Resources": {"Fn": {"LogicalId": "Fn", "ResourceType": "AWS::Lambda::Function",
                             "PhysicalId": f"{name}-Fn-abc", "Attributes": {}, "Properties": {},
                             "Status": "CREATE_COMPLETE"}},
        "Outputs": {},
    }
    doc.update(extra)
    return json.dumps(doc)


def put(endpoint, name, body, revision):
    headers = {} if revision is None else {"X-Fleetfn-Stack-Revision": str(revision)}
    return h.raw_request(endpoint, "PUT", f"{BASE}/{name}", body, headers=headers)


def test_stack_record_lifecycle_with_revisions(endpoint):
    name = h.uniq("stk")
    r = h.raw_request(endpoint, "GET", f"{BASE}/{name}")
    assert r.status_code == 404, r.text
    assert h.raw_error_code(r) == "ResourceNotFoundException"
    assert h.raw_error_message(r) == f"Stack with id {name} does not exist"

    r = put(endpoint, name, record(name), 0)
    assert r.status_code == 200, r.text
    stored = r.json()
    assert stored["Revision"] == 1
    assert stored["Resources"]["Fn"]["PhysicalId"] == f"{name}-Fn-abc"
    assert h.raw_request(endpoint, "GET", f"{BASE}/{name}").json() == stored

    # A second creator and a stale writer lose; the record is unchanged.
    for rev in (0, 2):
        r = put(endpoint, name, record(name, "UPDATE_COMPLETE"), rev)
        assert r.status_code == 412, r.text
        assert h.raw_error_code(r) == "PreconditionFailedException"
        assert "revision 1" in h.raw_error_message(r)
    assert h.raw_request(endpoint, "GET", f"{BASE}/{name}").json()["StackStatus"] == "CREATE_COMPLETE"

    r = put(endpoint, name, record(name, "UPDATE_COMPLETE"), 1)
    assert r.status_code == 200, r.text
    assert r.json()["Revision"] == 2

    listed = h.raw_request(endpoint, "GET", BASE).json()["Stacks"]
    mine = [s for s in listed if s["StackName"] == name]
    assert mine == [{"StackName": name, "StackStatus": "UPDATE_COMPLETE",
                     "LastUpdatedTime": "2026-12-04T22:00:00.000+0000", "Revision": 2}]

    r = h.raw_request(endpoint, "DELETE", f"{BASE}/{name}")
    assert r.status_code == 204, r.text
    r = h.raw_request(endpoint, "DELETE", f"{BASE}/{name}")
    assert r.status_code == 404 and h.raw_error_code(r) == "ResourceNotFoundException"
    assert name not in {s["StackName"] for s in h.raw_request(endpoint, "GET", BASE).json()["Stacks"]}


def test_delete_with_a_stale_revision_is_refused(endpoint):
    name = h.uniq("stk")
    assert put(endpoint, name, record(name), 0).status_code == 200
    r = h.raw_request(endpoint, "DELETE", f"{BASE}/{name}", headers={"X-Fleetfn-Stack-Revision": "5"})
    assert r.status_code == 412 and h.raw_error_code(r) == "PreconditionFailedException"
    r = h.raw_request(endpoint, "DELETE", f"{BASE}/{name}", headers={"X-Fleetfn-Stack-Revision": "1"})
    assert r.status_code == 204, r.text


def test_bad_stack_writes_are_refused_with_aws_error_types(endpoint):
    name = h.uniq("stk")
    cases = [
        # (path name, body, revision header, status, error type, words in the message)
        ("1bad", record("1bad"), 0, 400, "ValidationException", "[a-zA-Z][-a-zA-Z0-9]{0,127}"),
        ("bad_name", record("bad_name"), 0, 400, "ValidationException", "stackName"),
        ("a" * 129, record("a" * 129), 0, 400, "ValidationException", "stackName"),
        (name, "[1, 2]", 0, 400, "ValidationException", "JSON object"),
        (name, "{not json", 0, 400, "ValidationException", "not valid JSON"),
        (name, json.dumps({"StackName": name}), 0, 400, "ValidationException", "StackStatus"),
        (name, record("someone-else"), 0, 400, "ValidationException", "does not match"),
        (name, record(name), None, 400, "ValidationException", "X-Fleetfn-Stack-Revision is required"),
        (name, record(name), "one", 400, "ValidationException", "X-Fleetfn-Stack-Revision"),
        (name, record(name, TemplateBody="x" * (1 << 20)), 0, 413, "RequestEntityTooLargeException",
         "at most 1048576 bytes"),
    ]
    for path_name, body, rev, status, code, words in cases:
        r = put(endpoint, path_name, body, rev)
        assert (r.status_code, h.raw_error_code(r)) == (status, code), (path_name, rev, r.text[:300])
        assert words in h.raw_error_message(r), h.raw_error_message(r)
    r = h.raw_request(endpoint, "GET", f"{BASE}/{name}")
    assert r.status_code == 404, "a refused write stored something"


def test_stacks_need_a_signature(endpoint):
    r = h.raw_request(endpoint, "GET", BASE, sign=False)
    assert r.status_code == 403, r.text
    r = h.raw_request(endpoint, "PUT", f"{BASE}/unsigned", record("unsigned"), sign=False,
                      headers={"X-Fleetfn-Stack-Revision": "0"})
    assert r.status_code == 403, r.text
