"""The one-second series (`GET /fleetfn/v1/functions/{function}/series`, docs/STATUS.md) that the
web console's live charts draw, and the status fields drawn from it (`InvocationsPerSecond`,
`ThrottlesLastMinuteByReason`): against a real `fleetfn serve` with its data plane, the samples
hold exactly the invokes, function errors and throttles the test made, `Since` keeps the later
samples only, and the API's errors say what to fix.
"""

from __future__ import annotations

import threading
import time

from botocore.exceptions import ClientError

from fleetfn_testkit import api as h
from fleetfn_testkit import capacity as ch
from fleetfn_testkit import dataplane as dp

COLUMNS = ("T", "Invocations", "Errors", "DurationP50Ms", "DurationP99Ms", "CpuUtilization",
           "InFlight", "DesiredEnvironments", "ReadyEnvironments")
REASONS = ("Concurrency", "CPU", "Memory", "Disk")


def series(endpoint: str, name: str, **query):
    return h.raw_request(endpoint, "GET", f"/fleetfn/v1/functions/{name}/series", query=query or None,
                         timeout=10.0)


def series_ok(endpoint: str, name: str, **query) -> dict:
    resp = series(endpoint, name, **query)
    assert resp.status_code == 200, f"series of {name} -> {resp.status_code}: {resp.text[:300]}"
    return resp.json()


def only_version(doc: dict, version: str) -> dict:
    assert [v["Version"] for v in doc["Versions"]] == [version], doc["Versions"]
    return doc["Versions"][0]


def check_shape(doc: dict, name: str) -> None:
    assert doc["FunctionName"] == name and doc["StepSeconds"] == 1, doc
    now = doc["Now"]
    assert abs(now - time.time()) < 5, now
    for v in doc["Versions"]:
        n = len(v["T"])
        for col in COLUMNS:
            assert len(v[col]) == n, (col, v)
        for r in REASONS:
            assert len(v["Throttles"][r]) == n, (r, v)
        assert all(b > a for a, b in zip(v["T"], v["T"][1:])), v["T"]
        assert all(now - 900 < t <= now for t in v["T"]), (now, v["T"])


