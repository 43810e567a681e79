"""Capacity helpers (tests/capacity and tests/metrics): the status document, load generators bounded in count and
time, and finding an instance's agent process."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from . import dataplane as dp
from . import api as h

QUALIFIER = "$LATEST.PUBLISHED"


def status(endpoint: str) -> dict:
    resp = h.raw_request(endpoint, "GET", "/fleetfn/v1/status", timeout=10.0)
    assert resp.status_code == 200, f"GET /fleetfn/v1/status -> {resp.status_code}: {resp.text[:300]}"
    return resp.json()


def provider_status(endpoint: str, cp_name: str) -> dict:
    doc = status(endpoint)
    for cp in doc["CapacityProviders"]:
        if cp["Name"] == cp_name:
            return cp
    raise AssertionError(f"capacity provider {cp_name} is not in the status: {[c['Name'] for c in doc['CapacityProviders']]}")


def version_status(endpoint: str, function: str, version: str = QUALIFIER) -> dict:
    doc = status(endpoint)
    for f in doc["Functions"]:
        if f["FunctionName"] == function and f["Version"] == version:
            return f
    raise AssertionError(f"{function}:{version} is not in the status")


def ready_envs(vs: dict) -> list[dict]:
    return [e for e in vs["Environments"] if e["State"] == "Ready" and e.get("Current", True)]


@dataclass
class Outcome:
    started: float       # monotonic
    latency: float       # seconds
    kind: str            # "ok", "throttle", "error"
    detail: Any = None   # payload (ok), error message (throttle/error)
    retry_after: str | None = None


def timed_invoke(lam, name: str, event: Any, qualifier: str | None = None) -> Outcome:
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    t0 = time.monotonic()
    try:
        res = dp.invoke(lam, name, event, **kwargs)
    except ClientError as err:
        lat = time.monotonic() - t0
        code = h.error_code(err)
        msg = err.response.get("Error", {}).get("Message", "")
        hdrs = err.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if code == "TooManyRequestsException":
            reason = err.response.get("Reason") or json.loads(err.response.get("body", "{}") or "{}").get("Reason")
            return Outcome(t0, lat, "throttle", {"message": msg, "reason": reason}, hdrs.get("retry-after"))
        return Outcome(t0, lat, "error", f"{code}: {msg}")
    except Exception as err:  # noqa: BLE001 - every failure is recorded
        return Outcome(t0, time.monotonic() - t0, "error", repr(err)[:300])
    lat = time.monotonic() - t0
    if res.status != 200 or res.function_error:
        return Outcome(t0, lat, "error", repr(res)[:300])
    return Outcome(t0, lat, "ok", res.json)


class ClosedLoad:
    """`threads` threads invoking back to back, bounded by `max_seconds` and `max_invokes`,
    until `stop()`."""

    def __init__(self, lam, name: str, event: Any, threads: int, max_seconds: float, max_invokes: int,
                 pause: float = 0.0):
        self.lam, self.name, self.event = lam, name, event
        self.pause = pause
        self.deadline = time.monotonic() + max_seconds
        self.max_invokes = max_invokes
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        while not self.halt.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if len(self.outcomes) >= self.max_invokes:
                    return
            o = timed_invoke(self.lam, self.name, self.event)
            with self.lock:
                self.outcomes.append(o)
            if self.pause:
                self.halt.wait(self.pause)

    def start(self) -> "ClosedLoad":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> list[Outcome]:
        self.halt.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads), "a load thread did not stop"
        with self.lock:
            return list(self.outcomes)

    def snapshot(self) -> list[Outcome]:
        with self.lock:
            return list(self.outcomes)


class OpenLoad:
    """Open-loop load: invokes at scheduled times (rate in requests/s as a function of the
    elapsed seconds), on a bounded pool of threads; bounded by `max_seconds`."""

    def __init__(self, lam, name: str, event: Any, rate, max_seconds: float, pool: int = 48):
        self.lam, self.name, self.event, self.rate = lam, name, event, rate
        self.max_seconds = max_seconds
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.pool = pool
        self.sem = threading.Semaphore(pool)
        self.skipped = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _one(self):
        try:
            o = timed_invoke(self.lam, self.name, self.event)
            with self.lock:
                self.outcomes.append(o)
        finally:
            self.sem.release()

    def _run(self):
        t0 = time.monotonic()
        next_at = t0
        while not self.halt.is_set():
            now = time.monotonic()
            el = now - t0
            if el >= self.max_seconds:
                return
            if now < next_at:
                time.sleep(min(next_at - now, 0.05))
                continue
            r = max(self.rate(el), 0.1)
            next_at += 1.0 / r
            if self.sem.acquire(blocking=False):
                threading.Thread(target=self._one, daemon=True).start()
            else:
                self.skipped += 1

    def start(self) -> "OpenLoad":
        self.thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self.halt.set()
        self.thread.join(timeout=10)
        # Let the invokes in flight finish (each is bounded by the function timeout).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.sem._value == self.pool:  # noqa: SLF001 - all permits back
                break
            time.sleep(0.05)
        with self.lock:
            return list(self.outcomes)


def agent_pid(instance_id: str) -> int:
    """The pid of the `fleetfn agent` process of an instance (its command line names it)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent" in argv and instance_id.encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no agent process for instance {instance_id}")
