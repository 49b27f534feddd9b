"""A real ``eventmap serve`` process for tests: started on a free port, stopped by its own pid.

The server prints ``listening on http://HOST:PORT`` once gunicorn has bound the
socket (``--port 0`` lets the kernel pick a free port), so tests wait for that
line with a deadline instead of sleeping.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import requests
from pytest_httpserver import HTTPServer

ROOT = Path(__file__).resolve().parents[1]
WRITE_KEY = "test-write-key-7f3a"
MOBILE_KEY = "mobile-key-from-env-91c2"
HOOK_USER, HOOK_PASSWORD = "gladly-hook", "hook-password-5e8d"
GLADLY_TOKEN = "gladly-api-token-2b6c"


def write_config(folder: Path, vendor_url: str, gladly_url: str, more_destinations: str = "") -> Path:
    """Two SDK sources (one key literal, one from the environment), a Gladly webhook, destinations
    whose base URLs point at a local stand-in, and the store in ``folder``."""
    text = f"""\
    storage: sqlite:///events.db
    delivery:
      backoff: 1s
    sources:
      web:
        write_key: {WRITE_KEY}
      mobile:
        write_key: {{env: TEST_MOBILE_WRITE_KEY}}
      gladly:
        webhook: gladly
        auth:
          basic: {{username: {HOOK_USER}, password: {{env: TEST_GLADLY_HOOK_PASSWORD}}}}
        settings:
          org: acme
          agent_email: api@acme.example
          base_url: {gladly_url}
      gladly-token:
        webhook: Gladly
        auth:
          headers: {{X-Webhook-Token: {{env: TEST_GLADLY_HOOK_PASSWORD}}}}
        settings: {{org: acme, agent_email: api@acme.example, base_url: {gladly_url}}}
    destinations:
      planhat:
        settings: {{tenant_token: planhat-token, base_url: {vendor_url}/planhat}}
      crisp:
        settings: {{api_key: "crisp-id:crisp-key", website_id: site-1, base_url: {vendor_url}/crisp}}
        types: [identify]
    """
    extra = textwrap.indent(textwrap.dedent(more_destinations), "  ")
    path = folder / "eventmap.yaml"
    path.write_text(textwrap.dedent(text) + extra, encoding="utf-8")
    return path


def environment() -> dict:
    # PYTHONPATH: the server runs this checkout's engine/, not a copy installed in the venv earlier
    return {**os.environ, "TEST_MOBILE_WRITE_KEY": MOBILE_KEY, "TEST_GLADLY_HOOK_PASSWORD": HOOK_PASSWORD,
            "EVENTMAP_GLADLY_API_TOKEN": GLADLY_TOKEN, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


class Server:
    """``eventmap serve`` in its own process group, so a test can SIGKILL all of it at once."""

    def __init__(self, folder: Path, *args: str, env: dict | None = None):
        self.folder = folder
        self.log = folder / f"server-{time.monotonic_ns()}.log"
        self.args = [sys.executable, "-m", "engine", "serve", "--port", "0", *args]
        self.env = env or environment()
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self, deadline: float = 30.0) -> Server:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(self.args, cwd=self.folder, env=self.env, stdout=out, stderr=out,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            found = re.search(r"listening on (http://\S+)", self.output())
            if found:
                self.url = found.group(1)
                return self
            if self.process.poll() is not None:
                raise AssertionError(f"eventmap serve exited with {self.process.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"eventmap serve did not start within {deadline}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def post(self, path: str, body=None, *, key: str | None = WRITE_KEY, data: bytes | None = None,
             headers: dict | None = None) -> requests.Response:
        auth = (key, "") if key is not None else None
        if data is None:
            return requests.post(self.url + path, json=body, auth=auth, headers=headers, timeout=10)
        return requests.post(self.url + path, data=data, auth=auth, timeout=10,
                             headers={"Content-Type": "application/json", **(headers or {})})

    def stop(self) -> None:
        """SIGTERM the master (gunicorn drains and stops the background process), then wait."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL every process of this server (master, server processes, background)."""
        if self.process:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self.process and self.process.poll() is None:
            self.kill()


@contextmanager
def ok_vendor():
    """One stand-in for every vendor on a free localhost port: any request is answered 200 {"ok": true}."""
    vendor = HTTPServer(host="127.0.0.1", port=0)
    vendor.expect_request(re.compile(".*")).respond_with_json({"ok": True})
    vendor.start()
    try:
        yield vendor
    finally:
        vendor.clear()
        vendor.stop()


def wait_for(check, deadline: float = 10.0, what: str = "condition"):
    """Poll ``check()`` until it returns something truthy; fail with ``what`` after the deadline."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class BatchSenders:
    """Threads that post batches of tracks to /v1/batch until stopped or the server is gone (a SIGKILL test);
    ``acknowledged`` holds the messageIds of every batch answered 200."""

    def __init__(self, url: str, threads: int = 4, per_batch: int = 20):
        self.url, self.per_batch = url, per_batch
        self.acknowledged: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send) for _ in range(threads)]

    def __enter__(self) -> BatchSenders:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _send(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            ids = [f"kill-{uuid.uuid4()}" for _ in range(self.per_batch)]
            batch = [{"type": "track", "userId": "u", "event": "Tick", "messageId": m} for m in ids]
            try:
                answer = session.post(self.url + "/v1/batch", json={"batch": batch}, auth=(WRITE_KEY, ""), timeout=5)
            except requests.RequestException:
                return   # the server is gone
            if answer.status_code == 200:
                with self._lock:
                    self.acknowledged.extend(ids)