def test_the_series_holds_exactly_the_invokes_errors_and_throttles_made(lam, endpoint, res):
    cp = res.cp()
    name = res.function(cp, concurrency=2, timeout=30)
    pub = dp.publish_active(lam, endpoint, name, "rust", latest_published=False)
    assert pub.version == "1"
    dp.set_scaling(lam, name, "1", 1, 1)
    dp.wait_single_ready(endpoint, name, "1")

    # What the client saw: a back-to-back invoke may be refused for concurrency when, at that
    # instant, no runtime worker is parked on /next; those count as throttles.
    seen = {"ok": 0, "error": 0, "throttle": 0}

    def call(event: dict) -> None:
        try:
            r = dp.invoke(lam, name, event, Qualifier="1")
        except ClientError as err:
            assert h.error_code(err) == "TooManyRequestsException", err.response
            seen["throttle"] += 1
            return
        seen["error" if r.function_error else "ok"] += 1

    for _ in range(40):
        if seen["ok"] >= 20:
            break
        call({"op": "noop"})
    for _ in range(10):
        if seen["error"] >= 2:
            break
        call({"op": "error"})
    # Both slots held by long invokes, then throttles for concurrency.
    hold = dp.Batch(lam, name, [{"op": "sleep", "ms": 1500}] * 2, Qualifier="1")
    dp.wait_in_flight(endpoint, name, "1", 2, hold)
    for _ in range(3):
        call({"op": "noop"})
    for held in hold.results():
        assert not isinstance(held, ClientError) and held.function_error is None, held
        seen["ok"] += 1
    assert seen["ok"] == 22 and seen["error"] == 2 and seen["throttle"] >= 3, seen
    invocations = seen["ok"] + seen["error"]

    # The scaler's tick (about once a second) moves them into the ring: bounded wait.
    deadline = time.monotonic() + 10
    while True:
        doc = series_ok(endpoint, name, Qualifier="1")
        v = only_version(doc, "1")
        if sum(v["Invocations"]) == invocations or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    check_shape(doc, name)
    assert sum(v["Invocations"]) == invocations, (seen, v)
    assert sum(v["Errors"]) == seen["error"], (seen, v)
    assert sum(v["Throttles"]["Concurrency"]) == seen["throttle"], (seen, v["Throttles"])
    for r in ("CPU", "Memory", "Disk"):
        assert sum(v["Throttles"][r]) == 0, (r, v["Throttles"])
    # A duration where there were invokes, none where there were none; the held invokes took
    # 1.5 s, so some second's p99 is at least about that (within a bucket: 25 %).
    for inv, p50, p99 in zip(v["Invocations"], v["DurationP50Ms"], v["DurationP99Ms"]):
        if inv == 0:
            assert p50 is None and p99 is None, v
        else:
            assert p50 is not None and p99 is not None and 0 < p50 <= p99, v
    assert max(p for p in v["DurationP99Ms"] if p is not None) >= 1500 * 0.75, v["DurationP99Ms"]
    assert max(v["InFlight"]) > 0, v["InFlight"]
    assert v["DesiredEnvironments"][-1] == 1 and v["ReadyEnvironments"][-1] == 1, v
    # The status agrees: the throttles of the last minute by reason.
    vs = ch.version_status(endpoint, name, "1")
    by = vs["ThrottlesLastMinuteByReason"]
    assert by["Concurrency"] == seen["throttle"] and by["Total"] == vs["ThrottlesLastMinute"], (
        seen,
        {k: vs.get(k) for k in ("ThrottlesLastMinute", "ThrottlesLastMinuteByReason", "Throttles", "Invocations", "State")},
        v["T"],
        v["Throttles"]["Concurrency"],
    )
    assert (by["CPU"], by["Memory"], by["Disk"]) == (0, 0, 0), by

    # Unqualified: every version with samples (the one published).
    assert sum(only_version(series_ok(endpoint, name), "1")["Invocations"]) == invocations
    # Since: only the samples after it (the ring gains one a second; the invokes may all have
    # landed in its first, so wait for a second one).
    v = h.poll(lambda: only_version(series_ok(endpoint, name, Qualifier="1"), "1"),
               lambda x: len(x["T"]) >= 2, "two samples in the series", timeout=10)
    cut = v["T"][len(v["T"]) // 2]
    later = only_version(series_ok(endpoint, name, Qualifier="1", Since=str(cut)), "1")
    assert later["T"] and all(t > cut for t in later["T"]), (cut, later["T"])
    assert later["T"][0] == next(t for t in v["T"] if t > cut)
    future = only_version(series_ok(endpoint, name, Since=str(doc["Now"] + 3600)), "1")
    assert future["T"] == [] and future["Invocations"] == [], future


def test_the_status_shows_the_rate_under_load(lam, endpoint, res):
    cp = res.cp()
    name = res.function(cp, concurrency=4, timeout=30)
    dp.publish_active(lam, endpoint, name, "rust")
    stop = threading.Event()
    done = {"n": 0}

    def load():
        end = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < end:
            try:
                dp.invoke(lam, name, {"op": "noop"})
                done["n"] += 1
            except ClientError:
                pass

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        rate = h.poll(lambda: ch.version_status(endpoint, name)["InvocationsPerSecond"],
                      lambda r: r > 0, "InvocationsPerSecond above 0 under load", timeout=15)
    finally:
        stop.set()
        t.join(timeout=30)
    assert not t.is_alive()
    assert done["n"] > 0 and rate > 0, (done, rate)
    # Ten seconds' worth is no more than was sent (one invoke may have ended on the server and
    # not yet on the client).
    assert rate * 10 <= done["n"] + 1, (rate, done)


def test_errors_say_what_to_fix(lam, endpoint, res):
    missing = h.uniq("nosuch")
    resp = series(endpoint, missing)
    assert resp.status_code == 404, resp.text
    assert h.raw_error_code(resp) == "ResourceNotFoundException", resp.text
    assert missing in h.raw_error_message(resp), resp.text

    cp = res.cp()
    name = res.function(cp)
    for bad in ("1h", "-5", "1.5", "2026-12-04T10:00:00Z"):
        resp = series(endpoint, name, Since=bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert h.raw_error_code(resp) == "InvalidParameterValueException", resp.text
        assert "unix time in whole seconds" in h.raw_error_message(resp), resp.text
    # A version that does not exist is not found; a function not yet published has no samples.
    resp = series(endpoint, name, Qualifier="9")
    assert resp.status_code == 404 and h.raw_error_code(resp) == "ResourceNotFoundException", resp.text
    doc = series_ok(endpoint, name)
    check_shape(doc, name)
    assert doc["Versions"] == [], doc
    # Unsigned: refused like the rest of the API.
    resp = h.raw_request(endpoint, "GET", f"/fleetfn/v1/functions/{name}/series", sign=False)
    assert resp.status_code in (401, 403), (resp.status_code, resp.text)


def test_a_server_without_a_data_plane_has_no_samples(tmp_path):
    from fleetfn_testkit.server import FleetfnServer, find_binary

    srv = FleetfnServer(find_binary(), tmp_path / "data", tmp_path / "logs", name="series-no-dp",
                        data_plane=False, extra_args=["--metrics-listen", "off"])
    srv.start()
    try:
        lam = h.make_client(srv.endpoint)
        name = h.uniq("nodp")
        h.create_function(lam, name)
        doc = series_ok(srv.endpoint, name)
        check_shape(doc, name)
        assert doc["Versions"] == [], doc
        assert series(srv.endpoint, h.uniq("nosuch")).status_code == 404
    finally:
        srv.stop()
