"""The web console in a real Chromium (issue 17): every scenario goes through the pages a person
uses, against a real `fleetfn serve` with its data plane; boto3 only prepares what a test needs
and checks what the page did. Element ids are the console's contract. Waits are bounded polls
of DOM state; load is bounded in count and time."""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit.server import free_port

from consolekit import ACTIVE_WAIT, COOKIE, WINDOW

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
SESSION_SECONDS = 8 * 3600


def number_in(text: str | None) -> float | None:
    m = NUMBER.search(text or "")
    return float(m.group()) if m else None


def data_sum(con, chart: str) -> float:
    value = con.attr(chart, "data-sum")
    return float(value) if value not in (None, "") else 0.0


def envs_cell(fn: str, version: str) -> str:
    return f'#overview-functions tr[data-function="{fn}"][data-version="{version}"] .envs'


def open_function(con, fn: str) -> None:
    con.go(f"#/functions/{fn}")
    con.wait_text("#function-title", lambda t: fn in t, f"to name {fn}")


def record_states(con, css: str) -> None:
    """Records every text `css` shows from now on (a MutationObserver, so even a state shown
    for one render is seen) into window.__fleetfnSeen."""
    con.js("""
        const css = arguments[0];
        window.__fleetfnSeen = [];
        const rec = () => {
          const e = document.querySelector(css);
          const t = e && e.textContent.trim();
          const seen = window.__fleetfnSeen;
          if (t && seen[seen.length - 1] !== t) seen.push(t);
        };
        new MutationObserver(rec).observe(document.body, {subtree: true, childList: true, characterData: true});
        rec();""", css)


