"""A batch never drops a header silently.

A header that reads one event (``X-User: "{{ event.userId }}"``) cannot go on a request that
carries many: the loader warns with file:line, and ``Engine.batch`` and the delivery worker
send each event as its own request, with its header. A header may read ``body`` (the body
exactly as sent), so single requests and batches are signed over the bytes on the wire. A
real local server receives the raw bytes and checks each signature.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import re

import pytest
from conftest import write_mappings
from pytest_httpserver import HTTPServer
from werkzeug import Response

from engine import ConfigError, Engine
from engine.deliver import DestinationWorker, HttpClient, RetryPolicy, drain
from engine.intake import Intake
from engine.store import DELIVERED, open_store

SECRET = "sign-s3cret-0001"

HEAD = """\
name: Hook
settings:
  type: object
  properties:
    base_url: {type: string}
    secret: {type: string, secret: true}
"""
USER_HEADER = HEAD + """\
defaults:
  request:
    url: "{{ settings.base_url }}/events"
    headers:
      X-User: "{{ event.userId }}"
      X-Kind: hook
batch:
  max_events: 10
  request: {url: "{{ settings.base_url }}/batch"}
actions:
  track:
    body: {event: {"@path": event.event}, user: {"@path": event.userId}}
"""
SIGNED = HEAD + """\
defaults:
  request:
    url: "{{ settings.base_url }}/events"
    headers:
      X-Signature: "{{ body | hmac_sha1(settings.secret) }}"
    query:
      n: "{{ body | length }}"
envelope:
  body: {batch: {"@path": items}, note: "ünïcode"}
batch:
  max_events: 10
  request: {url: "{{ settings.base_url }}/batch"}
actions:
  track:
    body: {event: {"@path": event.event}, user: {"@path": event.userId}, text: "{{ event.properties.text }}"}
"""


def track(n: int, text: str = "x") -> dict:
    return {"type": "track", "event": f"E{n}", "userId": f"u{n}", "messageId": f"m{n}",
            "properties": {"text": text}}


class Recorder:
    """What the vendor received: method, path, headers and the body's raw bytes."""

    def __init__(self):
        self.received: list[dict] = []

    def __call__(self, request) -> Response:
        self.received.append({"path": request.path, "query": request.args.to_dict(),
                              "headers": dict(request.headers), "raw": request.get_data()})
        return Response("{}", 200, content_type="application/json")


@pytest.fixture
def vendor():
    recorder = Recorder()
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request(re.compile(".*")).respond_with_handler(recorder)
    server.start()
    recorder.url = server.url_for("").rstrip("/")
    yield recorder
    server.clear()
    server.stop()


def deliver(tmp_path, engine: Engine, slug: str, settings: dict, events: list) -> list:
    """Accept ``events`` and let a delivery worker send them (batching on); their final states."""
    route = engine.route(slug, settings, environ={})
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        Intake(engine, [route], store).accept(events)
        worker = DestinationWorker(route, store, HttpClient(timeout=5), owner="test",
                                   policy=RetryPolicy(retry_for=60, backoff=1, max_backoff=2), rng=random.Random(1))
        drain([worker], store)
        return [store.get(r.id).state for r in store.list()]


# --------------------------------------------------------------------------- a header that reads the event

