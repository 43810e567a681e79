"""Python fixture function for the fleetfn data-plane suite (handler `app.handler`).

The event's `op` picks the behaviour; anything else echoes the event. `__CODE__` is
replaced by the suite with a marker so that two builds differ in code (and CodeSha256).
"""

import os
import time
import uuid

CODE = "__CODE__"


def handler(event, context):
    op = event.get("op", "echo") if isinstance(event, dict) else "echo"
    if op == "sleep":
        start = time.time()
        time.sleep(event["ms"] / 1000.0)
        return {"start": start, "end": time.time(), "pid": os.getpid()}
    if op == "env":
        cc = context.client_context
        root = os.environ.get("LAMBDA_TASK_ROOT", "")
        return {
            "environ": dict(os.environ),
            "pid": os.getpid(),
            "uid": os.getuid(),
            "euid": os.geteuid(),
            "request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": str(context.memory_limit_in_mb),
            "client_context_custom": getattr(cc, "custom", None) if cc is not None else None,
            "task_root_files": sorted(os.listdir(root)) if root and os.path.isdir(root) else None,
        }
    if op == "exit":
        os._exit(1)
    if op == "error":
        raise ValueError("error requested by the event")
    if op == "big":
        return {"pad": "a" * event["bytes"]}
    if op == "code":
        return {"code": CODE, "pid": os.getpid()}
    if op == "tmp_token":
        # First writer in a /tmp creates the token file atomically (link fails if it
        # exists); everybody sharing that /tmp then reads the same token.
        path = "/tmp/" + event["name"]
        tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex}"
        with open(tmp, "w") as f:
            f.write(uuid.uuid4().hex)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        time.sleep(event.get("ms", 0) / 1000.0)
        with open(path) as f:
            token = f.read()
        return {"token": token, "stream": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"), "pid": os.getpid()}
    return event
