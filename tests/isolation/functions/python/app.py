"""A hostile Python function for tests/isolation: it tries what the event asks and reports
what happened, without judging. Everything is bounded (connect timeouts, counts)."""

import ctypes
import errno
import os
import socket
import threading
import time

LIBC = ctypes.CDLL(None, use_errno=True)
# x86_64 and aarch64 numbers of the two calls Python has no wrapper for.
SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine)
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000


def _errno_name(code):
    return errno.errorcode.get(code, str(code))


def _call(fn, *args):
    ctypes.set_errno(0)
    rc = fn(*args)
    return "ok" if rc >= 0 else _errno_name(ctypes.get_errno())


def connect(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return _errno_name(e.errno) if e.errno else type(e).__name__


def http(host, port, method, path, body=b"", timeout=2.0):
    """One HTTP/1.1 exchange; returns (status line or error, body prefix)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            req = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
                   "Connection: close\r\n\r\n").encode() + body
            s.sendall(req)
            data = b""
            while len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            return head.split(b"\r\n")[0].decode(errors="replace") or "empty reply", rest[:512].decode(errors="replace")
    except socket.timeout:
        return "timeout", ""
    except OSError as e:
        return (_errno_name(e.errno) if e.errno else type(e).__name__), ""


def syscalls():
    out = {
        "userns": _call(LIBC.unshare, CLONE_NEWUSER),
        "mountns": _call(LIBC.unshare, CLONE_NEWNS),
        "netns": _call(LIBC.unshare, CLONE_NEWNET),
        "mount": _call(LIBC.mount, b"none", b"/tmp", b"tmpfs", 0, None),
        "ptrace": _call(LIBC.ptrace, 16, 1, None, None),  # PTRACE_ATTACH to pid 1
    }
    if SYS_BPF is not None:
        # BPF_PROG_LOAD with an empty attribute: EPERM when denied, EINVAL/EFAULT otherwise.
        attr = ctypes.create_string_buffer(128)
        out["bpf"] = _call(LIBC.syscall, SYS_BPF, 5, attr, 128)
    return out


def exhaust_pids(limit):
    """Starts threads until the kernel refuses or `limit` is reached; all are released."""
    stop = threading.Event()
    threads = []
    error = None
    threading.stack_size(64 * 1024)
    try:
        for _ in range(limit):
            t = threading.Thread(target=stop.wait)
            t.start()
            threads.append(t)
    except (RuntimeError, OSError) as e:
        error = str(e)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return {"started": len(threads), "error": error}


def fill_tmp(limit_mb):
    path = f"/tmp/fill-{os.getpid()}-{time.time_ns()}"
    written = 0
    error = None
    chunk = b"\x5a" * (1 << 20)
    try:
        with open(path, "wb") as f:
            for _ in range(limit_mb):
                f.write(chunk)
                f.flush()
                written += 1
    except OSError as e:
        error = _errno_name(e.errno)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return {"written_mb": written, "error": error}


def connect_unix(path, timeout=1.0):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return _errno_name(e.errno) if e.errno else type(e).__name__


def read_paths(paths):
    out = {}
    for p in paths:
        try:
            with open(p, "rb") as f:
                out[p] = "read:" + f.read(64).decode(errors="replace")
        except OSError as e:
            out[p] = _errno_name(e.errno)
    return out


def handler(event, context):
    result = {"uid": os.getuid()}
    if "connect" in event:
        result["connect"] = {f"{h}:{p}": connect(h, p) for h, p in event["connect"]}
    if "connect_unix" in event:
        result["connect_unix"] = {p: connect_unix(p) for p in event["connect_unix"]}
    if "http" in event:
        result["http"] = {f"{m} {h}:{p}{path}": http(h, p, m, path, b"forged" if m == "POST" else b"")
                          for h, p, m, path in event["http"]}
    if "resolve" in event:
        res = {}
        for name in event["resolve"]:
            try:
                res[name] = socket.gethostbyname(name)
            except OSError as e:
                res[name] = "error: " + str(e)
        result["resolve"] = res
    if event.get("syscalls"):
        result["syscalls"] = syscalls()
    if "tmp_token" in event:
        path = "/tmp/" + event["tmp_token"]
        with open(path, "w") as f:
            f.write(context.aws_request_id)
        with open(path) as f:
            result["tmp_write"] = f.read() == context.aws_request_id
    if "read" in event:
        result["read"] = read_paths(event["read"])
    if "pids" in event:
        result["pids"] = exhaust_pids(event["pids"])
    if "fill_tmp_mb" in event:
        result["fill_tmp"] = fill_tmp(event["fill_tmp_mb"])
    return result