def confirm_then(con, button: str, ok: bool | str) -> None:
    """Clicks `button`, waits for the #confirm dialog (which takes the focus), answers it
    (True: #confirm-ok, False: #confirm-cancel, "escape": the Escape key), waits for it to close."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    con.click(button)
    con.wait(lambda: con.js("const d = document.querySelector('#confirm'); return !!(d && d.open)"),
             f"#confirm to open after {button}")
    assert con.js("return !!document.activeElement.closest('#confirm')"), (
        "the open confirm dialog does not hold the keyboard focus")
    if ok == "escape":
        ActionChains(con.driver).send_keys(Keys.ESCAPE).perform()
    else:
        con.click("#confirm-ok" if ok else "#confirm-cancel")
    con.wait(lambda: not con.js("return document.querySelector('#confirm').open"), "#confirm to close")


def api_message(call) -> str:
    try:
        call()
    except ClientError as err:
        return h.error_message(err)
    raise AssertionError("the API accepted what the test expected it to refuse")


# --------------------------------------------------------------------------------------
# Signing in and out
# --------------------------------------------------------------------------------------


# The focused element draws an outline or a ring (box-shadow) when reached by keyboard.
FOCUS_SHOWN = """
    const e = document.activeElement, s = getComputedStyle(e);
    return e.matches(':focus-visible')
      && ((s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none');"""


def test_sign_in_with_the_keyboard_sets_a_strict_httponly_session_cookie(console):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    console.open()
    console.wait_visible("#signin-form")
    assert console.cookie() is None
    assert h.ACCESS_KEY not in (console.text("#whoami") or "")
    console.screenshot("signin")
    # Keyboard only: type the key id, Tab to the secret, Enter submits.
    console.el("#signin-key-id").send_keys(h.ACCESS_KEY)
    ActionChains(console.driver).send_keys(Keys.TAB).perform()
    assert console.js("return document.activeElement.id") == "signin-secret", (
        "Tab from the key id field should reach the secret field")
    assert console.js(FOCUS_SHOWN), "the focused secret field shows no focus indicator (outline or ring)"
    ActionChains(console.driver).send_keys(h.SECRET_KEY + Keys.ENTER).perform()
    console.wait_text("#whoami", lambda t: h.ACCESS_KEY in t, f"to show {h.ACCESS_KEY}")
    assert not console.visible("#signin-form")

    cookie = console.cookie()
    assert cookie is not None, f"no {COOKIE} cookie after signing in: {console.driver.get_cookies()}"
    assert cookie["httpOnly"] is True and cookie.get("sameSite") == "Strict" and cookie["path"] == "/", cookie
    assert not cookie.get("secure"), cookie  # plain HTTP here; Secure only on TLS
    assert abs(cookie["expiry"] - (time.time() + SESSION_SECONDS)) < 300, (
        f"the cookie should expire in 8 h: {cookie['expiry'] - time.time():.0f} s")
    assert COOKIE not in console.js("return document.cookie"), "the session cookie is readable from JavaScript"
    doc = console.session_doc()
    assert doc["AccessKeyId"] == h.ACCESS_KEY and len(doc["CsrfToken"]) == 43, doc

    # A reload asks GET /console/session and stays signed in.
    console.driver.refresh()
    console.wait_text("#whoami", lambda t: h.ACCESS_KEY in t, "to show the key id after a reload")
    assert not console.visible("#signin-form")


def test_wrong_key_is_refused_with_the_apis_message_and_no_cookie(console, server):
    console.expect_http_error("/console/session", 403)
    console.open()
    console.wait_visible("#signin-form")
    want = requests.post(f"{server.endpoint}/console/session", timeout=10,
                         json={"AccessKeyId": h.ACCESS_KEY, "SecretAccessKey": "not-the-secret"})
    assert want.status_code == 403, want.text
    message = want.json()["message"]
    assert console.attr("#signin-error", "role") == "alert"
    for key, secret in ((h.ACCESS_KEY, "not-the-secret"), ("AKIDNOSUCHKEY0000000", h.SECRET_KEY)):
        console.js("document.querySelector('#signin-error').textContent = ''")
        console.fill("#signin-key-id", key)
        console.fill("#signin-secret", secret)
        console.click("#signin-submit")
        shown = console.wait_text("#signin-error", lambda t: bool(t), "to explain the refusal")
        assert console.visible("#signin-error"), "the refusal is in the DOM but not visible"
        if key == h.ACCESS_KEY:
            assert message in shown, f"#signin-error should show the API's message {message!r}, shows {shown!r}"
        assert console.cookie() is None, f"a refused sign-in set a cookie: {console.driver.get_cookies()}"
        assert console.visible("#signin-form")
        assert h.ACCESS_KEY not in (console.text("#whoami") or "") or not console.visible("#whoami")
    console.screenshot("signin-refused")


def test_sign_out_ends_the_session_on_the_server(console, server):
    console.sign_in()
    doc = console.session_doc()
    old = console.cookie()["value"]
    console.click("#signout")
    console.wait_visible("#signin-form")
    console.wait(lambda: console.cookie() is None, f"the {COOKIE} cookie to be removed")
    assert not (console.visible("#whoami") and h.ACCESS_KEY in (console.text("#whoami") or ""))
    # The old cookie is dead on the server, not only forgotten by the browser.
    r = requests.get(f"{server.endpoint}/console/session", cookies={COOKIE: old}, timeout=10)
    assert r.status_code == 401 and h.raw_error_code(r) == "MissingAuthenticationTokenException", (r.status_code, r.text)
    r = requests.get(f"{server.endpoint}/2015-03-31/functions", cookies={COOKIE: old}, timeout=10,
                     headers={"X-Fleetfn-Csrf": doc["CsrfToken"]})
    assert r.status_code == 403 and h.raw_error_code(r) == "AccessDeniedException", (r.status_code, r.text)
    # A reload stays signed out.
    console.driver.refresh()
    console.wait_visible("#signin-form")
    console.screenshot("signed-out")


# --------------------------------------------------------------------------------------
# Creating things through the forms
# --------------------------------------------------------------------------------------


def test_create_capacity_provider_through_the_form(console, fleet, lam, server):
    console.expect_http_error("/2025-11-30/capacity-providers", 400)
    console.sign_in()
    console.click("#nav-new-provider")
    console.wait_visible("#provider-form")
    assert console.el("#provider-subnets").get_attribute("value") == "subnet-a,subnet-b,subnet-c"
    assert console.el("#provider-security-groups").get_attribute("value") == "sg-console"
    role = console.el("#provider-role").get_attribute("value")
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/fleetfn-operator", role), role
    console.full_screenshot("new-provider")

    # An invalid name: the API's own validation message, verbatim.
    message = api_message(lambda: h.make_client(server.endpoint, validate=False).create_capacity_provider(
        **h.cp_request("bad name")))
    console.fill("#provider-name", "bad name")
    console.click("#provider-submit")
    shown = console.wait_text("#provider-error", lambda t: bool(t), "to show the API's message")
    assert message in shown, f"#provider-error should show {message!r}, shows {shown!r}"
    assert console.attr("#provider-error", "role") == "alert"
    assert console.js("return location.hash") == "#/new/provider"
    console.full_screenshot("new-provider-invalid")

    name = h.uniq("console-ui-cp")
    fleet.made_providers.append(name)
    console.fill("#provider-name", name)
    console.fill("#provider-max-vcpu", "16")
    console.choose("#provider-arch", "x86_64")
    console.click("#provider-submit")
    console.wait(lambda: console.js("return location.hash") == f"#/providers/{name}", "the provider's page")
    console.wait_text("#provider-title", lambda t: name in t, f"to name {name}")
    cp = lam.get_capacity_provider(CapacityProviderName=name)["CapacityProvider"]
    assert cp["VpcConfig"]["SubnetIds"] == ["subnet-a", "subnet-b", "subnet-c"], cp
    assert cp["VpcConfig"]["SecurityGroupIds"] == ["sg-console"], cp
    assert cp["PermissionsConfig"]["CapacityProviderOperatorRoleArn"] == role, cp
    assert cp["CapacityProviderScalingConfig"]["MaxVCpuCount"] == 16, cp
    assert cp["InstanceRequirements"]["Architectures"] == ["x86_64"], cp
    console.wait_text("#provider-state", lambda t: "Active" in t, "to say Active")
    console.full_screenshot("provider-new")
    console.click("#nav-overview")
    console.wait(lambda: console.count(f'#overview-providers [data-provider="{name}"]') == 1,
                 f"the overview to list {name}")

    # Delete it from its page, through the confirm dialog (Cancel first: nothing happens).
    console.go(f"#/providers/{name}")
    console.wait_text("#provider-title", lambda t: name in t, f"to name {name}")
    confirm_then(console, "#delete-provider", ok=False)
    assert lam.get_capacity_provider(CapacityProviderName=name)["CapacityProvider"]["State"] == "Active"
    confirm_then(console, "#delete-provider", ok=True)
    h.gone(lambda: lam.get_capacity_provider(CapacityProviderName=name), f"capacity provider {name} to be deleted")
    fleet.made_providers.remove(name)
    console.click("#nav-overview")
    console.wait(lambda: console.count(f'#overview-providers [data-provider="{name}"]') == 0,
                 "the overview without the deleted provider")


def test_create_function_from_a_zip_and_publish_pending_to_active(console, fleet, lam, testfn_zip_path, tmp_path):
    console.expect_http_error(r"/2015-03-31/functions", 409)
    console.sign_in()
    console.click("#nav-new-function")
    console.wait_visible("#function-form")
    assert console.el("#function-memory").get_attribute("value") == "2048"
    assert "provided.al2023" in console.option_values("#function-runtime")
    provider_option = console.wait(
        lambda: next((v for v, t in zip(console.option_values("#function-provider"),
                                        console.option_texts("#function-provider"))
                      if v in (fleet.provider, fleet.provider_arn) or t.startswith(fleet.provider)), None),
        f"#function-provider to offer {fleet.provider}")
    console.full_screenshot("new-function")

    def fill_form(name: str, zip_path: Path):
        console.fill("#function-name", name)
        console.choose("#function-runtime", "provided.al2023")
        console.fill("#function-handler", "bootstrap")
        if not console.el("#function-role").get_attribute("value"):
            console.fill("#function-role", h.ROLE_ARN)
        console.choose("#function-provider", provider_option)
        console.el("#function-zip").send_keys(str(zip_path))
        if console.el("#function-publish").is_selected():
            console.click("#function-publish")

    # The name of an existing function: the API's conflict message in the form.
    small = tmp_path / "small.zip"
    small.write_bytes(h.bootstrap_zip("console"))
    message = api_message(lambda: lam.create_function(**h.function_request(
        fleet.basic, fleet.provider_arn, runtime="provided.al2023", zip_bytes=small.read_bytes(), Handler="bootstrap")))
    fill_form(fleet.basic, small)
    console.click("#function-submit")
    shown = console.wait_text("#function-error", lambda t: bool(t), "to show the API's message")
    assert message in shown, f"#function-error should show {message!r}, shows {shown!r}"

    name = h.uniq("console-ui-fn")
    fleet.made_functions.append(name)
    fill_form(name, testfn_zip_path)
    console.click("#function-submit")
    # The zip goes up base64-encoded in the CreateFunction request.
    console.wait(lambda: console.js("return location.hash") == f"#/functions/{name}", "the function's page", 90)
    console.wait_text("#function-title", lambda t: name in t, f"to name {name}")
    cfg = lam.get_function(FunctionName=name)["Configuration"]
    assert (cfg["Runtime"], cfg["Handler"], cfg["MemorySize"]) == ("provided.al2023", "bootstrap", 2048), cfg
    assert cfg["CodeSha256"] == h.code_sha256(testfn_zip_path.read_bytes()), cfg
    assert cfg["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]["CapacityProviderArn"] \
        == fleet.provider_arn, cfg
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST"]

    # Publish on the function page and watch version 1 go Pending -> Active.
    state = '#versions tr[data-version="1"] .state'
    console.wait_visible("#publish")
    h.wait_function_settled(lam, name)
    record_states(console, state)
    console.click("#publish")
    console.wait_text(state, lambda t: t == "Active", "to reach Active", ACTIVE_WAIT)
    seen = console.js("return window.__fleetfnSeen")
    assert seen and seen[0] == "Pending" and seen[-1] == "Active" and set(seen) == {"Pending", "Active"}, (
        f"version 1 should show Pending, then Active; the page showed {seen}")
    assert lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]["State"] == "Active"
    ready = dp.ready(dp.environments(fleet.endpoint, name, "1"))
    console.wait(lambda: sorted(console.texts('#environments tr[data-environment] .state')).count("Ready")
                 >= len(ready) > 0, f"the environments table to list the {len(ready)} Ready environments")
    console.full_screenshot("function-new-published")

    # Upload new code on the function page (UpdateFunctionCode).
    console.el("#code-zip").send_keys(str(small))
    console.click("#code-submit")
    h.poll(lambda: lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"],
           lambda sha: sha == h.code_sha256(small.read_bytes()), "the uploaded code to be $LATEST's", 30)
    assert not console.text("#code-error"), console.text("#code-error")

    # Delete the function from its page, through the confirm dialog (Escape first: nothing happens).
    confirm_then(console, "#delete-function", ok="escape")
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    confirm_then(console, "#delete-function", ok=True)
    console.wait(lambda: console.js("return location.hash") in ("#/", ""), "the overview after deleting")
    h.gone(lambda: lam.get_function(FunctionName=name), f"function {name} to be deleted")
    console.wait(lambda: console.count(f'#overview-functions tr[data-function="{name}"]') == 0,
                 "the overview without the deleted function")


# --------------------------------------------------------------------------------------
# Running a function
# --------------------------------------------------------------------------------------


def choose_or_type(con, css: str, value: str) -> None:
    if con.el(css).tag_name.lower() == "select":
        con.choose(css, value)
    else:
        con.fill(css, value)


def test_test_invoke_shows_the_result_and_the_log_line(console, fleet):
    console.sign_in()
    open_function(console, fleet.basic)
    console.wait_visible("#invoke-form")
    choose_or_type(console, "#invoke-qualifier", "1")
    marker = h.uniq("marker")
    event = {"op": "echo", "marker": marker}
    console.fill("#invoke-payload", json.dumps(event))
    console.click("#invoke-submit")
    console.wait_text("#invoke-status", lambda t: "200" in t, "to report 200")
    result = console.wait_text("#invoke-result", lambda t: marker in t, "to show the echoed event")
    assert json.loads(result) == event, result
    log = console.wait_text("#invoke-log", lambda t: bool(re.search(f"START RequestId: {UUID.pattern}", t)),
                            "to show the invoke's START line")
    rid = re.search(f"START RequestId: ({UUID.pattern})", log).group(1)
    assert f"REPORT RequestId: {rid}" in console.wait_text("#invoke-log", lambda t: "REPORT" in t, "to show REPORT")
    recs = h.raw_request(fleet.endpoint, "GET", f"/fleetfn/v1/functions/{fleet.basic}/logs",
                            query={"RequestId": rid}).text
    assert f"START RequestId: {rid}" in recs, f"the log API does not know {rid}: {recs[:500]}"
    console.full_screenshot("function-invoked")

    # The same lines reach the followed log view.
    assert console.el("#logs-follow").is_selected(), "#logs-follow should be on by default"
    console.wait(lambda: any(rid in t for t in console.texts("#logs .log-line")), f"#logs to show a line of {rid}")
    # Filter by request id: only that invoke's lines (START, END, REPORT).
    from selenium.webdriver.common.keys import Keys
    console.fill("#logs-request-id", rid)
    console.el("#logs-request-id").send_keys(Keys.TAB)
    console.wait(lambda: (lambda ts: len(ts) >= 3 and all(rid in t for t in ts))(console.texts("#logs .log-line")),
                 f"#logs to show only the lines of {rid}")

    # Saved events live in localStorage per function.
    console.fill("#invoke-save-name", "echo-marker")
    console.click("#invoke-save")
    console.wait(lambda: "echo-marker" in (console.js(
        "return localStorage.getItem(arguments[0])", f"fleetfn.events.{fleet.basic}") or ""),
        "the saved event in localStorage")
    console.fill("#invoke-payload", json.dumps({"op": "error"}))
    console.click("#invoke-submit")
    console.wait_text("#invoke-status", lambda t: "Unhandled" in t, "to name the function error")
    console.wait_text("#invoke-result", lambda t: "TestFnError" in t, "to show the error document")
    # (Saving selected it; pick the placeholder first so choosing it again is a change.)
    if console.el("#invoke-saved").get_attribute("value") == "echo-marker":
        console.choose("#invoke-saved", "")
    console.choose("#invoke-saved", "echo-marker")
    console.wait(lambda: marker in console.el("#invoke-payload").get_attribute("value"),
                 "the saved event back in the payload field")


class Load:
    """`callers` threads invoking `fn:qualifier` back to back (bounded in time and count)."""

    def __init__(self, lam, fn: str, qualifier: str, event: dict, callers: int, max_seconds: float, max_invokes: int):
        self.lam, self.fn, self.qualifier, self.event = lam, fn, qualifier, event
        self.deadline = time.monotonic() + max_seconds
        self.max_invokes = max_invokes
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.ok = self.throttled = 0
        self.errors: list[str] = []
        self.pool = ThreadPoolExecutor(callers)
        self.futures = [self.pool.submit(self._run) for _ in range(callers)]

    def _run(self):
        while not self.halt.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.ok + self.throttled + len(self.errors) >= self.max_invokes:
                    return
            try:
                res = dp.invoke(self.lam, self.fn, self.event, Qualifier=self.qualifier)
                outcome = "ok" if res.status == 200 and not res.function_error else repr(res)
            except ClientError as err:
                outcome = "throttle" if h.error_code(err) == "TooManyRequestsException" else repr(err)
            except Exception as err:  # noqa: BLE001 - every outcome is counted
                outcome = repr(err)
            with self.lock:
                if outcome == "ok":
                    self.ok += 1
                elif outcome == "throttle":
                    self.throttled += 1
                else:
                    self.errors.append(outcome)
            if outcome == "throttle":
                self.halt.wait(0.05)

    def stop(self):
        self.halt.set()
        for f in self.futures:
            f.result(timeout=60)
        self.pool.shutdown()
        return self


def test_load_moves_the_invocations_chart_and_shows_throttles(console, fleet, lam):
    # The load function: Min=Max=1 environment taking 2 invokes at once; 6 callers of a
    # 300 ms handler keep it full, so the others are throttled (Concurrency) deterministically.
    readme_shot = os.environ.get("FLEETFN_CONSOLE_README_SHOT")
    if readme_shot:
        # For the README's picture only: a few versions on the overview.
        for i in (2, 3):
            lam.update_function_configuration(FunctionName=fleet.basic, Description=f"console v{i}")
            h.wait_function_settled(lam, fleet.basic)
            lam.publish_version(FunctionName=fleet.basic)
    console.sign_in()
    open_function(console, fleet.load)
    console.choose("#chart-version", "1")
    console.wait_visible("#chart-invocations")
    console.wait(lambda: console.attr("#chart-invocations", "data-points") not in (None, ""),
                 "the invocations chart to be drawn")
    inv0, thr0 = data_sum(console, "#chart-invocations"), data_sum(console, "#chart-throttles")
    load = Load(lam, fleet.load, "1", {"op": "sleep", "ms": 300}, callers=6, max_seconds=40, max_invokes=600)
    try:
        console.wait(lambda: data_sum(console, "#chart-invocations") >= inv0 + 5,
                     "#chart-invocations data-sum to grow by 5")
        console.wait(lambda: data_sum(console, "#chart-throttles") > thr0, "#chart-throttles to show a throttle")
        for chart in ("#chart-errors", "#chart-duration", "#chart-cpu", "#chart-environments"):
            assert console.attr(chart, "data-points") not in (None, ""), f"{chart} is not drawn"
        console.full_screenshot("function-under-load")
        console.click("#nav-overview")
        row = f'#overview-functions tr[data-function="{fleet.load}"][data-version="1"]'
        console.wait(lambda: (number_in(console.text(f'#overview-throttles [data-reason="Concurrency"]')) or 0) > 0,
                     "#overview-throttles to count Concurrency throttles")
        console.wait(lambda: (number_in(console.text("#overview-rate")) or 0) > 0, "#overview-rate above 0")
        console.wait(lambda: (number_in(console.text(f"{row} .rate")) or 0) > 0, "the load version's rate above 0")
        assert console.text(f"{row} .envs") == "1/1", console.text(f"{row} .envs")
        console.full_screenshot("overview-under-load")
        if readme_shot:
            console.js("window.scrollTo(0, 0)")
            path = console.full_screenshot("readme", width=WINDOW[0], path=Path(readme_shot))
            print(f"README screenshot: {path} ({path.stat().st_size} bytes)")
    finally:
        load.stop()
    assert not load.errors, load.errors[:5]
    assert load.ok >= 5 and load.throttled >= 1, (load.ok, load.throttled)
    # Once the ring has the last second, the charts hold exactly what the callers saw.
    open_function(console, fleet.load)
    console.choose("#chart-version", "1")
    console.wait(lambda: data_sum(console, "#chart-throttles") - thr0 == load.throttled,
                 f"#chart-throttles data-sum to count the {load.throttled} throttles the callers got "
                 f"(now {data_sum(console, '#chart-throttles') - thr0})")
    console.wait(lambda: data_sum(console, "#chart-invocations") - inv0 >= load.ok,
                 f"#chart-invocations data-sum to count the {load.ok} invocations")


def test_scale_to_zero_and_back(console, fleet, lam):
    fn = fleet.basic
    console.expect_http_error(rf"/2025-11-30/functions/{fn}/function-scaling-config", 400)
    console.expect_http_error(rf"/2025-11-30/functions/{fn}/function-scaling-config", 409)
    console.sign_in()
    open_function(console, fn)
    console.wait_visible("#scaling-form")

    def submit(minimum: int, maximum: int):
        console.choose("#scaling-qualifier", "1")
        console.fill("#scaling-min", str(minimum))
        console.fill("#scaling-max", str(maximum))
        console.click("#scaling-submit")

    def apply(minimum: int, maximum: int):
        """Submit until the API holds it (a change still rolling out is a 409 the form shows)."""
        def done():
            # Requested while it rolls out, Applied once it has.
            doc = lam.get_function_scaling_config(FunctionName=fn, Qualifier="1")
            return any((c.get("MinExecutionEnvironments"), c.get("MaxExecutionEnvironments")) == (minimum, maximum)
                       for c in (doc.get("RequestedFunctionScalingConfig") or {},
                                 doc.get("AppliedFunctionScalingConfig") or {}))
        deadline = time.monotonic() + 30
        while True:
            console.js("const e = document.querySelector('#scaling-error'); if (e) e.textContent = ''")
            submit(minimum, maximum)
            outcome = console.wait(lambda: "applied" if done() else
                                   ("refused" if console.text("#scaling-error") else None),
                                   f"Min={minimum} Max={maximum} to be applied or refused")
            if outcome == "applied":
                return
            assert "ResourceConflict" in console.text("#scaling-error") or "progress" in console.text("#scaling-error"), (
                f"the scaling form refused Min={minimum} Max={maximum}: {console.text('#scaling-error')}")
            assert time.monotonic() < deadline, console.text("#scaling-error")
            time.sleep(0.5)

    # Min above Max: the API's message in the form.
    message = api_message(lambda: lam.put_function_scaling_config(
        FunctionName=fn, Qualifier="1",
        FunctionScalingConfig={"MinExecutionEnvironments": 3, "MaxExecutionEnvironments": 1}))
    submit(3, 1)
    shown = console.wait_text("#scaling-error", lambda t: bool(t), "to show the API's message")
    assert message in shown, f"#scaling-error should show {message!r}, shows {shown!r}"
    assert console.attr("#scaling-error", "role") == "alert"

    apply(0, 0)
    console.wait(lambda: console.count("#environments tr[data-environment]") == 0,
                 "the environments table to empty after Min=Max=0", 60)
    console.full_screenshot("function-scaled-to-zero")
    console.click("#nav-overview")
    console.wait_text(envs_cell(fn, "1"), lambda t: t == "0/0", "to read 0/0")
    console.full_screenshot("overview-scaled-to-zero")

    open_function(console, fn)
    console.wait_visible("#scaling-form")
    apply(1, 1)
    console.wait(lambda: console.texts("#environments tr[data-environment] .state") == ["Ready"],
                 "one Ready environment again", 60)
    console.click("#nav-overview")
    console.wait_text(envs_cell(fn, "1"), lambda t: t == "1/1", "to read 1/1")
    dp.wait_single_ready(fleet.endpoint, fn, "1")
    assert dp.invoke_ok(lam, fn, {"op": "noop"}, Qualifier="1") == {}


# --------------------------------------------------------------------------------------
# Every page, phone width, dark theme
# --------------------------------------------------------------------------------------


def unlabelled_controls(con) -> list[str]:
    return con.js("""
        return [...document.querySelectorAll('main input, main select, main textarea')]
          .filter(e => e.type !== 'hidden' && !e.closest('[hidden]'))
          .filter(e => !(e.id && document.querySelector(`label[for="${CSS.escape(e.id)}"]`))
                       && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')
                       && !e.closest('label'))
          .map(e => e.outerHTML.slice(0, 120));""")


USD = re.compile(r"<?\$\d[\d,]*(?:\.\d+)?")  # "$0.0054", "$1,234", "<$0.0001"; not "$4.7e-7"


def cost_rows_match(con, fleet, window: str) -> bool:
    """#cost-table has one row per capacity provider of `GET /fleetfn/v1/cost?Since=<window>`
    (the fleet's among them), each with the price here, on AWS Lambda and on AWS LMI."""
    doc = h.raw_request(fleet.endpoint, "GET", "/fleetfn/v1/cost", query={"Since": window}).json()
    names = sorted(p["Name"] for p in doc["CapacityProviders"])
    shown = sorted(con.js("return [...document.querySelectorAll('#cost-table tr[data-provider]')]"
                          ".map(r => r.dataset.provider)"))
    if fleet.provider not in names or shown != names:
        return False
    row = f'#cost-table tr[data-provider="{fleet.provider}"]'
    return all(USD.fullmatch(con.text(f"{row} {cell}") or "") for cell in (".here", ".lambda", ".lmi"))


def overflow(con) -> int:
    """How far the page is wider than the viewport (px)."""
    return con.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")


def env_rows(con) -> dict:
    return con.js("""
        const out = {};
        for (const r of document.querySelectorAll('#environments tr[data-environment]')) {
          const c = s => (r.querySelector(s) || {textContent: ''}).textContent.trim();
          out[r.dataset.environment] = {state: c('.state'), zone: c('.zone'), instance: c('.instance'),
                                        inflight: c('.inflight'), cpu: c('.cpu'), memory: c('.memory')};
        }
        return out;""")


def envs_match_api(con, fleet) -> bool:
    """The function page's environments are the API's, with their zone, instance and n/max."""
    api = {e["EnvironmentId"]: e for e in dp.environments(fleet.endpoint, fleet.basic, "1")
           if e["State"] in ("Starting", "Ready", "Draining")}
    rows = env_rows(con)
    if set(rows) != set(api) or not rows:
        return False
    return all(r["zone"] == api[i]["Zone"] and r["instance"] == api[i]["InstanceId"]
               and re.fullmatch(rf"\d+\s*/\s*{api[i]['MaxConcurrency']}", r["inflight"])
               and NUMBER.search(r["cpu"]) and NUMBER.search(r["memory"]) for i, r in rows.items())


def test_every_page_without_console_errors(console, fleet, lam, server):
    if not any(a["Name"] == "live" for a in lam.list_aliases(FunctionName=fleet.basic)["Aliases"]):
        lam.create_alias(FunctionName=fleet.basic, Name="live", FunctionVersion="1")
    console.sign_in()
    status = h.raw_request(fleet.endpoint, "GET", "/fleetfn/v1/status").json()
    instances = next(c for c in status["CapacityProviders"] if c["Name"] == fleet.provider)["Instances"]
    assert instances, status
    pages = [
        ("overview", "#nav-overview", "#overview-functions",
         lambda: console.count(f'#overview-providers [data-provider="{fleet.provider}"] [data-instance]') > 0
         and console.text(f'#overview-functions tr[data-function="{fleet.basic}"][data-version="1"] .state') == "Active"),
        ("function", f"#/functions/{fleet.basic}", "#versions",
         lambda: console.text('#versions tr[data-version="1"] .state') == "Active"
         and envs_match_api(console, fleet)
         and "1" in (console.text('#aliases tr[data-alias="live"]') or "")
         and console.attr("#chart-invocations", "data-points") not in (None, "")),
        ("provider", f"#/providers/{fleet.provider}", "#provider-instances",
         lambda: sorted(console.js("return [...document.querySelectorAll('#provider-instances tr[data-instance]')]"
                                   ".map(r => r.dataset.instance)"))
         == sorted(i["InstanceId"] for i in next(c for c in h.raw_request(fleet.endpoint, "GET", "/fleetfn/v1/status")
                                                  .json()["CapacityProviders"] if c["Name"] == fleet.provider)["Instances"])
         and all(z in (console.text("#provider-zones") or "") for z in dp.ZONES)
         and "400" in (console.text("#provider-headroom") or "")),
        ("cost", "#nav-cost", "#cost-table", lambda: cost_rows_match(console, fleet, "24h")),
        ("new-provider", "#nav-new-provider", "#provider-form", lambda: True),
        ("new-function", "#nav-new-function", "#function-form",
         lambda: any(fleet.provider in v or fleet.provider in t for v, t in
                     zip(console.option_values("#function-provider"), console.option_texts("#function-provider")))),
    ]
    for name, how, marker, ready in pages:
        if how.startswith("#nav-"):
            console.click(how)
        else:
            console.go(how)
        console.wait_visible(marker)
        console.wait(ready, f"the {name} page's content")
        assert not unlabelled_controls(console), f"{name}: controls without a label: {unlabelled_controls(console)}"
        assert overflow(console) <= 0, f"{name}: the page is {overflow(console)} px wider than the 1280 px window"
        console.full_screenshot(f"page-{name}")
        console.assert_no_errors(f"the {name} page")
    # The cost page's windows.
    console.click("#nav-cost")
    assert console.wait_visible("#cost-window").get_attribute("value") == "24h"
    for window in ("1h", "7d"):
        console.choose("#cost-window", window)
        console.wait(lambda: cost_rows_match(console, fleet, window), f"the cost table for {window}")
        console.full_screenshot(f"page-cost-{window}")
    assert fleet.provider in (console.text("#cost-breakeven") or "")
    # The overview shows the fleet the status endpoint describes.
    console.click("#nav-overview")
    console.wait(lambda: console.count(f'#overview-providers [data-provider="{fleet.provider}"] [data-instance]')
                 == len(next(c for c in h.raw_request(fleet.endpoint, "GET", "/fleetfn/v1/status").json()
                             ["CapacityProviders"] if c["Name"] == fleet.provider)["Instances"]),
                 "the overview's instances to match GET /fleetfn/v1/status")
    console.assert_no_errors("the cost windows and the overview")


def test_phone_width_overview(console, fleet):
    console.sign_in()
    console.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    console.click("#nav-overview")
    console.wait(lambda: console.text(envs_cell(fleet.basic, "1")) is not None, "the overview's functions")
    assert console.js("return window.innerWidth") == 390
    assert overflow(console) <= 0, f"at 390 px the overview is {overflow(console)} px wider than the screen"
    console.full_screenshot("overview-phone", width=390)
    open_function(console, fleet.basic)
    console.wait_visible("#invoke-form")
    assert overflow(console) <= 0, f"at 390 px the function page is {overflow(console)} px wider than the screen"
    console.full_screenshot("function-phone", width=390)


LUMINANCE = """
    const parse = c => (c.match(/[\\d.]+/g) || []).map(Number);
    let e = document.body, bg = [0, 0, 0, 0];
    while (e) { bg = parse(getComputedStyle(e).backgroundColor); if (bg.length < 4 || bg[3] > 0) break; e = e.parentElement; }
    if (!e) bg = [255, 255, 255];
    const fg = parse(getComputedStyle(document.body).color);
    const lum = ([r, g, b]) => (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    return [lum(bg), lum(fg)];"""


def test_dark_theme_follows_the_system_setting(console, fleet):
    console.sign_in()
    console.click("#nav-overview")
    console.wait(lambda: console.text(envs_cell(fleet.basic, "1")) is not None, "the overview's functions")
    light_bg, light_fg = console.js(LUMINANCE)
    assert light_bg > 0.6 and light_fg < 0.4, f"the light theme: background {light_bg:.2f}, text {light_fg:.2f}"
    console.driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                   {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    console.wait(lambda: (lambda bg, fg: bg < 0.3 and fg > 0.6)(*console.js(LUMINANCE)),
                 f"a dark background with light text (now {console.js(LUMINANCE)})")
    console.full_screenshot("overview-dark")
    open_function(console, fleet.basic)
    console.wait(lambda: console.attr("#chart-invocations", "data-points") not in (None, ""), "the charts")
    console.full_screenshot("function-dark")


# --------------------------------------------------------------------------------------
# CSRF
# --------------------------------------------------------------------------------------


class AttackerSite:
    """A page on another origin whose auto-submitting form and no-cors fetch POST to the
    console's API while the browser holds a session (PublishVersion: it needs no body)."""

    def __init__(self, target: str):
        self.target = target
        icon = '<link rel="icon" href="data:,">'  # no /favicon.ico request from this origin
        html_form = (f'<!doctype html><title>win a prize</title>{icon}'
                     f'<form id="f" method="POST" enctype="text/plain" action="{target}">'
                     f'<input name=\'{{"Description":"csrf","x":"\' value=\'"}}\'></form>'
                     f'<script>document.getElementById("f").submit()</script>')
        html_fetch = (f'<!doctype html><title>loading</title>{icon}<script>'
                      f'fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include", '
                      f'body: JSON.stringify({{Description: "csrf"}})}})'
                      f'.finally(() => {{ document.title = "sent"; }});</script>')
        pages = {"/form.html": html_form.encode(), "/fetch.html": html_fetch.encode()}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                body = pages.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("attacker_host", ["127.0.0.1", "localhost"],
                         ids=["same-site-other-port", "cross-site"])
def test_csrf_from_another_origin_is_refused(console, fleet, lam, attacker_host):
    # 127.0.0.1:<other port> is the same site (ports do not count for SameSite), so the
    # browser sends the session cookie: the missing X-Fleetfn-Csrf header must refuse it.
    # localhost is another site: SameSite=Strict keeps the cookie at home.
    path = f"/2015-03-31/functions/{fleet.basic}/versions"
    console.expect_http_error(path, 403)
    # Chromium asks for /favicon.ico when it shows the API's JSON answer (not a console page,
    # which names its own icon): the API refuses that path without credentials.
    console.expect_http_error("/favicon.ico", 403)
    console.sign_in()
    before = lam.list_versions_by_function(FunctionName=fleet.basic)["Versions"]
    site = AttackerSite(fleet.endpoint + path)
    try:
        console.driver.get(f"http://{attacker_host}:{site.port}/form.html")
        console.wait(lambda: console.driver.current_url.startswith(fleet.endpoint + path), "the form's POST answer")
        answer = json.loads(console.js("return document.body.innerText"))
        want = "AccessDeniedException" if attacker_host == "127.0.0.1" else "MissingAuthenticationTokenException"
        assert answer.get("__type") == want, f"the forged POST was answered with {answer}, not {want}"
        console.screenshot(f"csrf-{attacker_host}-form")
        console.driver.get(f"http://{attacker_host}:{site.port}/fetch.html")
        console.wait(lambda: console.driver.title == "sent", "the attacker's fetch to finish")
    finally:
        site.close()
    after = lam.list_versions_by_function(FunctionName=fleet.basic)["Versions"]
    assert [v["Version"] for v in after] == [v["Version"] for v in before], (
        f"a forged request published a version: {[v['Version'] for v in after]}")
    assert not any(v.get("Description") == "csrf" for v in after)
    # The session itself survived the attempt.
    console.open()
    console.wait_text("#whoami", lambda t: h.ACCESS_KEY in t, "to still show the key id")
