"""POST /sources/gladly: acknowledged at once, mapped afterwards by the SourceWorker.

A real server stores the webhook; the test then runs the SourceWorker (what the
background process runs) against a stand-in Gladly API that answers from the
saved responses in fixtures/gladly/api/v1/, and reads the outcome from the store.
"""
from __future__ import annotations

import base64
import json
import re
import time
import uuid
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Response

from engine.deliver import HttpClient
from engine.intake import Intake
from engine.paths import MAPPINGS_DIR
from engine.serve import SourceWorker, load_serve_config
from engine.serve.setup import build
from engine.store import DEAD, DELIVERED, QUEUED, REJECTED, RETRYING, SKIPPED
from serve_harness import GLADLY_TOKEN, HOOK_PASSWORD, HOOK_USER, Server, environment, write_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gladly"
GLADLY_AUTH = "Basic " + base64.b64encode(f"api@acme.example:{GLADLY_TOKEN}".encode()).decode()
PSEUDO = "source:gladly"
HOOK = (HOOK_USER, HOOK_PASSWORD)


class GladlyStandIn:
    """Answers GET /gladly/api/v1/<path> from the saved responses; ``failing`` paths answer that status."""

    def __init__(self):
        self.failing: dict[str, int] = {}

    def __call__(self, request):
        if request.headers.get("Authorization") != GLADLY_AUTH:
            return Response(json.dumps({"errors": [{"code": "unauthorized"}]}), 401, content_type="application/json")
        path = request.path.removeprefix("/gladly/")
        if path in self.failing:
            return Response("{}", self.failing[path], content_type="application/json")
        file = FIXTURES / f"{path}.json"
        if not file.is_file():
            return Response(json.dumps({"errors": [{"code": "not found"}]}), 404, content_type="application/json")
        return Response(file.read_text(encoding="utf-8"), 200, content_type="application/json")


@pytest.fixture(scope="module")
def gladly():
    stand_in = GladlyStandIn()
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request(re.compile("^/gladly/.*"), method="GET").respond_with_handler(stand_in)
    server.start()
    stand_in.url = server.url_for("/gladly").rstrip("/")
    yield stand_in
    server.clear()
    server.stop()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, gladly):
    folder = tmp_path_factory.mktemp("gladly")
    path = write_config(folder, "http://127.0.0.1:9", gladly.url)
    return build(load_serve_config(path, environment()), MAPPINGS_DIR, environment())


@pytest.fixture(scope="module")
def server(setup):
    with Server(setup.config.folder, "--config", "eventmap.yaml", "--intake-only", "--workers", "1") as running:
        yield running


@pytest.fixture(scope="module")
def store(setup, server):
    with setup.open_store() as opened:
        yield opened


@pytest.fixture
def worker(setup, store, gladly):
    gladly.failing.clear()
    intake = Intake(setup.engine, setup.routes, store, setup.config.delivery.dedupe_window)
    worker = SourceWorker(PSEUDO, setup.sources["gladly"], intake, store, HttpClient(timeout=5),
                          setup.config.delivery, jitter=lambda: 1.0)
    while worker.run_once(time.time() + 86400):   # what earlier tests left waiting is not this test's
        pass
    return worker


def payload(name: str, **changes) -> dict:
    """A saved webhook body with a fresh delivery id, so tests do not de-duplicate each other."""
    body = json.loads((FIXTURES / "payloads" / f"{name}.json").read_text(encoding="utf-8"))
    return {**body, "id": f"{body['id']}-{uuid.uuid4().hex[:8]}", **changes}


def pseudo(store, delivery_id: str):
    """The source:gladly delivery of one webhook delivery id."""
    for record in store.list(destination=PSEUDO, limit=100000):
        if record.message_id == f"gladly:{delivery_id}":
            found = store.get(record.id)
    return found


def mapped_id(record) -> str:
    """The message id of the event a webhook was mapped into, from the pseudo-delivery's reason."""
    return re.search(r"messageId ([^)\s]+)", record.reason).group(1)


def by_message_id(store, message_id: str) -> dict:
    return {r.destination: r for r in store.list(limit=100000) if r.message_id == message_id}


def test_the_webhook_needs_the_credentials_gladly_sends(server):
    body = payload("conversation-created")
    assert server.post("/sources/gladly", body, key=None).status_code == 401
    wrong = server.post("/sources/gladly", body, key=None, headers={
        "Authorization": "Basic " + base64.b64encode(f"{HOOK_USER}:nope".encode()).decode()})
    assert wrong.status_code == 401 and "credentials" in wrong.json()["message"]
    assert server.post("/sources/unknown", body, key=None).status_code == 404


def test_a_webhook_may_authenticate_with_a_static_header_instead(server, store):
    body = payload("ping")
    url = server.url + "/sources/gladly-token"
    assert requests.post(url, json=body, headers={"X-Webhook-Token": "nope"}, timeout=5).status_code == 401
    assert requests.post(url, json=body, auth=HOOK, timeout=5).status_code == 401     # not this source's credentials
    assert requests.post(url, json=body, headers={"X-Webhook-Token": HOOK_PASSWORD}, timeout=5).status_code == 200
    stored = [r for r in store.list(destination="source:gladly-token", limit=100000)
              if r.message_id == f"gladly-token:{body['id']}"]
    assert [r.state for r in stored] == [QUEUED]


