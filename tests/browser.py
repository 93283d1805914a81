"""Headless Chromium for tests and tools that look at a page.

Debian's ``chromium`` and ``chromium-driver`` (``deploy/local/bootstrap.sh`` installs them),
driven by Selenium with the driver's path given, so selenium-manager never looks for, let alone
downloads, a browser or a driver: the network is closed. The flags keep a headless browser off
the network but for the page it is pointed at.

Selenium's calls block; the gateway the page talks to usually serves in the caller's event
loop, so :class:`Browser` runs each call in a thread, and the loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Headless on a closed network: no GPU, no QUIC, no first-run, update, sync or background
#: requests; --no-sandbox because tests run as root, where Chromium's sandbox refuses to start.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: The page's visible text of the first element a CSS selector finds, or null: read in the
#: page in one step, so a card redrawn meanwhile cannot leave a stale reference behind.
_TEXT_OF = "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;"


def missing() -> str | None:
    """Why no browser can run here, or None when Chromium and its driver are installed."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not absent:
        return None
    return (
        f"{' and '.join(absent)} missing: install Debian's chromium and chromium-driver "
        "(`make bootstrap` does, as root)"
    )


class Browser:
    """One headless page; every call runs Selenium in a thread."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    async def open(self, url: str) -> None:
        await asyncio.to_thread(self.driver.get, url)

    async def text(self, selector: str) -> str | None:
        """The visible text of the first element matching ``selector``, or None."""
        found: Any = await asyncio.to_thread(self.driver.execute_script, _TEXT_OF, selector)
        return None if found is None else str(found)

    async def screenshot(self, path: Path) -> int:
        """The whole page, as tall as its content, at the window's width, as a PNG (asked of
        the browser's DevTools: a window screenshot stops at the viewport); returns its size
        in bytes."""
        size: Any = await asyncio.to_thread(
            self.driver.execute_script,
            "const e = document.documentElement; return [e.clientWidth, e.scrollHeight];",
        )
        clip = {"x": 0, "y": 0, "width": int(size[0]), "height": int(size[1]), "scale": 1}
        shot: dict[str, str] = await asyncio.to_thread(
            self.driver.execute_cdp_cmd,
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
        )
        png = base64.b64decode(shot["data"])
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        return await asyncio.to_thread(path.write_bytes, png)

    async def console_errors(self) -> list[str]:
        """Messages the page logged as errors (a script error, a refused resource)."""
        entries: list[dict[str, Any]] = await asyncio.to_thread(self.driver.get_log, "browser")
        return [str(e["message"]) for e in entries if e.get("level") == "SEVERE"]


@asynccontextmanager
async def headless_chromium(width: int = 1280, height: int = 900) -> AsyncIterator[Browser]:
    """A fresh headless Chromium with a profile of its own, quit on exit."""
    with tempfile.TemporaryDirectory(prefix="techx-chromium-") as profile:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for flag in _FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=str(CHROMEDRIVER))
        driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=service)
        try:
            yield Browser(driver)
        finally:
            await asyncio.to_thread(driver.quit)
