"""Fixtures for the web console's browser suite (tests/console): a real `fleetfn serve` with its
data plane and a headless Chromium driven by Selenium, through the console's own pages
(element ids: the console's contract, docs in crates/fleetfn-api/console and the issue).

- `server`: one `fleetfn serve` for the session (capacity suite's flags: a quarter-CPU vCPU and
  scale-in after seconds, so scaling to zero and back is quick).
- `fleet`: what the API (boto3) prepares behind the browser's back: one capacity provider over
  three zones and two Rust test functions (fleetfn-testfn as `bootstrap`, provided.al2023; `testfn_zip`),
  each with version 1 Active: `basic` (8 invokes per environment) and `load` (2 per
  environment, scaled to Min=Max=1, so a few callers are enough to make it throttle).
- `console`: a fresh headless Chromium per test (`Console`: open, sign in, bounded waits on DOM
  state, screenshots). After every test the browser log must hold no SEVERE entry; the only
  entries let through are the HTTP error answers the test declared (`console.expect_http_error`)
  and the 401 of `GET /console/session` while signed out, which is the contract's answer for "no
  session" and which the page asks on every load. Chromium logs each as
  "<url> - Failed to load resource: the server responded with a status of <n>", without the
  body, so this filter matches the URL path and status exactly.

Prerequisite tag `chromium` (fleetfn_testkit.prereq): Chromium and chromedriver (Debian's
`chromium` and `chromium-driver`; override with FLEETFN_CHROMIUM / FLEETFN_CHROMEDRIVER).
Screenshots go to $FLEETFN_TEST_ARTIFACTS/console (default $CARGO_TARGET_DIR/test-artifacts/console,
else /tmp/fleetfn-test-artifacts/console), a failing test's page as FAILED-<test>.png with its HTML.

The README's picture (docs/console-overview.png) is taken once, by hand, on a fresh server:
`FLEETFN_CONSOLE_README_SHOT=$PWD/docs/console-overview.png python -m pytest tests/console -k load`
(the fleet then gets plain names, orders-api three versions and thumbnailer the load).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import prereq
from fleetfn_testkit.server import FleetfnServer

from consolekit import ACTIVE_WAIT, SAVED, SERVER_ARGS, WINDOW, Console, artifacts_dir, browser_paths, make_driver


# --------------------------------------------------------------------------------------
# Prerequisites and artefacts
# --------------------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter):
    if SAVED:
        terminalreporter.line(f"console screenshots ({len(SAVED)}): {artifacts_dir()}")


@pytest.fixture(scope="session")
def chrome_binaries() -> tuple[str, str]:
    chromium, driver, missing = browser_paths()
    prereq.require("chromium", missing)
    # The directory is this suite's own: the last run's pictures (and failures) go.
    for old in artifacts_dir().iterdir():
        if old.suffix in (".png", ".html"):
            old.unlink()
    return chromium, driver


# --------------------------------------------------------------------------------------
# The server and what the API prepares
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server(fleetfn_binary, tmp_path_factory, chrome_binaries):
    # Needs the browser first: without it, no server is started for tests that will skip.
    base = tmp_path_factory.mktemp("fleetfn-console")
    srv = FleetfnServer(fleetfn_binary, base / "data", base / "logs", name="console",
                        data_plane=True, extra_args=SERVER_ARGS)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def lam(server):
    return dp.no_retry_client(server.endpoint)


@pytest.fixture(scope="session")
def testfn_zip(tmp_path_factory) -> bytes:
    """fleetfn-testfn as `bootstrap`, without its debug info when `strip` is there (the debug
    build zips to ~14 MB, stripped to ~2.5 MB: every upload, the browser's base64 of it
    included, is that much quicker; the program is the same)."""
    binary = dp.testfn_path()
    strip = shutil.which("strip")
    if strip:
        copy = tmp_path_factory.mktemp("console-testfn") / "bootstrap"
        shutil.copyfile(binary, copy)
        subprocess.run([strip, str(copy)], check=True)
        binary = copy
    return h.make_zip([("bootstrap", binary.read_bytes(), 0o755)])


@pytest.fixture(scope="session")
def testfn_zip_path(tmp_path_factory, testfn_zip) -> Path:
    """The zip as a file, for the upload fields."""
    path = tmp_path_factory.mktemp("console-zip") / "testfn.zip"
    path.write_bytes(testfn_zip)
    return path


@dataclass
class Fleet:
    endpoint: str
    provider: str
    basic: str            # version 1 Active, default scaling (3 environments), 8 per environment
    load: str             # version 1 Active, Min=Max=1, 2 per environment
    made_functions: list = field(default_factory=list)
    made_providers: list = field(default_factory=list)

    @property
    def provider_arn(self) -> str:
        return h.cp_arn_for(self.provider)


def publish_v1(lam, endpoint: str, names: list[str]) -> None:
    pubs = [dp.publish(lam, n, "rust", latest_published=False) for n in names]
    for pub in pubs:
        assert pub.version == "1", pub.publish_response
    dp.wait_published(lam, endpoint, pubs, timeout=ACTIVE_WAIT)
    for pub in pubs:
        assert pub.final["State"] == "Active", f"{pub.name}:1 went to {pub.final}"


@pytest.fixture(scope="session")
def fleet(lam, server, testfn_zip):
    # For the README's picture (FLEETFN_CONSOLE_README_SHOT, a fresh server): names a person would pick.
    readme = bool(os.environ.get("FLEETFN_CONSOLE_README_SHOT"))
    provider = "general-purpose" if readme else h.uniq("console-cp")
    h.create_active_cp(lam, provider, VpcConfig={"SubnetIds": list(dp.ZONES),
                                                 "SecurityGroupIds": list(h.SECURITY_GROUPS)})
    arn = h.cp_arn_for(provider)
    # Both uploads at once.
    with ThreadPoolExecutor(2) as pool:
        basic_f = pool.submit(dp.create_lmi_function, lam, arn, "rust", name="orders-api" if readme else h.uniq("console-basic"),
                              zip_bytes=testfn_zip, timeout=10)
        load_f = pool.submit(dp.create_lmi_function, lam, arn, "rust", name="thumbnailer" if readme else h.uniq("console-load"),
                             zip_bytes=testfn_zip, concurrency=2, timeout=10)
        basic, load = basic_f.result(), load_f.result()
    publish_v1(lam, server.endpoint, [basic, load])
    dp.set_scaling(lam, load, "1", 1, 1)
    dp.wait_single_ready(server.endpoint, load, "1")
    fl = Fleet(server.endpoint, provider, basic, load, made_functions=[basic, load])
    yield fl
    for name in fl.made_functions:
        dp.delete_function_quietly(lam, name)
    for name in [provider] + fl.made_providers:
        try:
            h.delete_cp_when_free(lam, name)
        except BaseException as err:  # noqa: BLE001 - cleanup must not hide results
            print(f"could not delete capacity provider {name}: {err}")


@pytest.fixture
def console(request, chrome_binaries, server):
    chromium, chromedriver = chrome_binaries
    driver = make_driver(chromium, chromedriver, *WINDOW)
    con = Console(driver, server.endpoint, request.node.name)
    request.node.fleetfn_console = con
    try:
        yield con
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.passed:
            con.assert_no_errors(f"the pages of {request.node.name}")
    finally:
        driver.quit()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep
    con = getattr(item, "fleetfn_console", None)
    if rep.failed and con is not None and rep.when == "call":
        try:
            shot = con.screenshot(f"FAILED-{item.name}")
            html = shot.with_suffix(".html")
            html.write_text(con.driver.page_source)
            entries = con.log + con.driver.get_log("browser")
            rep.sections.append(("console page", f"route {con.driver.current_url}\nscreenshot {shot}\nhtml {html}"))
            rep.sections.append(("browser log", "\n".join(
                f"{e.get('level')} [{e.get('source')}] {e.get('message')}" for e in entries) or "(empty)"))
        except Exception as err:  # noqa: BLE001 - the report must not hide the failure
            rep.sections.append(("console page", f"could not capture: {err!r}"))

