"""`moto_server` (PyPI moto[server]) as the AWS endpoint of a test: STS and S3 for functions'
role credentials, SQS, SNS and EventBridge for asynchronous-invocation destinations. On
loopback, or in a network namespace of the test's own (`host`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from . import netns
from .server import free_port


class Moto:
    """`moto_server` on `address`, in a network namespace when `host` is given."""

    def __init__(self, log: Path, host: netns.Host | None, auth: bool = False):
        self.address = host.address if host is not None else "127.0.0.1"
        self.port = free_port() if host is None else 5000
        exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        argv = [exe, "-H", self.address, "-p", str(self.port)]
        if host is not None:
            argv = host.command(argv)
        env = dict(os.environ)
        if auth:
            # IAM authorization from the first request: keys moto never issued are refused.
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/moto-api/", timeout=1)
                break
            except requests.RequestException:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start:\n{log.read_text(errors='replace')[-2000:]}",
                                pytrace=False)
                time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
