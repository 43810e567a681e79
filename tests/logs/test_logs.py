"""Function logs: `fleetfn logs` (the real binary) and `GET /fleetfn/v1/functions/{name}/logs`
against a real `fleetfn serve`: follow latency, filters, bad input, lossy UTF-8 and long lines,
and a flooding function held under the cap without slowing another function."""

from __future__ import annotations

import json
import queue
import statistics
import threading
import time
from pathlib import Path

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp

LOGS_PATH = "/fleetfn/v1/functions/{}/logs"
PLATFORM_TYPES = {"platform.start", "platform.runtimeDone", "platform.report"}


def records(cli, function: str, *args: str) -> list[dict]:
    res = cli.run(function, "--json", "--since", "10m", *args)
    assert res.returncode == 0, f"fleetfn logs failed ({res.returncode}): {res.stderr}"
    return [json.loads(line) for line in res.stdout.splitlines() if line]


def wait_records(cli, function: str, until, desc: str, *args: str, timeout: float = 15.0) -> list[dict]:
    """`fleetfn logs --json` until `until(records)` holds (the writer batches for ~20 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = records(cli, function, *args)
        if until(recs):
            return recs
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {desc}; got {len(recs)} records: "
                        f"{[r.get('message', '')[:80] for r in recs[-20:]]}")
        time.sleep(0.1)


def messages(recs: list[dict]) -> list[str]:
    return [r.get("message") if isinstance(r.get("message"), str) else "" for r in recs]


def of_request(recs: list[dict], request_id: str) -> list[dict]:
    return [r for r in recs if r.get("requestId") == request_id]


class LineReader:
    """Reads a subprocess's stdout on a thread; every line with the monotonic time it arrived."""

    def __init__(self, proc):
        self.proc = proc
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[tuple[float, str]] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, timeout: float) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        for at, line in self.seen:
            if text in line:
                return at, line
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"`fleetfn logs --follow` did not print {text!r} within {timeout:.0f}s; "
                            f"last lines: {[l[:100] for _, l in self.seen[-10:]]}")
            try:
                at, line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append((at, line))
            if text in line:
                return at, line


def stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            proc.kill()
            proc.wait(timeout=5)


def test_follow_shows_a_printed_line_within_a_second(cli, lam, printer):
    proc = cli.start(printer, "--follow", "--since", "1m")
    try:
        reader = LineReader(proc)
        # The follow is up once it shows a line printed now.
        warm = h.uniq("warm")
        dp.invoke_ok(lam, printer, {"op": "print", "text": warm})
        reader.wait_for(warm, timeout=20)
        for _ in range(3):
            marker = h.uniq("follow")
            res = dp.invoke(lam, printer, {"op": "print", "text": marker})
            returned = time.monotonic()
            assert res.status == 200 and res.function_error is None, res
            at, line = reader.wait_for(marker, timeout=10)
            assert at - returned < 1.0, f"{marker} showed {at - returned:.3f}s after the invoke returned"
            # Human form: timestamp level requestId message.
            ts, level, rid, message = line.split(" ", 3)
            assert ts.endswith("Z") and level == "INFO" and rid == res.request_id and message == marker, line
        assert proc.poll() is None, f"the follow exited: {proc.stderr.read()}"
    finally:
        stop(proc)


def test_follow_continues_across_renewed_requests(cli, lam, printer):
    """The server ends each follow after `Wait`; the command renews it from the cursor, so no line
    is lost or repeated."""
    proc = cli.start(printer, "--follow", "--since", "1s", "--follow-wait", "1", "--json")
    try:
        reader = LineReader(proc)
        warm = h.uniq("renew-warm")
        dp.invoke_ok(lam, printer, {"op": "print", "text": warm})
        reader.wait_for(warm, timeout=20)
        markers = [h.uniq(f"renew{i}") for i in range(4)]
        for i, marker in enumerate(markers):
            if i:
                time.sleep(0.7)  # spread the lines over several 1 s follow requests
            dp.invoke_ok(lam, printer, {"op": "print", "text": marker})
        for marker in markers:
            reader.wait_for(marker, timeout=10)
        # Lines of later requests would have arrived by now; none may repeat.
        time.sleep(1.5)
        while not reader.lines.empty():
            reader.seen.append(reader.lines.get())
        printed = [json.loads(line)["message"] for _, line in reader.seen]
        for marker in [warm, *markers]:
            assert printed.count(marker) == 1, (marker, printed)
        assert proc.poll() is None, f"the follow exited: {proc.stderr.read()}"
    finally:
        stop(proc)


