"""Python fixture function for the fleetfn logs suite (handler `app.handler`).

The event's `op` picks what the function writes to its output:

| event | output |
|---|---|
| `{"op":"print","text":T,"lines":N,"size":S,"stream":"stdout"}` | N lines `T` padded with `.` to S bytes |
| `{"op":"log","level":"WARNING","text":T}` | one record through `logging` (awslambdaric's JSON format) |
| `{"op":"raw","hex":H}` | the bytes H (hex), unchanged, then a newline |
| `{"op":"line","char":C,"bytes":N}` | one line of N bytes of C (ASCII) |
| `{"op":"flood","mb":M,"line":L}` | M MiB in lines of L bytes, as fast as the pipe takes them |
| `{"op":"noop"}` | nothing |
"""

import logging
import sys

logger = logging.getLogger()


def _raw(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def handler(event, context):
    op = event.get("op", "noop") if isinstance(event, dict) else "noop"
    if op == "print":
        stream = sys.stderr if event.get("stream") == "stderr" else sys.stdout
        text = event["text"]
        size = int(event.get("size", 0))
        line = text + "." * max(0, size - len(text))
        for _ in range(int(event.get("lines", 1))):
            print(line, file=stream, flush=True)
        return {"printed": int(event.get("lines", 1))}
    if op == "log":
        logger.log(getattr(logging, event.get("level", "INFO")), event["text"])
        return {"logged": True}
    if op == "raw":
        _raw(bytes.fromhex(event["hex"]) + b"\n")
        return {"bytes": len(event["hex"]) // 2}
    if op == "line":
        _raw(event.get("char", "a").encode()[:1] * int(event["bytes"]) + b"\n")
        return {"bytes": int(event["bytes"])}
    if op == "flood":
        line_len = int(event.get("line", 1000))
        line = b"f" * (line_len - 1) + b"\n"
        chunk = line * max(1, (64 * 1024) // line_len)
        total = int(event["mb"]) * 1024 * 1024
        written = 0
        while written < total:
            _raw(chunk)
            written += len(chunk)
        return {"written": written}
    return {}
