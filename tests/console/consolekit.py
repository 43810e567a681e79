"""The browser side of the console suite (tests/console): a headless Chromium through Selenium
(`make_driver`), `Console` (open, sign in, bounded waits on DOM state, screenshots, the browser
log and the HTTP errors a test expects), where screenshots go and where Chromium is."""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
import urllib.parse
from pathlib import Path

from fleetfn_testkit import api as h

SERVER_ARGS = ["--vcpu-scale", "0.25", "--scale-in-after", "3", "--idle-instance-after", "2",
               "--max-local-vcpus", "512"]
WINDOW = (1280, 900)
WAIT = 20.0            # seconds for anything the page shows after a poll (≤ 2 s) or an API call
ACTIVE_WAIT = 90.0     # a version from publish to Active (environments start), as tests/dataplane
COOKIE = "fleetfn_console"
SAVED: list[Path] = []  # screenshots taken in this session
NETWORK_ERROR = re.compile(r"^(\S+) - Failed to load resource: the server responded with a status of (\d+)")
# Chromium fails the requests it has in flight with ERR_NETWORK_CHANGED when an address in its
# network namespace changes. This suite's server and the suites run beside it start
# environments as root, each with a veth pair and an address in this namespace, so the error
# says nothing about the console. It is not counted as a page error; a test that needed what failed to load still fails
# on its own checks.
NETWORK_CHANGED = re.compile(r"^(\S+) - Failed to load resource: net::ERR_NETWORK_CHANGED$")


# --------------------------------------------------------------------------------------
# Prerequisites and artefacts
# --------------------------------------------------------------------------------------


