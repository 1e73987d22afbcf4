"""A real browser for tests of the edge's pages: Debian's headless Chromium, driven by Selenium.

    with Browser(artifacts=tmp_path) as b:
        b.get("https://api.edge.localhost:8443/")
        b.find("#email").send_keys("ops@example.com")
        b.screenshot("sign-in")              # tmp_path/sign-in.png, kept as an artifact

Why it is shaped this way:
- Debian's ``chromium`` and ``chromium-driver`` (the same release, so they
  always match) rather than a downloaded browser: nothing but apt is reachable,
  and Selenium Manager would try to fetch one. Selenium is told the driver's
  path, so it never does.
- ``--no-sandbox`` because tests run as root in a private namespace (Chromium
  refuses its sandbox as root); ``--headless=new`` is the full browser without
  a window, the one users run.
- Names resolve to the test's loopback edge through ``--host-resolver-rules``
  (``MAP * 127.0.0.1``), so pages load by their real public names (cookies,
  redirects, Host routing) without /etc/hosts; ``--ignore-certificate-errors``
  unless the test passes the CA (the internal CA is the test's own).
- The driver and the browser it starts are killed by PID on close, whatever
  happened, including any child Chromium left behind.
"""

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Optional

from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from websocket import WebSocketTimeoutException, create_connection  # websocket-client, selenium's own dependency

CHROMIUM = "/usr/bin/chromium"
# Raised by a lookup during a navigation (the old page's element is gone, the new one not there yet).
NAVIGATING = (NoSuchElementException, StaleElementReferenceException)
DRIVER = "/usr/bin/chromedriver"


class Browser:
    def __init__(self, artifacts: Path, resolve_to: str = "127.0.0.1", width: int = 1280, height: int = 900):
        self.artifacts = Path(artifacts)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--ignore-certificate-errors", f"--window-size={width},{height}",
                    f"--host-resolver-rules=MAP * {resolve_to}", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update"):
            options.add_argument(arg)
        self._service = DriverService(executable_path=DRIVER, log_output=str(self.artifacts / "chromedriver.log"))
        self.driver: Optional[webdriver.Chrome] = webdriver.Chrome(service=self._service, options=options)
        self.driver.set_page_load_timeout(30)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def get(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str, timeout: float = 30):
        """The first element matching ``css``, waiting up to ``timeout`` seconds for it."""
        return WebDriverWait(self.driver, timeout, ignored_exceptions=NAVIGATING).until(
            lambda d: d.find_element(By.CSS_SELECTOR, css))

    def find_all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, what: str, fn, timeout: float = 30):
        """Poll ``fn(driver)`` until truthy; the failure names ``what``. An element that went away or is
        not there yet while a page loads (a redirect, a refresh) means "not yet", never a failure."""
        return WebDriverWait(self.driver, timeout, ignored_exceptions=NAVIGATING).until(
            fn, message=f"waiting for {what}")

    @property
    def url(self) -> str:
        return self.driver.current_url

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def devtools(self) -> "DevTools":
        """A DevTools connection of our own to the current page, for what Selenium cannot do
        (events: holding a navigation's request to read it before the browser sends it)."""
        address = self.driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
        with urllib.request.urlopen("http://{}/json/list".format(address), timeout=10) as resp:
            pages = [t for t in json.load(resp) if t["type"] == "page"]
        handle = self.driver.current_window_handle   # Selenium's handle is the page's target id
        [page] = [t for t in pages if t["id"] == handle] or pages[:1]
        return DevTools(page["webSocketDebuggerUrl"])

    def close(self) -> None:
        """Quit politely, then kill the driver's process group by PID (the browser is its child)."""
        driver, self.driver = self.driver, None
        if driver is None:
            return
        proc = self._service.process
        browsers = _children(proc.pid) if proc else []
        try:
            driver.quit()
        except Exception:  # a wedged browser: the kills below are what count
            pass
        for pid in browsers + ([proc.pid] if proc else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


class DevTools:
    """One DevTools (CDP) connection to a page, beside chromedriver's: commands and events.

        with browser.devtools() as dt:
            dt.send("Fetch.enable", {"patterns": [{"urlPattern": "*/signin?*"}]})
            dt.send("Runtime.evaluate", {"expression": "document.forms[0].submit()"})
            ev = dt.event("Fetch.requestPaused", timeout=15)   # the request, held
    """

    def __init__(self, ws_url: str):
        self._ws = create_connection(ws_url, timeout=10, suppress_origin=True)
        self._id = 0
        self._events: list = []

    def __enter__(self) -> "DevTools":
        return self

    def __exit__(self, *exc) -> bool:
        self._ws.close()
        return False

    def send(self, method: str, params: Optional[dict] = None) -> dict:
        """The result of one command (events arriving meanwhile are kept for event())."""
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError("{}: {}".format(method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self._events.append(msg)

    def event(self, method: str, timeout: float = 15) -> dict:
        """The params of the next event named method, waiting up to timeout seconds."""
        end = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self._events):
                if msg["method"] == method:
                    return self._events.pop(i)["params"]
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no {} within {} s".format(method, timeout))
            self._ws.settimeout(left)
            try:
                msg = json.loads(self._ws.recv())
            except WebSocketTimeoutException:
                continue
            if "method" in msg:
                self._events.append(msg)


def _children(pid: int) -> list:
    """Every descendant of ``pid`` (Chromium forks zygotes and renderers), read from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        frontier += kids
    return found
