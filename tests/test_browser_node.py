"""The real ``@segment/analytics-node`` SDK against ``eventmap serve``, as tests/test_serve.py does with
analytics-python: identify and track, queued into batches, stored for each destination."""
from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from browser_harness import JS, require_node, stored_events
from serve_harness import WRITE_KEY, Server, write_config


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("node-sdk")
    write_config(folder, "http://127.0.0.1:9", "http://127.0.0.1:9/gladly")
    with Server(folder, "--config", "eventmap.yaml", "--intake-only", "--workers", "1") as running:
        yield running


def run_sdk(server, key: str, user_id: str) -> dict:
    node = require_node()
    done = subprocess.run([node, "node-sdk.mjs", server.url, key, user_id], cwd=JS, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_identify_and_track_from_analytics_node_arrive_in_batches_and_are_stored(server):
    who = f"node-{uuid.uuid4().hex[:8]}"
    result = run_sdk(server, WRITE_KEY, who)

    assert result["errors"] == []
    assert len(result["delivered"]) == 27
    posts = [x for x in result["exchanges"] if x.get("method") == "POST"]
    assert posts and all(x["url"] == server.url + "/v1/batch" and x["auth"] for x in posts)
    assert len(posts) >= 3                                  # 27 events, at most 10 a batch
    assert {x["status"] for x in result["exchanges"] if "status" in x} == {200}

    stored = {e["messageId"]: e for e in stored_events(server.folder) if e.get("userId") == who}
    assert set(stored) == {d["messageId"] for d in result["delivered"]}
    identify = next(e for e in stored.values() if e["type"] == "identify")
    assert identify["traits"] == {"email": f"{who}@example.com", "plan": "pro"}
    assert identify["context"]["library"]["name"] == "@segment/analytics-node"
    assert identify["context"]["ip"] == "127.0.0.1"
    order = next(e for e in stored.values() if e.get("event") == "Order Completed")
    assert order["properties"] == {"order_id": "o-1", "revenue": 42.5}
    assert "writeKey" not in order and "receivedAt" in order


def test_an_unknown_write_key_is_refused_and_the_sdk_says_so(server):
    who = f"node-{uuid.uuid4().hex[:8]}"
    result = run_sdk(server, "not-a-key", who)
    assert result["delivered"] == []
    assert {x["status"] for x in result["exchanges"] if "status" in x} == {401}
    assert result["errors"]
    assert [e for e in stored_events(server.folder) if e.get("userId") == who] == []
