"""What the JavaScript SDK tests need: node, the npm packages in tests/js, Debian's chromium, a page server.

Missing pieces skip the tests with the command that installs them, unless
EVENTMAP_REQUIRE_BROWSER=1 (set by .ci/run), where they fail: CI must run them.
"""
from __future__ import annotations

import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.store import open_store

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "tests" / "js"
CHROMIUM = Path(os.environ.get("EVENTMAP_CHROMIUM", "/usr/bin/chromium"))
UMD = JS / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"
# the flags that work in a container as root, with no network beyond localhost
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing(reason: str):
    if os.environ.get("EVENTMAP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the JavaScript SDK tests are required here (EVENTMAP_REQUIRE_BROWSER=1) but {reason}",
                    pytrace=False)
    pytest.skip(reason)


def require_node() -> str:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (apt-get install nodejs npm)")
    if not (JS / "node_modules" / "@segment").is_dir():
        missing("the SDKs are not installed: run `npm ci` in tests/js")
    return node


def require_chromium() -> Path:
    require_node()
    if not CHROMIUM.exists():
        missing(f"no browser at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("the playwright package is not installed (pip install '.[test]')")
    return CHROMIUM


class PageServer:
    """A second origin: serves one HTML page at / (``html``, settable) and analytics.js's bundles from node_modules."""

    def __init__(self, html: str):
        self.html = html
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.split("?")[0].lstrip("/")
                if name == "":
                    body, kind = outer.html.encode("utf-8"), "text/html; charset=utf-8"
                elif "/" not in name and (UMD / name).is_file():
                    body, kind = (UMD / name).read_bytes(), "text/javascript"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def stored_events(folder: Path, destination: str = "planhat") -> list[dict]:
    """Every event the server stored for ``destination``, oldest first."""
    with open_store("sqlite:///events.db", base=folder) as store:
        return [store.get(record.id).event for record in store.list(destination=destination, limit=100000)]
