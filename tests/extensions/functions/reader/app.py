"""Function of the extension tests (handler `app.handler`, python3.13): reads what the test
extensions recorded under /tmp (the environment's own /tmp, shared with its extensions) and
looks at the layers in /opt. The event's `op` picks the behaviour:

  records            {name: [record, ...]} for every <dir>/<name>.jsonl (an unfinished last line is skipped)
  sleep {ms}         sleeps, then {"requestId", "pid", "start", "end"}
  print {text}       prints text (a `function` telemetry record), then {"requestId"}
  print_sleep {text, ms}  prints text, then sleeps ms (so that many invokes are in flight together)
  trigger {ms}       creates /tmp/fleetfn-pyext-exit (fleetfn-pyext's exit-on-trigger), then sleeps ms
  opt                what the layers gave: /opt listing, its mount options, whether it is writable, PATH, PYTHONPATH,
                     sys.path, the layer module's answer and the layer tool on PATH
"""

import json
import os
import shutil
import subprocess
import sys
import time

DIR = os.environ.get("FLEETFN_TESTEXT_DIR", "/tmp/fleetfn-testext")


def records():
    out = {}
    if not os.path.isdir(DIR):
        return out
    for name in sorted(os.listdir(DIR)):
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(DIR, name), "rb") as f:
            data = f.read()
        lines = data.split(b"\n")[:-1]  # the last piece is unfinished (or empty)
        out[name[: -len(".jsonl")]] = [json.loads(line) for line in lines if line]
    return out


def opt_report():
    listing = []
    for root, dirs, files in os.walk("/opt"):
        dirs.sort()
        for f in sorted(files):
            listing.append(os.path.join(root, f))
    try:
        with open("/opt/fleetfn-write-probe", "w") as f:
            f.write("x")
        writable = True
        write_error = None
    except OSError as err:
        writable = False
        write_error = f"{type(err).__name__}: {err.strerror}"
    try:
        import fleetfn_layer_mod  # from /opt/python

        module = {"answer": fleetfn_layer_mod.ANSWER, "file": fleetfn_layer_mod.__file__}
    except ImportError as err:
        module = {"error": str(err)}
    tool = shutil.which("fleetfn-layer-tool")
    tool_out = subprocess.run([tool], capture_output=True, text=True, timeout=10).stdout.strip() if tool else None
    opt_mounts = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == "/opt":
                    opt_mounts.append(fields[5].split(","))  # the mount's own options (ro/rw first)
    except OSError:
        pass
    return {
        "taskRoot": os.environ.get("LAMBDA_TASK_ROOT"),
        "optMounts": opt_mounts,
        "listing": listing,
        "writable": writable,
        "writeError": write_error,
        "PATH": os.environ.get("PATH"),
        "PYTHONPATH": os.environ.get("PYTHONPATH"),
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH"),
        "sysPath": sys.path,
        "module": module,
        "tool": tool,
        "toolOutput": tool_out,
    }


def handler(event, context):
    op = event.get("op", "records") if isinstance(event, dict) else "records"
    if op == "records":
        return {"requestId": context.aws_request_id, "pid": os.getpid(), "records": records()}
    if op == "sleep":
        start = time.time()
        time.sleep(event.get("ms", 0) / 1000.0)
        return {"requestId": context.aws_request_id, "pid": os.getpid(), "start": start, "end": time.time()}
    if op in ("print", "print_sleep"):
        print(event["text"], flush=True)
        time.sleep(event.get("ms", 0) / 1000.0)
        return {"requestId": context.aws_request_id}
    if op == "trigger":
        with open("/tmp/fleetfn-pyext-exit", "w") as f:
            f.write(context.aws_request_id)
        time.sleep(event.get("ms", 0) / 1000.0)
        return {"requestId": context.aws_request_id, "survived": True}
    if op == "opt":
        return opt_report()
    raise ValueError(f"unknown op {op!r}")
