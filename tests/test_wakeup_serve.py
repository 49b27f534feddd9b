"""Through a real ``eventmap serve``: an event sent by an SDK reaches a stand-in vendor well inside the poll.

The configuration polls every 5 s (``delivery.poll``), so an event that arrives
within half a second of its 200 was woken, not found by a poll: on SQLite and
PostgreSQL, with ``intake: validate`` (the server process writes the delivery)
and ``intake: queue`` (the background process's inbox processor is woken, and
its write wakes the destination's workers), and from a webhook source (its
payload wakes the source worker, whose events wake the destinations).
"""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from serve_harness import HOOK_PASSWORD, HOOK_USER, WRITE_KEY, Server, environment
from test_serve_gladly import GladlyStandIn
from vendor_server import VendorServer

POLL = 5.0
QUICK = 0.5
BASIC = "Basic " + base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()
GLADLY_PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "gladly" / "payloads"


@pytest.fixture
def vendor():
    with VendorServer() as server:
        yield server


def arrived_within(vendor: VendorServer, message_id: str, seconds: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if message_id in vendor.delivered_ids():
            return time.monotonic() - began
        time.sleep(0.002)
    return None


def write(folder: Path, storage: str, intake: str, vendor_url: str, sources: str = "") -> None:
    """The configuration: one SDK source (and ``sources``, lines of YAML under ``sources:``), Segment as the one
    destination, delivered to ``vendor_url``, and the poll at ``POLL``."""
    (folder / "eventmap.yaml").write_text(textwrap.dedent(f"""\
        storage: '{storage}'
        delivery: {{poll: {POLL:g}s}}
        server: {{intake: {intake}}}
        sources:
          web: {{write_key: {WRITE_KEY}}}
        """) + textwrap.indent(textwrap.dedent(sources), "  ") + textwrap.dedent(f"""\
        destinations:
          segment: {{settings: {{write_key: downstream, base_url: '{vendor_url}'}}}}
        """), encoding="utf-8")


@pytest.mark.parametrize("intake", ["validate", "queue"])
def test_an_sdk_event_reaches_the_vendor_well_inside_the_poll(backend, intake, vendor, tmp_path):
    storage = "sqlite:///events.db" if backend.name == "sqlite" else backend.url
    write(tmp_path, storage, intake, vendor.url)
    if backend.name == "postgres":
        upgrade = subprocess.run([sys.executable, "-m", "engine", "db", "upgrade", "--config", "eventmap.yaml"],
                                 cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=60)
        assert upgrade.returncode == 0, upgrade.stderr
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1") as server:
        took = []
        for n in range(4):   # the first one is delivered once the background process has started: not timed
            message_id = f"sdk-{n}-{uuid.uuid4()}"
            answer = server.post("/v1/track", {"userId": "u1", "event": "Signed Up", "messageId": message_id})
            assert answer.status_code == 200, answer.text
            took.append(arrived_within(vendor, message_id, 3 * POLL))
            assert took[-1] is not None, server.output()
            time.sleep(0.3)   # longer than batch_wait: each event is alone, and the workers idle again
        assert max(took[1:]) < QUICK, (took, server.output())


def test_a_webhook_payload_reaches_the_vendor_well_inside_the_poll(vendor, tmp_path):
    gladly = GladlyStandIn()
    api = HTTPServer(host="127.0.0.1", port=0)
    api.expect_request(re.compile("^/gladly/.*"), method="GET").respond_with_handler(gladly)
    api.start()
    try:
        write(tmp_path, "sqlite:///events.db", "validate", vendor.url, f"""\
            gladly:
              webhook: gladly
              auth: {{basic: {{username: {HOOK_USER}, password: {HOOK_PASSWORD}}}}}
              settings: {{org: acme, agent_email: api@acme.example, base_url: '{api.url_for("/gladly").rstrip("/")}'}}
            """)
        body = json.loads((GLADLY_PAYLOADS / "conversation-created.json").read_text(encoding="utf-8"))
        body["id"] = f"{body['id']}-{uuid.uuid4().hex[:8]}"
        with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1") as server:
            ready = f"ready-{uuid.uuid4()}"   # delivered once the background process has started
            assert server.post("/v1/track", {"userId": "u1", "event": "Ready", "messageId": ready}).status_code == 200
            assert arrived_within(vendor, ready, 3 * POLL) is not None, server.output()
            time.sleep(0.3)
            began = time.monotonic()
            answer = server.post("/sources/gladly", body, key=None, headers={"Authorization": BASIC})
            assert answer.status_code == 200, answer.text
            while time.monotonic() - began < 2 * POLL and not any(
                    "Gladly Conversation Created" in json.dumps(r.body) for r in list(vendor.received)):
                time.sleep(0.005)
            took = time.monotonic() - began
            # the source worker's two lookups to the Gladly stand-in are on the way too
            assert took < 2 * QUICK, (took, server.output())
    finally:
        api.clear()
        api.stop()