def test_request_id_filter_and_platform_records(cli, lam, printer):
    a, b = h.uniq("req-a"), h.uniq("req-b")
    ra = dp.invoke(lam, printer, {"op": "print", "text": a, "lines": 2})
    rb = dp.invoke(lam, printer, {"op": "print", "text": b, "stream": "stderr"})
    assert ra.request_id and rb.request_id and ra.request_id != rb.request_id

    def complete(recs):
        return messages(recs).count(a) == 2 and "platform.report" in {r.get("type") for r in recs}

    recs = wait_records(cli, printer, complete, f"the records of {ra.request_id}", "--request-id", ra.request_id)
    assert all(r.get("requestId") == ra.request_id for r in recs), recs
    assert b not in messages(recs)
    assert PLATFORM_TYPES <= {r.get("type") for r in recs}
    line = next(r for r in recs if r.get("message") == a)
    assert line["stream"] == "stdout" and line["level"] == "INFO"
    other = wait_records(cli, printer, lambda rs: b in messages(rs), "the stderr line", "--request-id", rb.request_id)
    assert next(r for r in other if r.get("message") == b)["stream"] == "stderr"
    # Timestamp order across the function's environments.
    everything = records(cli, printer)
    stamps = [r["timestamp"] for r in everything if r.get("timestamp", "").endswith("Z") and len(r["timestamp"]) == 24]
    assert stamps == sorted(stamps)


def test_json_records_keep_the_runtimes_fields(cli, lam, printer):
    text = h.uniq("json-log")
    res = dp.invoke(lam, printer, {"op": "log", "level": "WARNING", "text": text})
    assert res.status == 200 and res.function_error is None, res
    recs = wait_records(cli, printer, lambda rs: text in messages(rs), "the logging record",
                        "--request-id", res.request_id)
    rec = next(r for r in recs if r.get("message") == text)
    assert rec["requestId"] == res.request_id
    assert rec["level"] in ("WARN", "WARNING"), rec
    assert rec["timestamp"][:4].isdigit(), rec


def test_non_utf8_and_a_1mb_line_are_stored_safely(cli, lam, printer):
    res = dp.invoke(lam, printer, {"op": "raw", "hex": (b"bad \xff\xfe bytes \x00 end").hex()})
    assert res.status == 200 and res.function_error is None, res
    recs = wait_records(cli, printer, lambda rs: any("bytes" in m for m in messages(rs)), "the non-UTF-8 line",
                        "--request-id", res.request_id)
    assert "bad \ufffd\ufffd bytes \x00 end" in messages(recs)

    res = dp.invoke(lam, printer, {"op": "line", "char": "L", "bytes": 1_000_000})
    assert res.status == 200 and res.function_error is None, res

    def whole(rs):
        return sum(len(m) for m in messages(rs) if m.startswith("L")) >= 1_000_000

    recs = wait_records(cli, printer, whole, "the 1 MB line", "--request-id", res.request_id)
    pieces = [r for r in recs if messages([r])[0].startswith("L")]
    assert "".join(r["message"] for r in pieces) == "L" * 1_000_000
    assert all(len(r["message"]) <= 256 * 1024 for r in pieces)
    assert [bool(r.get("partial")) for r in pieces] == [True] * (len(pieces) - 1) + [False]
    # The human form prints them too.
    out = cli.run(printer, "--request-id", res.request_id, "--since", "10m")
    assert out.returncode == 0 and out.stdout.count("\n") >= len(pieces), out.stderr


def test_bad_input_is_refused_clearly(cli, server, printer):
    for since in ("yesterday", "10", "5 minutes", "2026-13-01"):
        res = cli.run(printer, "--since", since)
        assert res.returncode == 1, (since, res.stdout, res.stderr)
        assert "--since" in res.stderr and "10m" in res.stderr, res.stderr
    res = cli.run(h.uniq("no-such-function"))
    assert res.returncode == 1 and "ResourceNotFoundException" in res.stderr, res.stderr
    res = cli.run(printer, "--qualifier", "999")
    assert res.returncode == 1 and "ResourceNotFoundException" in res.stderr, res.stderr

    path = LOGS_PATH.format(printer)
    for query, hint in [({"Since": "10m"}, "RFC 3339"), ({"Limit": "0"}, "from 1 to 10000"),
                        ({"Wait": "100000", "Follow": "true"}, "from 1 to 900"), ({"Cursor": "garbage!"}, "cursor"),
                        ({"Follow": "maybe"}, "true or false")]:
        resp = h.raw_request(server.endpoint, "GET", path, query=query, timeout=10)
        assert resp.status_code == 400, (query, resp.status_code, resp.text)
        assert h.raw_error_code(resp) == "InvalidParameterValueException", resp.text
        assert hint in h.raw_error_message(resp), (query, resp.text)
    resp = h.raw_request(server.endpoint, "GET", LOGS_PATH.format(h.uniq("nope")), timeout=10)
    assert resp.status_code == 404 and h.raw_error_code(resp) == "ResourceNotFoundException", resp.text
    resp = h.raw_request(server.endpoint, "GET", path, sign=False, timeout=10)
    assert resp.status_code in (401, 403), resp.text


