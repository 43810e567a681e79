"""tests/cluster runs its agents in network namespaces of the test's own: the `test_net`
fixture (tests/conftest.py, fleetfn_testkit.netns). Needs root and `ip`; without them the tests
that use it fail in strict mode, or are skipped with the reason."""
