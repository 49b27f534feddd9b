"""The Webhook's key rules, through the shipped mapping: the event as the body, method and headers from
settings, and a signature a real receiver can check over the bytes it got, for one event and a batch."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from contracts import DESTINATIONS
from werkzeug.wrappers import Response as WerkzeugResponse

from engine import HttpClient, send

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "webhook.json").read_text(encoding="utf-8"))
SECRET = SETTINGS["shared_secret"].encode()
EVENTS = ROOT / "fixtures" / "events"
TRACK = json.loads((EVENTS / "track-non-ascii.json").read_text(encoding="utf-8"))   # "Commande passée", 🙏


def route(engine, batch: bool = False, **settings):
    made = engine.route("webhook", {**SETTINGS, **settings}, environ={})
    return dataclasses.replace(made, limits=dataclasses.replace(made.limits, batch=batch)) if batch else made


def render(engine, event, **settings):
    return engine.render(event, route(engine, **settings))


def sha1(body: bytes) -> str:
    return hmac.new(SECRET, body, hashlib.sha1).hexdigest()


def test_the_body_is_the_event_as_received(engine):
    (request,) = render(engine, TRACK).requests
    assert request.body == TRACK
    assert json.loads(request.encoded_body()) == TRACK and "Commande passée".encode() in request.encoded_body()
    assert request.method == "POST" and request.url == SETTINGS["url"]


def test_every_call_type_goes_out(engine):
    for path in sorted(EVENTS.glob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        outcome = render(engine, event)
        if outcome.status == "send":
            assert [r.body for r in outcome.requests] == [event]
        else:   # only what the Segment spec refuses, or what the event's integrations turn off
            assert outcome.status in ("rejected", "skipped") and ("Segment spec" in (outcome.reason or "")
                                                                  or "integrations" in (outcome.reason or "")), path


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_the_method_comes_from_settings(engine, method):
    assert render(engine, TRACK, method=method).requests[0].method == method


def test_a_method_segment_does_not_offer_is_a_settings_error(engine):
    from engine.problems import ConfigError
    with pytest.raises(ConfigError, match="method"):
        engine.route("webhook", {**SETTINGS, "method": "DELETE"}, environ={})


def test_custom_headers_authorization_and_the_signature(engine):
    (request,) = render(engine, TRACK).requests
    headers = request.headers
    assert headers["X-Tenant"] == "acme" and headers["X-Source"] == "eventmap-test"
    assert headers["Authorization"] == SETTINGS["authorization"]
    assert headers["X-Signature"] == sha1(request.encoded_body())
    shown = request.to_dict()["headers"]   # what logs and the console show: the credential masked
    assert SETTINGS["authorization"].split()[1] not in json.dumps(shown) and shown["X-Tenant"] == "acme"


def test_sha256_is_selectable(engine):
    (request,) = render(engine, TRACK, signature_sha256=True).requests
    assert request.headers["X-Signature"] == hmac.new(SECRET, request.encoded_body(), hashlib.sha256).hexdigest()


def test_without_a_shared_secret_there_is_no_signature(engine):
    (request,) = render(engine, TRACK, shared_secret=None).requests
    assert "X-Signature" not in request.headers


def test_a_custom_header_cannot_replace_the_signature_or_authorization(engine):
    headers = {"x-signature": "forged", "AUTHORIZATION": "Basic forged", "X-Tenant": "acme"}
    (request,) = render(engine, TRACK, headers=headers).requests
    assert request.headers["X-Signature"] == sha1(request.encoded_body())
    assert request.headers["Authorization"] == SETTINGS["authorization"]
    assert "x-signature" not in request.headers and "AUTHORIZATION" not in request.headers


@pytest.mark.parametrize("headers", [{"X Bad": "1"}, {"X-Tenant": "é"}])
def test_headers_that_are_not_ascii_tokens_are_a_settings_error(engine, headers):
    from engine.problems import ConfigError
    with pytest.raises(ConfigError, match="headers"):
        engine.route("webhook", {**SETTINGS, "headers": headers}, environ={})


def test_base_url_keeps_the_path_and_query(engine):
    (request,) = render(engine, TRACK, base_url="http://127.0.0.1:9/").requests
    assert request.url == "http://127.0.0.1:9/eventmap/ingest?token=testwebhooktoken0001"


def test_the_url_is_a_secret(engine):
    (request,) = render(engine, TRACK).requests
    assert request.to_dict()["url"] == "***"


def test_batching_is_off_unless_the_route_turns_it_on(engine):
    events = [{**TRACK, "messageId": f"m{i}"} for i in range(3)]
    plain = route(engine)
    assert [r.body for r in engine.batch(plain, [engine.render(e, plain) for e in events])] == events
    batched = route(engine, batch=True)
    (request,) = engine.batch(batched, [engine.render(e, batched) for e in events])
    assert request.body == events and request.headers["X-Signature"] == sha1(request.encoded_body())


def test_batches_hold_at_most_1000_events_and_1_mb(engine):
    batched = route(engine, batch=True)
    small = [engine.render({**TRACK, "messageId": f"m{i}"}, batched) for i in range(2001)]
    assert [len(r.body) for r in engine.batch(batched, small)] == [1000, 1000, 1]
    big = {**TRACK, "properties": {"note": "x" * 300_000}}
    large = [engine.render({**big, "messageId": f"b{i}"}, batched) for i in range(7)]
    requests = engine.batch(batched, large)
    assert [len(r.body) for r in requests] == [3, 3, 1]
    assert all(len(r.encoded_body()) <= 1_000_000 for r in requests)


def test_the_contract_checks_every_signature(engine):
    """The contract's own check recomputes the HMAC: a request whose body changed after signing fails it."""
    (request,) = render(engine, TRACK).requests
    assert DESTINATIONS["webhook"].violations(request)[0] == []
    tampered = dataclasses.replace(request, body={**TRACK, "event": "Other"}, wire=None)
    found = DESTINATIONS["webhook"].violations(tampered)[0]
    assert [(v.where, v.rule) for v in found] == [("headers.x-signature", "signature")]


