"""`gan-tui serve` (issue 18): the attach dashboard in a web browser, owner only.

The token guard is checked on textual-serve's real aiohttp app; a real `serve` process
against a real detached run; and, where Chromium is installed (CI installs it: see
.ci/run), a headless browser that reads the dashboard and pauses the run with `p`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gan_tui import web
from gan_tui.serve import registry
from tests.conftest import run_cli
from tests.test_detach import WAIT_S, detached, status, wait_for  # noqa: F401 (fixture)

# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.1", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.org", False)])
def test_loopback_addresses(host, loopback):
    assert web.is_loopback(host) is loopback


def test_the_default_is_loopback():
    from gan_tui.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.public) == ("127.0.0.1", 8000, False)


@pytest.mark.parametrize("argv", [["--host", "0.0.0.0"], ["--host", "example.org"],
                                  ["--port", "0"], ["--port", "70000"]])
def test_a_bind_nobody_asked_for_is_refused_in_one_line(tmp_path, argv):
    out = run_cli("serve", *argv, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    if "--host" in argv:
        assert "--public" in out.stderr


def test_serve_needs_a_running_run(tmp_path):
    out = run_cli("serve", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "no runs under" in out.stderr


# ------------------------------------------------------------------ the token guard


def test_every_request_needs_the_token(tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    token = "s3cret-token"

    async def check() -> None:
        server = web.make_server(tmp_path, "127.0.0.1", 8000, token, [])
        server.command = "true"  # what a tab would start: nothing, here
        client = TestClient(TestServer(await server._make_app()))
        await client.start_server()
        try:
            for path in ("/", "/ws", "/static/js/textual.js", "/download/x",
                         "/?token=wrong", "/ws?token=s3cret"):
                response = await client.get(path)
                assert response.status == 403, path
                assert "token" in await response.text()
            page = await client.get(f"/?token={token}")
            assert page.status == 200
            assert "textual-terminal" in await page.text()
            cookie = page.cookies[web.cookie_name(8000)]
            assert cookie.value == token and cookie["httponly"]
            assert cookie["samesite"] == "Strict"
            # the page's own script and websocket come back with the cookie alone
            assert (await client.get("/static/js/textual.js")).status == 200
            ws = await client.ws_connect("/ws?width=80&height=24")
            await ws.close()
            # a page from elsewhere opening our websocket, cookie or not, is turned away
            with pytest.raises(Exception, match="403"):
                await client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
        finally:
            await client.close()
            gc.collect()  # the tab's subprocess transport, while its loop is open

    asyncio.run(check())


# ------------------------------------------------------------------ a real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # not listening yet: the URL is printed just before the port opens
        return 0


@pytest.fixture
def served(tmp_path: Path, detached: Path) -> Iterator[tuple[subprocess.Popen, str, int]]:  # noqa: F811
    """`gan-tui serve` on the detached run: (process, tokened URL, port); ended at the end."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gan_tui", "serve", str(detached),
                                "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        url = ""
        deadline = time.monotonic() + WAIT_S
        while not url and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"serve ended early (exit {process.wait()})"
            if line.startswith("Open: "):
                url = line.split()[1]
        assert url, "serve printed no URL"
        wait_for(lambda: get(url) == 200, "the server to answer")
        yield process, url, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def test_serve_listens_on_loopback_only_and_stopping_it_leaves_the_run(served, detached):  # noqa: F811
    process, url, port = served
    assert url.startswith(f"http://127.0.0.1:{port}/?token=")
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else
    assert get(f"http://127.0.0.1:{port}/") == 403
    assert get(f"http://127.0.0.1:{port}/?token=guess") == 403
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=WAIT_S) == 0
    assert "the run trains on" in process.stdout.read()
    step = wait_for(lambda: status(detached).get("step"), "steps")
    wait_for(lambda: status(detached).get("step", 0) > step, "training to go on")


# ------------------------------------------------------------------ a real browser

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")

# Every byte the page's websocket receives (what xterm.js draws), as text: the terminal
# is a canvas, so this is how a test reads the screen the browser was sent.
RECORD_SCREEN = """
(() => {
  const Real = window.WebSocket, decoder = new TextDecoder();
  window.__ganScreen = "";
  window.WebSocket = function (url, protocols) {
    const ws = protocols ? new Real(url, protocols) : new Real(url);
    ws.addEventListener("message", (e) => {
      if (typeof e.data !== "string")
        window.__ganScreen += decoder.decode(new Uint8Array(e.data), {stream: true});
    });
    return ws;
  };
  window.WebSocket.prototype = Real.prototype;
  Object.assign(window.WebSocket, Real);
})();
"""


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no chromium/chromedriver here (apt-get install chromium chromium-driver; "
                    ".ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                               {"source": RECORD_SCREEN})
        yield driver
    finally:
        driver.quit()


def test_a_browser_shows_the_dashboard_and_p_pauses_the_run(tmp_path, detached, served,  # noqa: F811
                                                            browser):
    from selenium.webdriver.common.by import By

    wait_for(lambda: status(detached).get("epoch", 0) >= 1, "an epoch of digits")
    _, url, _ = served
    browser.get(url)

    def screen() -> str:
        return browser.execute_script("return window.__ganScreen || ''")

    wait_for(lambda: "TRAINING" in screen(), "the header's state badge")
    text = screen()
    assert "bg · seed · cpu" in text  # the header names the run
    wait_for(lambda: "\u2580" * 4 in screen(), "digits drawn in half blocks")
    browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys("p")
    wait_for(lambda: registry.read_status(detached).get("state") == "paused",
             "the run to pause")
    wait_for(lambda: "PAUSED" in screen(), "the page to say so")
    browser.save_screenshot(str(tmp_path / "dashboard.png"))
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
