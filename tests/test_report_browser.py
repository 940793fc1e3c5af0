"""The analysis report as a person sees it: headless Chromium opens report.html from disk, with no network, and
we check that it loads without a console error or a failed request and that the PCA and map images render.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in
NUL on file descriptors 3 and 4), so the test needs no Python package beyond the standard library. Skipped
where Chromium is absent (Debian: `apt-get install -y chromium chromium-driver`).

The screenshot is saved beside the test's report, and also into $ARITHLENS_SCREENSHOTS when that is set (for CI
artifacts). Also a script: `python tests/test_report_browser.py REPORT.html SHOT.png` screenshots any report.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--remote-debugging-pipe", "--window-size=1280,1000"]


class Browser:
    """Headless Chromium over the DevTools pipe: one page, its console and log events, screenshots."""

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0):
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3 and writes replies on fd 4
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, preexec_fn=child_fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._id, self.events = b"", 0, []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def call(self, method: str, params: dict | None = None, *, session: bool = False) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda m, i=self._id: m.get("id") == i)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def _wait(self, match) -> dict:
        end = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if match(message):
                    return message
                self.events.append(message)
            left = end - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buffer += chunk

    def open(self, path: Path) -> None:
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=True)
        self._wait(lambda m: m.get("method") == "Page.loadEventFired")

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                         session=True)["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and failed loads, as text."""
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning", "assert"):
                out.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                               for a in p["args"]))
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                entry = p["entry"]
                out.append(f"{entry['source']} {entry['level']}: {entry['text']} {entry.get('url', '')}")
        return out

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full_page},
                         session=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self._proc.wait(10)
        except (OSError, RuntimeError, TimeoutError, EOFError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        finally:
            os.close(self._to_chrome)
            os.close(self._from_chrome)


pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")

IMAGES = """Array.from(document.images).map(i => ({cls: i.className, alt: i.alt, src: i.src.slice(0, 22),
    ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}))"""


# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A small report from a tiny hand-built model (the same one test_analyze uses), in seconds."""
    from test_analyze import tiny_analysis_report

    return tiny_analysis_report(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def page(report, tmp_path_factory):
    browser = Browser(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    try:
        browser.open(report)
        shot = report.parent / "report_screenshot.png"
        browser.screenshot(shot)
        if os.environ.get("ARITHLENS_SCREENSHOTS"):
            keep = Path(os.environ["ARITHLENS_SCREENSHOTS"])
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, keep / shot.name)
        yield browser, shot
    finally:
        browser.close()


def test_report_loads_with_no_console_error_and_no_failed_request(page):
    browser, _ = page
    assert browser.evaluate("document.readyState") == "complete"
    assert browser.problems() == []
    # Nothing on the page asks for a resource outside the page itself.
    external = browser.evaluate("""Array.from(document.querySelectorAll('[src],[href]'))
        .map(e => e.getAttribute('src') || e.getAttribute('href'))
        .filter(u => !u.startsWith('data:') && !u.startsWith('#'))""")
    assert external == []


def test_pca_and_map_images_render(page):
    browser, _ = page
    images = browser.evaluate(IMAGES)
    assert images and all(i["ok"] and i["src"].startswith("data:image/png") for i in images), images
    kinds = {i["cls"] for i in images}
    assert {"figure-pca", "quanta-map", "figure-necessity", "figure-grid"} <= kinds
    maps = [i["alt"] for i in images if i["cls"] == "quanta-map"]
    assert "Failure Frequency Behavior Per Node" in maps and "Answer Impact Behavior Per Node" in maps
    # One PCA figure per study of the layer-0 heads at A2's position (P6 for 2 digits).
    pca = sorted(i["alt"].split()[0] for i in images if i["cls"] == "figure-pca")
    assert pca == ["P6L0H0", "P6L0H1"]


def test_the_page_shows_the_verdicts_and_the_position_table(page):
    browser, _ = page
    text = browser.evaluate("document.body.innerText")
    assert "Is one layer-0 head at P6 doing several jobs?" in text
    assert text.count("Verdict: not polysemantic") == 2
    cells = browser.evaluate("Array.from(document.querySelectorAll('table.positions td.hit')).length")
    assert cells == 2  # P7 and P8, the two copy positions


def test_screenshot_is_a_full_page_png(page):
    _, shot = page
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 1000 and height > 2000  # the whole page, not just the first screen


if __name__ == "__main__":
    if len(sys.argv) != 3 or CHROMIUM is None:
        sys.exit("usage: python tests/test_report_browser.py REPORT.html SHOT.png (needs chromium)")
    import tempfile

    with tempfile.TemporaryDirectory() as profile:
        b = Browser(CHROMIUM, Path(profile))
        try:
            b.open(Path(sys.argv[1]))
            b.screenshot(Path(sys.argv[2]))
            bad = [i for i in b.evaluate(IMAGES) if not i["ok"]]
            print("\n".join(b.problems()) or "no console problems", f"; {len(bad)} broken images")
        finally:
            b.close()