# --------------------------------------------------------------------------- a real receiver checks it

def verifying(received: list):
    """A receiver that recomputes X-Signature over the raw bytes it got, as a webhook consumer would."""
    def handler(request):
        raw = request.get_data()
        algorithm = hashlib.sha256 if len(request.headers.get("X-Signature", "")) == 64 else hashlib.sha1
        good = hmac.compare_digest(request.headers.get("X-Signature", ""), hmac.new(SECRET, raw, algorithm).hexdigest())
        received.append((request.method, request.headers.get("X-Tenant"), json.loads(raw), good))
        return WerkzeugResponse("ok" if good else "bad signature", status=200 if good else 401)
    return handler


def test_a_receiver_verifies_the_signature_of_one_event(engine, httpserver):
    received: list = []
    httpserver.expect_request("/eventmap/ingest", method="PUT").respond_with_handler(verifying(received))
    base = httpserver.url_for("").rstrip("/")
    for sha256 in (False, True):
        (request,) = render(engine, TRACK, base_url=base, method="PUT", signature_sha256=sha256).requests
        delivery = send(HttpClient(), request)
        assert delivery.delivered and delivery.status == 200
    assert received == [("PUT", "acme", TRACK, True)] * 2


def test_a_receiver_verifies_the_signature_of_a_batch(engine, httpserver):
    received: list = []
    httpserver.expect_request("/eventmap/ingest").respond_with_handler(verifying(received))
    batched = route(engine, batch=True, base_url=httpserver.url_for("").rstrip("/"))
    events = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(EVENTS.glob("*.json"))]
    outcomes = [engine.render(event, batched) for event in events]
    (request,) = engine.batch(batched, outcomes)
    delivery = send(HttpClient(), request)
    assert delivery.delivered and delivery.status == 200
    ((method, tenant, body, good),) = received
    assert good and method == "POST" and tenant == "acme"
    assert body == [o.requests[0].body for o in outcomes if o.status == "send"]


def test_a_receiver_refuses_a_body_changed_after_signing(engine, httpserver):
    """The receiver's check bites: bytes that differ from those signed are refused (so the tests above
    could fail)."""
    received: list = []
    httpserver.expect_request("/eventmap/ingest").respond_with_handler(verifying(received))
    (request,) = render(engine, TRACK, base_url=httpserver.url_for("").rstrip("/")).requests
    request.wire = request.encoded_body().replace(b"Commande", b"Command")
    delivery = send(HttpClient(), request)
    assert not delivery.delivered and delivery.status == 401 and received[0][3] is False


def test_showing_requests_does_not_keep_each_events_frames(engine):
    """The URL is the secret, so the masked twin's URL is a sentinel, not a URL: that route's one error is
    raised for every request shown. Raised again and again, it must not chain each event's frames (and the
    events and requests they hold) onto itself: that grew the benchmark's stream by 12 KB an event."""
    made = route(engine)
    for i in range(50):
        engine.render({**TRACK, "messageId": f"m{i}"}, made).requests[0].to_dict()
    twin_settings = made.destination.sentinel_settings(made.settings)[0]
    action = made.destination.actions["track"]
    bound = action.bound(twin_settings, made.destination.envelopes["track"], made.destination.name)
    assert bound.fixed_error is not None   # the case this guards: the twin's URL cannot be made
    depth, tb = 0, bound.fixed_error.__traceback__
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    assert depth < 10, f"the route's error carries {depth} frames after 50 events"