def test_loading_warns_with_file_and_line_which_header_makes_batches_impossible(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = Engine(write_mappings(tmp_path, {"hook.yaml": USER_HEADER}))
    assert [str(w) for w in engine.warnings] == [
        "mappings/destinations/hook.yaml:11: defaults.request.headers.X-User: 'headers.X-User' reads the event, "
        "which a batch request does not have (it carries many events): Hook sends each event as its own request, "
        "never a batch. To batch, set batch.request.headers.X-User to a value from items, body or settings "
        "(null leaves a header out)"]


def test_engine_batch_sends_each_event_alone_with_its_header_and_a_warning(tmp_path, caplog):
    engine = Engine(write_mappings(tmp_path, {"hook.yaml": USER_HEADER}))
    route = engine.route("hook", {"base_url": "https://hook.test"})
    outcomes = [engine.render(track(n), route) for n in (1, 2, 3)]
    with caplog.at_level(logging.WARNING, logger="engine.destination"):
        requests = engine.batch(route, outcomes)
        engine.batch(route, outcomes)
    assert [(r.url, r.headers.get("X-User"), r.headers.get("X-Kind")) for r in requests] == [
        ("https://hook.test/events", f"u{n}", "hook") for n in (1, 2, 3)]
    warned = [r.getMessage() for r in caplog.records if "not in batches" in r.getMessage()]
    assert warned == ["Hook: each event is sent as its own request, not in batches: headers.X-User reads the event"]


def test_the_worker_sends_each_event_alone_with_its_header(tmp_path, vendor):
    engine = Engine(write_mappings(tmp_path, {"hook.yaml": USER_HEADER}))
    states = deliver(tmp_path, engine, "hook", {"base_url": vendor.url}, [track(n) for n in (1, 2, 3)])
    assert states == [DELIVERED] * 3
    assert sorted((r["path"], r["headers"].get("X-User")) for r in vendor.received) == [
        ("/events", "u1"), ("/events", "u2"), ("/events", "u3")]


def test_overriding_the_header_in_the_batch_request_makes_batches_again(tmp_path, vendor):
    text = USER_HEADER.replace('request: {url: "{{ settings.base_url }}/batch"}',
                               'request: {url: "{{ settings.base_url }}/batch", '
                               'headers: {X-User: "{{ items | map(attribute=\'user\') | join(\',\') }}"}}')
    engine = Engine(write_mappings(tmp_path, {"hook.yaml": text}))
    assert engine.warnings == []
    states = deliver(tmp_path, engine, "hook", {"base_url": vendor.url}, [track(n) for n in (1, 2)])
    assert states == [DELIVERED] * 2
    [batch] = vendor.received
    assert (batch["path"], batch["headers"]["X-User"], batch["headers"]["X-Kind"]) == ("/batch", "u1,u2", "hook")


def test_a_header_reading_an_actions_vars_also_makes_batches_impossible(tmp_path):
    text = USER_HEADER.replace('X-User: "{{ event.userId }}"', 'X-User: "{{ vars.who }}"').replace(
        "  track:\n", "  track:\n    vars: {who: {\"@path\": event.userId}}\n")
    engine = Engine(write_mappings(tmp_path, {"hook.yaml": text}))
    assert "'headers.X-User' reads an action's vars" in str(engine.warnings[0])
    route = engine.route("hook", {"base_url": "https://hook.test"})
    requests = engine.batch(route, [engine.render(track(n), route) for n in (1, 2)])
    assert [r.headers["X-User"] for r in requests] == ["u1", "u2"]


# --------------------------------------------------------------------------- signing the body as sent

def signature(raw: bytes) -> str:
    return hmac.new(SECRET.encode(), raw, hashlib.sha1).hexdigest()


def test_a_single_request_is_signed_over_its_body_as_sent(tmp_path, vendor):
    engine = Engine(write_mappings(tmp_path, {"hook.yaml": SIGNED}))
    route = engine.route("hook", {"base_url": vendor.url, "secret": SECRET})
    [request] = engine.render(track(1, "café ☕"), route).requests
    HttpClient(timeout=5).send(request)
    [received] = vendor.received
    assert json.loads(received["raw"]) == {"batch": [{"event": "E1", "user": "u1", "text": "café ☕"}],
                                           "note": "ünïcode"}
    assert received["headers"]["X-Signature"] == signature(received["raw"])
    assert received["query"] == {"n": str(len(received["raw"].decode("utf-8")))}
    # the signature is made from the secret: shown masked, never in a repr
    assert request.to_dict()["headers"]["X-Signature"] == "***"
    assert SECRET not in repr(request) and SECRET not in json.dumps(request.to_dict())


def test_engine_batch_signs_the_batch_body_as_sent(tmp_path, vendor):
    engine = Engine(write_mappings(tmp_path, {"hook.yaml": SIGNED}))
    assert engine.warnings == []
    route = engine.route("hook", {"base_url": vendor.url, "secret": SECRET})
    [request] = engine.batch(route, [engine.render(track(n, "ü" * n), route) for n in (1, 2, 3)])
    HttpClient(timeout=5).send(request)
    [received] = vendor.received
    assert received["path"] == "/batch"
    assert [item["user"] for item in json.loads(received["raw"])["batch"]] == ["u1", "u2", "u3"]
    assert received["headers"]["X-Signature"] == signature(received["raw"])


def test_the_worker_signs_each_batch_it_sends(tmp_path, vendor):
    engine = Engine(write_mappings(tmp_path, {"hook.yaml": SIGNED.replace("max_events: 10", "max_events: 2")}))
    states = deliver(tmp_path, engine, "hook", {"base_url": vendor.url, "secret": SECRET},
                     [track(n, "x" * n) for n in range(5)])
    assert states == [DELIVERED] * 5
    assert [len(json.loads(r["raw"])["batch"]) for r in vendor.received] == [2, 2, 1]
    for received in vendor.received:
        assert received["headers"]["X-Signature"] == signature(received["raw"])


def test_a_value_reading_body_may_not_read_the_event(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = SIGNED.replace("{{ body | hmac_sha1(settings.secret) }}", "{{ (event.userId ~ body) | hmac_sha1(settings.secret) }}")
    with pytest.raises(ConfigError) as refused:
        Engine(write_mappings(tmp_path, {"hook.yaml": text}))
    assert {p.message for p in refused.value.problems} == {
        "a value that reads body reads body, settings and vars (and items in a batch), not event: compute what it "
        "needs in a var"}


def test_validate_prints_the_warning_and_passes(tmp_path, monkeypatch, capsys):
    from engine.cli import main
    monkeypatch.chdir(tmp_path)
    root = write_mappings(tmp_path, {"hook.yaml": USER_HEADER})
    assert main(["validate", str(root)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("mappings/destinations/hook.yaml:11: defaults.request.headers.X-User: "
                                   "'headers.X-User' reads the event")
    assert captured.out.startswith("ok: 1 destinations (hook)")


def test_the_shipped_destinations_load_without_warnings():
    assert Engine().warnings == []