def browser_paths() -> tuple[str | None, str | None, str | None]:
    """(chromium, chromedriver, what is missing or None)."""
    chromium = os.environ.get("FLEETFN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    driver = os.environ.get("FLEETFN_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    for what, path in (("chromium", chromium), ("chromedriver", driver)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return None, None, (f"no `{what}` (looked at {path}; Debian: apt-get install chromium chromium-driver, "
                                f"or set FLEETFN_{what.upper()})")
    return chromium, driver, None


def artifacts_dir() -> Path:
    root = os.environ.get("FLEETFN_TEST_ARTIFACTS")
    if not root:
        target = os.environ.get("CARGO_TARGET_DIR")
        root = str(Path(target) / "test-artifacts") if target else "/tmp/fleetfn-test-artifacts"
    path = Path(root) / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------


class Console:
    """One headless Chromium on the console of `endpoint`."""

    def __init__(self, driver, endpoint: str, test_name: str):
        self.driver = driver
        self.endpoint = endpoint
        self.test_name = test_name
        self.allowed: list[tuple[str, int]] = []      # (URL path regex, status) the test expects
        self.log: list[dict] = []                     # every browser log entry read so far

    # -- navigation and DOM ------------------------------------------------------------

    def open(self, route: str = "") -> None:
        """Loads the console (a full page load), at `#/...` when given."""
        self.driver.get(f"{self.endpoint}/console/{route}")

    def go(self, route: str) -> None:
        """Changes the hash route inside the running app (no page load)."""
        self.driver.execute_script("location.hash = arguments[0]", route.removeprefix("#"))

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def text(self, css: str) -> str | None:
        """The element's textContent (trimmed), or None when it is not there."""
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null", css)

    def count(self, css: str) -> int:
        return self.js("return document.querySelectorAll(arguments[0]).length", css)

    def texts(self, css: str) -> list[str]:
        return self.js("return [...document.querySelectorAll(arguments[0])].map(e => e.textContent.trim())", css)

    def attr(self, css: str, name: str) -> str | None:
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null",
                       css, name)

    def visible(self, css: str) -> bool:
        return bool(self.js("""
            const e = document.querySelector(arguments[0]);
            if (!e || e.closest('[hidden]')) return false;
            const r = e.getBoundingClientRect(), s = getComputedStyle(e);
            return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';""", css))

    def wait(self, probe, desc: str, timeout: float = WAIT):
        """Polls `probe()` (every 100 ms, bounded) until it returns something truthy; returns it."""
        deadline = time.monotonic() + timeout
        last_err = None
        while True:
            try:
                value = probe()
                if value:
                    return value
            except Exception as err:  # noqa: BLE001 - a stale element mid-render: look again
                from selenium.common.exceptions import WebDriverException
                if not isinstance(err, WebDriverException):
                    raise
                last_err = err
            if time.monotonic() >= deadline:
                self.screenshot(f"TIMEOUT-{self.test_name}")
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {desc} "
                                     f"(route {self.js('return location.hash')!r}"
                                     + (f"; last error {last_err!r}" if last_err else "") + ")")
            time.sleep(0.1)

    def wait_visible(self, css: str, timeout: float = WAIT):
        self.wait(lambda: self.visible(css), f"{css} to be visible", timeout)
        return self.el(css)

    def wait_text(self, css: str, pred, desc: str, timeout: float = WAIT) -> str:
        """Waits until `pred(text of css)` holds; returns that text."""
        def probe():
            t = self.text(css)
            return (t,) if t is not None and pred(t) else None
        return self.wait(probe, f"{css} {desc} (now {self.text(css)!r})", timeout)[0]

    def el(self, css: str):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        self.wait_visible(css)
        self.wait(lambda: self._try_click(css), f"{css} to take a click")

    def _try_click(self, css: str) -> bool:
        el = self.el(css)
        # Centred, so the sticky header cannot cover it (WebDriver scrolls it only to an edge).
        self.js("arguments[0].scrollIntoView({block: 'center', inline: 'nearest'})", el)
        el.click()
        return True

    def fill(self, css: str, value: str) -> None:
        el = self.wait_visible(css)
        el.clear()
        if value:
            el.send_keys(value)

    def choose(self, css: str, value: str) -> None:
        """Selects the option whose value (or else text) is `value` in the <select> `css`."""
        from selenium.webdriver.support.ui import Select
        self.wait(lambda: value in self.option_values(css) or value in self.option_texts(css),
                  f"{css} to offer {value!r} (offers {self.option_values(css)})")
        sel = Select(self.el(css))
        if value in self.option_values(css):
            sel.select_by_value(value)
        else:
            sel.select_by_visible_text(value)

    def option_values(self, css: str) -> list[str]:
        return self.js("const e = document.querySelector(arguments[0]); return e ? [...e.options].map(o => o.value) : []",
                       css)

    def option_texts(self, css: str) -> list[str]:
        return self.js("const e = document.querySelector(arguments[0]); return e ? [...e.options].map(o => o.text.trim()) : []",
                       css)

    # -- session -----------------------------------------------------------------------

    def sign_in(self, key: str = h.ACCESS_KEY, secret: str = h.SECRET_KEY) -> None:
        """Through the sign-in form; waits until the shell shows the key id."""
        if not self.driver.current_url.startswith(f"{self.endpoint}/console/"):
            self.open()
        self.wait_visible("#signin-form")
        self.fill("#signin-key-id", key)
        self.fill("#signin-secret", secret)
        self.click("#signin-submit")
        self.wait_text("#whoami", lambda t: key in t, f"to show {key}")

    def cookie(self) -> dict | None:
        return next((c for c in self.driver.get_cookies() if c["name"] == COOKIE), None)

    def session_doc(self) -> dict:
        """GET /console/session from inside the page (cookie); the CSRF token for raw calls."""
        doc = self.driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/console/session', {credentials: 'same-origin'})
              .then(r => r.json().then(b => done({status: r.status, body: b})))
              .catch(e => done({status: 0, body: String(e)}));""")
        assert doc["status"] == 200, f"GET /console/session from the page: {doc}"
        return doc["body"]

    # -- screenshots and the browser log -------------------------------------------------

    def screenshot(self, name: str) -> Path:
        path = artifacts_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        self.driver.save_screenshot(str(path))
        SAVED.append(path)
        return path

    def full_screenshot(self, name: str, width: int | None = None, path: Path | None = None) -> Path:
        """The whole page (not only the viewport), through the DevTools protocol."""
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        w = width or int(self.js("return window.innerWidth"))
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": w, "height": int(size["height"]), "scale": 1}})
        path = path or artifacts_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        SAVED.append(path)
        return path

    def expect_http_error(self, path_regex: str, status: int) -> None:
        """Declares an HTTP error answer this test provokes on purpose (the browser logs it)."""
        self.allowed.append((path_regex, status))

    def _allowed(self, entry: dict) -> bool:
        if entry.get("source") != "network":
            return False
        changed = NETWORK_CHANGED.match(entry.get("message", ""))
        if changed:
            url = urllib.parse.urlsplit(changed.group(1))
            return f"{url.scheme}://{url.netloc}" == self.endpoint
        m = NETWORK_ERROR.match(entry.get("message", ""))
        if not m:
            return False
        url = urllib.parse.urlsplit(m.group(1))
        status = int(m.group(2))
        if f"{url.scheme}://{url.netloc}" != self.endpoint:
            return any(re.fullmatch(p, m.group(1)) and s == status for p, s in self.allowed)
        if url.path == "/console/session" and status == 401:
            return True  # the contract's "not signed in" (asked on every load)
        return any(re.fullmatch(p, url.path) and s == status for p, s in self.allowed)

    def read_log(self) -> list[dict]:
        entries = self.driver.get_log("browser")
        self.log.extend(entries)
        return entries

    def severe(self, entries: list[dict] | None = None) -> list[dict]:
        entries = self.read_log() if entries is None else entries
        return [e for e in entries if e.get("level") == "SEVERE" and not self._allowed(e)]

    def assert_no_errors(self, where: str) -> None:
        bad = self.severe()
        assert not bad, f"browser console errors on {where}:\n" + "\n".join(
            f"  [{e.get('source')}] {e.get('message')}" for e in bad)


def make_driver(chromium: str, chromedriver: str, width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--metrics-recording-only", "--password-store=basic"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(chromedriver))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


