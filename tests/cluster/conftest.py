"""Fixtures shared by tests/cluster: `test_net`, a bridge and network namespaces of the test's own
(fleetfn_testkit.netns) in which the agents run, each with its own address. Needs root and `ip`;
without them the tests that use it are skipped with the reason."""

from __future__ import annotations

import pytest

from fleetfn_testkit import netns, prereq


@pytest.fixture
def test_net():
    """A bridge and network namespaces of this test's own (removed after it)."""
    prereq.require("root", prereq.root_missing(("ip",)))
    net = netns.TestNet()
    try:
        yield net
    finally:
        net.close()