def test_api_pages_and_bounded_follow(server, lam, printer):
    marker = h.uniq("page")
    res = dp.invoke(lam, printer, {"op": "print", "text": marker, "lines": 3})
    path = LOGS_PATH.format(printer)
    base = {"RequestId": res.request_id}

    def fetch(**extra):
        resp = h.raw_request(server.endpoint, "GET", path, query={**base, **extra}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "application/x-ndjson"
        return resp, [json.loads(line) for line in resp.text.splitlines() if line]

    h.poll(lambda: fetch()[1], lambda recs: len(recs) >= 6, "START, 3 lines, END, REPORT", timeout=15)
    first, recs = fetch(Limit="2")
    assert len(recs) == 2 and first.headers["x-fleetfn-more"] == "true"
    rest, more = fetch(Cursor=first.headers["x-fleetfn-cursor"])
    assert rest.headers["x-fleetfn-more"] == "false"
    assert [r["message"] for r in recs + more] == [r["message"] for r in fetch()[1]]
    # A follow with Wait=1 streams what there is and ends with a cursor that continues it.
    started = time.monotonic()
    _, streamed = fetch(Follow="true", Wait="1")
    assert time.monotonic() - started < 10
    assert streamed[-1]["type"] == "fleetfn.followEnd", streamed[-1]
    assert [r["message"] for r in streamed[:-1]] == [r["message"] for r in recs + more]
    _, after = fetch(Cursor=streamed[-1]["cursor"])
    assert after == []


def dir_bytes(d: Path) -> int:
    total = 0
    for p in d.glob("*.jsonl"):
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


def test_flood_stays_under_the_cap_and_does_not_slow_other_functions(server, lam, make_function, log_cap):
    flooder = make_function("python", timeout=120)
    steady = make_function("rust")
    vdir = server.data_dir / "logs" / flooder / "$LATEST.PUBLISHED"

    def noop() -> float:
        t = time.perf_counter()
        dp.invoke_ok(lam, steady, {"op": "noop"})
        return time.perf_counter() - t

    for _ in range(5):
        noop()
    unloaded = statistics.median(noop() for _ in range(40))

    flood_mb = 100
    outcome: dict = {}

    def flood():
        started = time.monotonic()
        outcome["result"] = dp.invoke(lam, flooder, {"op": "flood", "mb": flood_mb, "line": 1000})
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=flood, daemon=True)
    worker.start()
    during, biggest = [], 0
    while worker.is_alive():
        during.append(noop())
        biggest = max(biggest, dir_bytes(vdir))
    worker.join(timeout=150)
    result = outcome["result"]
    assert result.status == 200 and result.function_error is None, result
    assert result.json["written"] >= flood_mb * 1024 * 1024
    biggest = max(biggest, dir_bytes(vdir))

    assert biggest <= log_cap, f"the version's log reached {biggest} bytes (cap {log_cap})"
    # The environment's log writer drains its buffer (rotating and pruning, which counts in
    # dropped.json) after the invoke has returned: compare the API with the file once the file
    # holds still around the request (bounded: 20 s).
    deadline = time.monotonic() + 20
    while True:
        dropped = json.loads((vdir / "dropped.json").read_text())
        resp = h.raw_request(server.endpoint, "GET", LOGS_PATH.format(flooder), query={"Limit": "1"}, timeout=30)
        assert resp.status_code == 200, resp.text[:300]
        header = int(resp.headers["x-fleetfn-dropped-lines"])
        after = json.loads((vdir / "dropped.json").read_text())
        if dropped == after or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert dropped == after, f"dropped.json still changing 20 s after the flood: {dropped} then {after}"
    assert header == dropped["lines"], (header, dropped)
    assert dropped["lines"] > 0 and dropped["bytes"] >= (flood_mb - 8) * 1024 * 1024, dropped

    assert len(during) >= 10, (f"the flood took {outcome['seconds']:.2f}s, too short to measure "
                               f"{len(during)} invokes of another function during it")
    loaded = statistics.median(during)
    print(f"flood of {flood_mb} MiB took {outcome['seconds']:.2f}s; log dir at most {biggest} bytes; "
          f"other function: {unloaded * 1000:.1f} ms unloaded, {loaded * 1000:.1f} ms median of {len(during)} "
          f"during, p90 {statistics.quantiles(during, n=10)[-1] * 1000:.1f} ms")
    assert loaded < 5 * unloaded + 0.050, (
        f"median invoke of another function took {loaded * 1000:.1f} ms during the flood vs "
        f"{unloaded * 1000:.1f} ms unloaded ({len(during)} invokes over {outcome['seconds']:.2f}s)")
