"""The app in a real browser: `perbench app` on localhost, Debian's chromium via Playwright.

Visits every page of the app on the tiny fixture grid's results, waits for each page's key
elements (Streamlit draws its dataframe on a canvas and charts through Vega, so the test
waits for those) and saves a screenshot per page to ``$PERBENCH_SCREENSHOTS`` (default: the
test's temporary folder). Marked ``browser``: `tox -e browser` runs it, and `.ci/run` too.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

# (url path, a text the page must show, Vega charts it draws at least, has a table)
PAGES = [
    ("", "PERBench leaderboard", 1, True),
    ("Trade-offs", "Performance, efficiency, robustness", 2, False),
    ("Method", "Robust accuracy per attack", 3, False),
    ("Compare", "Compare two methods", 0, True),
    ("Claims", "Paper claims against this leaderboard", 0, True),
    ("Transfer", "Transfer attacks", 1, True),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(finished, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "app", str(finished),
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "STREAMLIT_SERVER_ADDRESS": "127.0.0.1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass  # not listening yet: try again until the deadline
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        # The closed network here refuses chromium's background connections: switch them off.
        b = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.mark.parametrize("path, text, charts, table", PAGES)
def test_page_renders_in_chromium(app_url, browser, path, text, charts, table, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{app_url}/{path}", wait_until="networkidle", timeout=60_000)
    page.get_by_text(text, exact=False).first.wait_for(timeout=60_000)
    if charts:
        page.wait_for_function(
            f"document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= {charts}",
            timeout=60_000)
    if table:  # st.dataframe is a canvas grid: wait until it is drawn
        page.locator("[data-testid='stDataFrame'] canvas").first.wait_for(timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0, page.content()[:2000]
    assert not errors, errors
    shots = Path(os.environ.get("PERBENCH_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{path or 'Leaderboard'}.png"), full_page=True)
    page.close()
