"""A real server with the console turned on, a vendor stand-in behind it, and Debian's Chromium to look at it.

Shared by the console's browser tests and ``python -m tests.console_screenshots``.
Chromium is the system's (/usr/bin/chromium), driven by Playwright; nothing is downloaded.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser_harness import CHROMIUM, CHROMIUM_ARGS
from serve_harness import WRITE_KEY, Server, environment, wait_for, write_config
from vendor_server import Answer, VendorServer

from engine.store import open_store

FLAGS = CHROMIUM_ARGS  # one definition of the browser and its flags: browser_harness
CONSOLE_USER, CONSOLE_PASSWORD = "admin", "console-password-3d9f"
REFUSED_MARK = "refuse-me"   # an identify whose email holds this is refused by the Crisp stand-in (400: final)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"no {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright package is missing ({exc}): pip install '.[test]'"
    return None


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)


@contextmanager
def playwright_or_skip():
    """Playwright, to drive Debian's Chromium; without them the test skips, saying why (and fails instead
    under EVENTMAP_REQUIRE_BROWSER=1, as CI runs)."""
    missing = browser_missing()
    if missing:
        if require_browser():
            pytest.fail(f"the browser is required here (EVENTMAP_REQUIRE_BROWSER=1) but {missing}", pytrace=False)
        pytest.skip(f"no browser: {missing}")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        yield playwright


@contextmanager
def chromium_or_skip():
    """A launched Chromium (see playwright_or_skip), closed afterwards."""
    with playwright_or_skip() as playwright:
        launched = launch(playwright)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def console_page(browser, **options):
    """A page logged in to the console (HTTP Basic) with a 15 s default timeout; ``options`` go to
    ``new_context`` (a viewport). Its context is closed afterwards."""
    context = browser.new_context(http_credentials={"username": CONSOLE_USER, "password": CONSOLE_PASSWORD},
                                  **options)
    try:
        opened = context.new_page()
        opened.set_default_timeout(15_000)
        yield opened
    finally:
        context.close()


def refuse_marked(vendor: VendorServer, times: int | None = None) -> None:
    """Crisp answers 400 to identifies whose email holds REFUSED_MARK (``times`` times, or always)."""
    vendor.answer(Answer(400, {"error": "invalid email"}),
                  when=lambda r: r.path.startswith("/crisp") and REFUSED_MARK in str(r.body), times=times)


FAILING = "segment"   # with ``start(..., failing=True)``: a third destination the stand-in answers 500, for good
SHOP = "https://shop.example"   # the one page origin the web source allows


def start(folder: Path, vendor: VendorServer, failing: bool = False) -> Server:
    """``eventmap serve`` with destinations at ``vendor`` and the console behind HTTP Basic; the web source allows
    the origin SHOP only. ``failing``: a Segment destination too, which the stand-in answers 500 (it retries)."""
    more = f"{FAILING}:\n  settings: {{write_key: segment-key-0e4d, base_url: {vendor.url}/{FAILING}}}\n" if failing else ""
    if failing:
        vendor.answer(Answer(500, {"error": "upstream on fire"}), when=lambda r: r.path.startswith(f"/{FAILING}"))
    path = write_config(folder, vendor.url, "http://127.0.0.1:9", more)
    text = path.read_text(encoding="utf-8")
    text = text.replace(f"    write_key: {WRITE_KEY}\n", f"    write_key: {WRITE_KEY}\n    allowed_origins: [{SHOP}]\n", 1)
    # Crisp's own limit (5,000 a day) would space the stand-in's requests out by seconds
    text = text.replace("    types: [identify]\n", "    types: [identify]\n    limits: {rate: 100/s}\n", 1)
    path.write_text(text + "console:\n  username: admin\n  password: {env: TEST_CONSOLE_PASSWORD}\n", encoding="utf-8")
    env = {**environment(), "TEST_CONSOLE_PASSWORD": CONSOLE_PASSWORD}
    return Server(folder, "--config", "eventmap.yaml", "--workers", "2", env=env).start()


def settled(folder: Path, deadline: float = 30.0) -> dict:
    """The store's counts once nothing is queued, retrying or in flight."""
    with open_store("sqlite:///events.db", base=folder) as store:
        def quiet():
            counts = store.counts(time.time())
            busy = sum(per.get(s, 0) for per in counts.values() for s in ("queued", "retrying", "in_flight"))
            return counts if not busy else None
        return wait_for(quiet, deadline, "every delivery to settle")


def require_browser() -> bool:
    return os.environ.get("EVENTMAP_REQUIRE_BROWSER") == "1"
