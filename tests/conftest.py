"""What every suite shares (the code lives in tests/fleetfn_testkit; this file is at the root of
tests/, so pytest puts tests/ on sys.path and every suite imports `fleetfn_testkit`):

- the `fleetfn_binary` fixture and the `slow` marker;
- on a failed test, the log tails of the fleetfn servers it used or left running;
- skips: every skip carries a reason (`-rs` prints them); a test needing root or a host tool
  skips with `needs <tag>: ...` (fleetfn_testkit.prereq). With FLEETFN_TEST_STRICT=1
  (scripts/test) the session fails when a test was skipped for any reason other than an
  explicit opt-out (FLEETFN_TEST_OPT_OUT=<tag>,...), and says which tests and why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetfn_testkit import netns, postgres, prereq
from fleetfn_testkit.server import FleetfnServer, ServerFactory, find_binary, started_servers

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes several seconds (still part of the default run)")
    unknown = prereq.unknown_opt_outs()
    if unknown:
        raise pytest.UsageError(f"{prereq.OPT_OUT_VAR}: unknown tag(s) {', '.join(unknown)} "
                                f"(known: {', '.join(prereq.TAGS)}, all)")
    config.pluginmanager.register(SkipJudge(), "fleetfn-skip-judge")
    postgres.store_kind()  # a UsageError for an unknown FLEETFN_TEST_STORE


def pytest_report_header(config):
    return f"fleetfn store: {postgres.store_kind()} ({postgres.STORE_VAR})"


@pytest.fixture
def test_net():
    """A bridge and network namespaces of this test's own (fleetfn_testkit.netns; removed after
    it), for agents on hosts of their own (tests/cluster, tests/ec2). Needs root and `ip`."""
    prereq.require("root", prereq.root_missing(("ip",)))
    net = netns.TestNet()
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="session")
def fleetfn_binary() -> Path:
    return find_binary()


# --------------------------------------------------------------------------------------
# Server logs on failure
# --------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    used = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, FleetfnServer):
            used.append(value)
        elif isinstance(value, ServerFactory):
            used.extend(value.servers)
    seen = set()
    for srv in used + [s for s in started_servers() if s.running()]:
        if id(srv) not in seen:
            seen.add(id(srv))
            rep.sections.append((f"fleetfn {srv.name} logs", srv.logs(tail_lines=80)))


# --------------------------------------------------------------------------------------
# Skips: reasons, opt-outs, strict mode
# --------------------------------------------------------------------------------------


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ").strip()


class SkipJudge:
    """Collects the skips that are not opt-outs; in strict mode they fail the session."""

    def __init__(self):
        self.unexcused: list[tuple[str, str]] = []

    def _note(self, report):
        if report.skipped and not hasattr(report, "wasxfail"):
            why = _skip_reason(report)
            if not prereq.is_opt_out(why):
                self.unexcused.append((report.nodeid, why or "(no reason given)"))

    def pytest_runtest_logreport(self, report):
        self._note(report)

    def pytest_collectreport(self, report):
        self._note(report)

    def pytest_sessionfinish(self, session, exitstatus):
        if prereq.strict() and self.unexcused and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if not self.unexcused:
            return
        strict = prereq.strict()
        effect = "fails the session" if strict else f"would fail it with {prereq.STRICT_VAR}=1"
        terminalreporter.section("skipped without an opt-out", sep="=", red=strict, bold=True)
        terminalreporter.line(
            f"{len(self.unexcused)} test(s) were skipped for a reason that is not an opt-out; this {effect}. "
            f"Give them what they need, or opt out explicitly with {prereq.OPT_OUT_VAR}=<tag>[,<tag>...] "
            f"(tags: {', '.join(prereq.TAGS)}, all).")
        for nodeid, why in self.unexcused:
            terminalreporter.line(f"  {nodeid}: {why}")