def test_acknowledged_first_then_mapped_into_events_for_the_destinations(server, store, worker):
    body = payload("conversation-created")
    answer = _post(server, body)
    assert answer.status_code == 200
    queued = pseudo(store, body["id"])
    assert queued.state == QUEUED and queued.event == body     # durable before any lookup

    assert worker.run_once(time.time()) == 1
    done = pseudo(store, body["id"])
    assert done.state == DELIVERED
    assert "Gladly Conversation Created" in done.reason
    message_id = mapped_id(done)
    event = by_message_id(store, message_id)
    assert event["planhat"].state == QUEUED
    stored_event = store.get(event["planhat"].id).event
    assert stored_event["event"] == "Gladly Conversation Created"
    assert stored_event["userId"] == body["content"]["customerId"]
    assert stored_event["properties"]["agentName"]


def test_a_retried_webhook_is_stored_once(server, store, worker):
    body = payload("conversation-closed")
    assert _post(server, body).status_code == 200
    assert _post(server, body).status_code == 200      # Gladly retries with the same id
    records = [r for r in store.list(destination=PSEUDO, limit=100000) if r.message_id == f"gladly:{body['id']}"]
    assert sorted(r.state for r in records) == [QUEUED, SKIPPED]
    assert "duplicate" in [r for r in records if r.state == SKIPPED][0].reason


def test_a_worker_that_dies_after_intake_does_not_duplicate_events(server, store, worker, setup):
    body = payload("conversation-created")
    _post(server, body)
    now = time.time()
    leased = store.lease(PSEUDO, 1, "doomed", now, 5)
    assert len(leased) == 1
    worker.verdict(leased[0], now)       # events accepted, then the worker "dies" before finishing
    assert worker.run_once(now + 10) == 1  # the lease expired; another worker does it again
    message_id = mapped_id(pseudo(store, body["id"]))
    planhat = [r for r in store.list(destination="planhat", limit=100000) if r.message_id == message_id]
    assert sorted(r.state for r in planhat) == [QUEUED, SKIPPED]   # the second acceptance is a duplicate


def test_ping_is_skipped_with_the_reason(server, store, worker):
    body = payload("ping")
    _post(server, body)
    worker.run_once(time.time())
    done = pseudo(store, body["id"])
    assert done.state == SKIPPED and "PING" in done.reason


def test_a_deleted_customer_is_skipped_and_an_unknown_conversation_rejected(server, store, worker):
    deleted = payload("conversation-closed-customer-deleted")
    missing = payload("conversation-created", content={"customerId": "c", "conversationId": "no-such-conversation"})
    _post(server, deleted)
    _post(server, missing)
    assert worker.run_once(time.time()) == 2
    assert pseudo(store, deleted["id"]).state == SKIPPED
    rejected = pseudo(store, missing["id"])
    assert rejected.state == REJECTED
    assert "no-such-conversation does not exist" in rejected.errors[0]["message"]


def test_a_failing_lookup_is_retried_later_and_then_succeeds(server, store, worker, gladly):
    body = payload("conversation-created")
    conversation = f"api/v1/conversations/{body['content']['conversationId']}"
    gladly.failing[conversation] = 503
    _post(server, body)
    now = time.time()
    worker.run_once(now)
    waiting = pseudo(store, body["id"])
    assert waiting.state == RETRYING
    assert "HTTP 503" in waiting.last_error
    assert waiting.next_at == pytest.approx(now + worker.options.backoff, abs=0.5)
    assert worker.run_once(now) == 0                   # not due yet
    del gladly.failing[conversation]
    assert worker.run_once(waiting.next_at + 0.01) == 1
    assert pseudo(store, body["id"]).state == DELIVERED


def test_wrong_gladly_credentials_are_a_dead_letter_not_a_retry(server, store, setup, gladly):
    body = payload("conversation-created")
    _post(server, body)
    wrong = setup.engine.source("gladly", {**setup.config.webhooks["gladly"].settings, "api_token": "wrong-token"}, {})
    intake = Intake(setup.engine, setup.routes, store)
    SourceWorker(PSEUDO, wrong, intake, store, HttpClient(timeout=5)).run_once(time.time())
    dead = pseudo(store, body["id"])
    assert dead.state == DEAD
    assert "HTTP 401" in dead.reason and "credentials" in dead.reason
    assert "wrong-token" not in dead.reason


def _post(server, body):
    return requests.post(server.url + "/sources/gladly", json=body, auth=HOOK, timeout=10)


def test_no_secret_in_the_repr_of_the_configuration_or_setup(setup):
    config = load_serve_config(setup.config.folder / "eventmap.yaml", environment())
    shown = repr(config) + repr(setup) + repr(config.webhooks) + repr(config.write_keys)
    for secret in (HOOK_PASSWORD, GLADLY_TOKEN, "test-write-key-7f3a", "planhat-token", "crisp-key", "mobile-key"):
        assert secret not in shown
    assert "gladly" in shown and "planhat" in shown


def test_eventmap_deliver_maps_webhooks_a_server_only_stored(server, store, setup, gladly):
    """serve --intake-only on one host, eventmap deliver on another: the deliver side does the lookups."""
    import subprocess
    import sys
    body = payload("conversation-created")
    assert _post(server, body).status_code == 200
    assert pseudo(store, body["id"]).state == QUEUED
    done = subprocess.run([sys.executable, "-m", "engine", "deliver", "--config", "eventmap.yaml", "--until-idle",
                           "--dry-run"], cwd=setup.config.folder, env=environment(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    mapped = pseudo(store, body["id"])
    assert mapped.state == DELIVERED
    assert "Gladly Conversation Created" in mapped.reason
    assert GLADLY_TOKEN not in done.stdout + done.stderr
