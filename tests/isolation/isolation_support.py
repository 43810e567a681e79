"""The isolation suite's addresses, shared by its conftest and tests (tests never import a
`conftest` module by name)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

INET_HOST = "198.19.0.1"   # the host's end of the test's "internet" link
INET_ADDR = "198.19.0.2"   # the internet's address
METADATA = "169.254.169.254"
