"""Shared by the isolation suite's conftest and tests (a module of its own: every suite has a
`conftest` module, so tests never import theirs by that name)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

_spec = importlib.util.spec_from_file_location("fleetfn_api_conftest_iso", ROOT / "api" / "conftest.py")
api_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api_conftest)
FleetfnServer = api_conftest.FleetfnServer

INET_HOST = "198.19.0.1"   # the host's end of the test's "internet" link
INET_ADDR = "198.19.0.2"   # the internet's address
METADATA = "169.254.169.254"
