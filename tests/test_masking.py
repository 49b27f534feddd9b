"""Secrets are masked by provenance: what was built from a secret setting, and nothing else.

Each request is rendered again with sentinels for the secret settings; what differs
between the two renders came from a secret. These tests go through the public
interfaces (Engine, the CLI, the outbox worker, the HTTP client) with real parts.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import socket

import pytest
from conftest import REPO, write_mappings
from test_cli import no_traceback, run, write_event
from vendor_server import Answer, VendorServer

from engine import Engine
from engine.deliver import DestinationWorker, HttpClient, RetryPolicy
from engine.deliver.http import TransportError
from engine.intake import Intake
from engine.store import DEAD, open_store

ORDER = json.loads((REPO / "fixtures" / "events" / "track-order-completed.json").read_text(encoding="utf-8"))

# Every place a secret can land: URL path (raw and percent-encoded), query, a header, Basic auth,
# an HMAC signature over the body, and a body field. The event carries the same letters as data.
VAULT = """\
name: Vault
settings:
  type: object
  required: [token, key]
  properties:
    token: {type: string, secret: true}
    key: {type: string, secret: true}
    region: {type: string, default: eu}
    base: {type: string, default: "https://eu.vault.test"}
defaults:
  request:
    url: "{{ settings.base }}/v1/{{ settings.token | url_segment }}/events"
    query: {sig: "{{ settings.key }}", region: "{{ settings.region }}"}
    headers: {X-Token: "Token {{ settings.token }}", X-Region: "{{ settings.region }}"}
    auth: {basic: {username: "{{ settings.key }}"}}
actions:
  track:
    vars:
      note: {"@path": event.properties.note}
    body:
      note: "{{ vars.note }}"
      signature: "{{ vars.note | hmac_sha256(settings.key) }}"
      token_echo: "{{ settings.token }}!"
batch:
  max_events: 10
  request:
    url: "{{ settings.base }}/v1/{{ settings.token | url_segment }}/batch"
"""


def track(n: int, note: str) -> dict:
    return {"type": "track", "event": "Saved", "userId": f"u{n}", "messageId": f"m-{n}",
            "timestamp": "2026-11-23T10:00:00Z", "properties": {"note": note}}


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    return Engine(write_mappings(tmp_path_factory.mktemp("vault"), {"vault.yaml": VAULT}))


def test_the_readme_tutorial_output_reads_correctly(tmp_path):
    """README step 3 with a one-letter key: only the credential is masked, every 'k' of the data stays."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    acme = re.search(r"`mappings/destinations/acme.yaml`:\s*```yaml\n(.*?)```", readme, re.S).group(1)
    write_mappings(tmp_path, {"acme.yaml": acme})
    name = write_event(tmp_path, ORDER)
    result = run("render", "acme", name, "--settings", '{"api_key": "k"}', cwd=tmp_path)
    no_traceback(result)
    request = json.loads(result.stdout)["requests"][0]
    assert request["headers"]["Authorization"] == "Bearer ***"
    assert request["body"]["data"]["checkout_id"] == ORDER["properties"]["checkout_id"]
    assert [p["sku"] for p in request["body"]["data"]["products"]] == [p["sku"] for p in ORDER["properties"]["products"]]
    assert result.stdout.count("***") == 1

    (tmp_path / "events.jsonl").write_text(json.dumps(ORDER) + "\n" + json.dumps({**ORDER, "messageId": "m2"}) + "\n",
                                           encoding="utf-8")
    batch = run("batch", "events.jsonl", "--destination", "acme", "--settings", '{"api_key": "k"}', cwd=tmp_path)
    no_traceback(batch)
    lines = [json.loads(line) for line in batch.stdout.splitlines()]
    assert len(lines) == 2 and batch.stdout.count("***") == 2 and batch.stdout.count('"checkout_id"') == 2

    explained = run("explain", "acme", name, "--settings", '{"api_key": "k"}', cwd=tmp_path)
    no_traceback(explained)
    assert 'data.checkout_id  from @merge path event.properties\n                  = "chk_8a7d2c"' in explained.stdout
    assert "***" not in explained.stdout


@pytest.mark.parametrize("token", ["t", "a b/c?d"])
def test_every_place_a_secret_lands_is_masked_and_nothing_else(vault, token):
    route = vault.route("vault", {"token": token, "key": "k"}, environ={})
    note = f"k {token} kk"  # the same letters as event data: data, so shown
    request = vault.render(track(1, note), route).requests[0]
    shown = request.to_dict()
    assert shown["url"] == "https://eu.vault.test/v1/***/events"
    assert shown["query"] == {"sig": "***", "region": "eu"}
    assert shown["headers"]["X-Token"] == "Token ***" and shown["headers"]["X-Region"] == "eu"
    assert shown["headers"]["Authorization"] == "Basic ***"
    assert shown["body"] == {"note": note, "signature": "***", "token_echo": "***!"}
    # the request itself is untouched, and shows everything when asked
    real = request.to_dict(show_secrets=True)
    assert real["headers"]["Authorization"] == "Basic " + base64.b64encode(b"k:").decode()
    assert real["body"]["token_echo"] == f"{token}!" and request.body["signature"] != "***"
    text = repr(request)
    assert "https://eu.vault.test/v1/***/events" in text and "k:" not in text


def test_batch_requests_are_masked_by_provenance(vault):
    route = vault.route("vault", {"token": "t", "key": "k"}, environ={})
    outcomes = [vault.render(track(n, f"note {n} with t and k"), route) for n in range(3)]
    [request] = vault.batch(route, outcomes)
    shown = request.to_dict()
    assert shown["url"] == "https://eu.vault.test/v1/***/batch"
    assert [item["note"] for item in shown["body"]] == [f"note {n} with t and k" for n in range(3)]
    assert {item["signature"] for item in shown["body"]} == {"***"}


def test_a_signed_envelope_is_masked_whole_but_sent_intact():
    """Richpanel: hs is base64 of JSON holding the API key, s signs it with the API secret."""
    engine = Engine()
    route = engine.route("richpanel", {"api_key": "a", "api_secret": "b"}, environ={})
    request = engine.render(ORDER, route).requests[0]
    assert request.to_dict()["body"] == {"hs": "***", "s": "***"}
    assert request.to_dict()["url"] == "https://api.richpanel.com/v2/bt"
    body = request.to_dict(show_secrets=True)["body"]
    call = json.loads(base64.b64decode(body["hs"]))
    assert call["appClientId"] == "a" and call["events"][0]["event"] == "Order Completed"
    assert body["s"] == hashlib.sha256((body["hs"] + "b").encode()).hexdigest()


def test_explain_masks_only_values_built_from_secrets(tmp_path):
    write_mappings(tmp_path, {"vault.yaml": VAULT})
    name = write_event(tmp_path, track(1, "k and t"))
    result = run("explain", "vault", name, "--settings", '{"token": "t", "key": "k"}', cwd=tmp_path)
    no_traceback(result)
    assert '= "k and t"' in result.stdout and '= "***!"' in result.stdout and '= "***"' in result.stdout


def test_when_a_sentinel_breaks_a_filter_the_known_secret_text_is_still_masked(tmp_path):
    engine = Engine(write_mappings(tmp_path, {"pin.yaml": """\
        name: Pin
        settings:
          type: object
          properties:
            pin: {type: string, secret: true}
        actions:
          track:
            request:
              url: "https://pin.test/{{ settings.pin }}"
            body:
              pin: "{{ settings.pin | number }}"
        """}))
    request = engine.render(track(1, "n"), engine.route("pin", {"pin": "4711"}, environ={})).requests[0]
    assert request.to_dict()["url"] == "https://pin.test/***"


def test_dead_letters_keep_the_masked_request(tmp_path):
    """Segment: Basic auth with the write key; a one-letter key must not garble the stored body."""
    engine = Engine()
    with VendorServer() as vendor, open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        route = engine.route("segment", {"write_key": "e", "base_url": vendor.url}, environ={})
        route.limits = route.limits.__class__(concurrency=1, rate=None, batch=False)
        vendor.answer(Answer(400, {"error": "bad event"}))
        Intake(engine, [route], store).accept([track(1, "keep every e")])
        worker = DestinationWorker(route, store, HttpClient(timeout=5), owner="t", policy=RetryPolicy(retry_for=0),
                                   rng=random.Random(1))
        worker.run_once()
        [record] = store.list()
        assert record.state == DEAD
        dead = store.get(record.id)
        assert dead.request["headers"]["Authorization"] == "Basic ***"
        assert dead.request["body"]["properties"] == {"note": "keep every e"}
        assert dead.request["body"]["event"] == "Saved"


def test_transport_errors_show_the_masked_url(vault):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    route = vault.route("vault", {"token": "t", "key": "k", "base": f"http://127.0.0.1:{port}"}, environ={})
    request = vault.render(track(1, "n"), route).requests[0]
    with pytest.raises(TransportError) as caught:
        HttpClient(timeout=2).send(request)
    assert f"http://127.0.0.1:{port}/v1/***/events" in str(caught.value)


def test_a_route_repr_masks_secret_settings_by_name_only(vault):
    route = vault.route("vault", {"token": "t", "key": "e", "base": "https://secret-free.test"}, environ={})
    shown = repr(route)
    assert "'token': '***'" in shown and "'key': '***'" in shown and "'base': 'https://secret-free.test'" in shown


def test_a_secret_written_in_query_string_form_masks_only_the_secret(tmp_path):
    """Jinja's urlencode of a dict writes a value as quote_plus does (space as +, / as %2F): that form is
    recognised, so the rest of the URL and of the body stays readable."""
    engine = Engine(write_mappings(tmp_path, {"query.yaml": """\
        name: Query
        settings:
          type: object
          properties:
            token: {type: string, secret: true}
        actions:
          track:
            request:
              url: "https://q.test/search?{{ {'token': settings.token} | urlencode }}"
            body:
              form: "{{ {'t': settings.token, 'page': 2} | urlencode }}"
        """}))
    request = engine.render(track(1, "n"), engine.route("query", {"token": "a b/c"}, environ={})).requests[0]
    assert request.to_dict(show_secrets=True)["url"] == "https://q.test/search?token=a+b%2Fc"
    assert request.to_dict()["url"] == "https://q.test/search?token=***"
    assert request.to_dict()["body"] == {"form": "t=***&page=2"}


def test_a_vendor_echoing_the_halves_of_a_composite_key_shows_neither_in_dead_letters_or_logs(tmp_path, caplog):
    """Crisp's api_key is identifier:key (Basic auth); a 401 echoing each half alone is masked where it is kept."""
    identifier, key = "crispid-77", "CRISPKEY-s3cr3t-xyz"
    engine = Engine()
    with VendorServer() as vendor, open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        route = engine.route("crisp", {"api_key": f"{identifier}:{key}", "website_id": "site-1",
                                       "base_url": vendor.url}, environ={})
        vendor.answer(Answer(401, {"error": True, "reason": "invalid_session",
                                   "data": {"message": f"token '{key}' is not valid for '{identifier}'"}}))
        Intake(engine, [route], store).accept([{"type": "identify", "userId": "crisp-user", "messageId": "m-crisp",
                                                "traits": {"email": "someone@example.com"}}])
        worker = DestinationWorker(route, store, HttpClient(timeout=5), owner="t", policy=RetryPolicy(retry_for=0),
                                   rng=random.Random(1))
        with caplog.at_level("INFO"):
            worker.run_once()
        [record] = store.list()
        kept = store.get(record.id)
        assert kept.state == DEAD and "token '***' is not valid for '***'" in kept.last_error
        shown = json.dumps([kept.last_error, kept.reason, kept.request]) + caplog.text
        assert "invalid_session" in shown
        assert identifier not in shown and key not in shown


def test_a_value_derived_from_a_secret_beside_it_masks_the_whole_string(tmp_path):
    """The secret shows through, but something else built from it (its length) differs: all of it is masked."""
    engine = Engine(write_mappings(tmp_path, {"derived.yaml": """\
        name: Derived
        settings:
          type: object
          properties:
            pin: {type: string, secret: true}
        actions:
          track:
            request:
              url: "https://pin.test/{{ settings.pin }}/{{ settings.pin | length }}"
            body: {user: {"@path": event.userId}}
        """}))
    request = engine.render(track(1, "n"), engine.route("derived", {"pin": "4711"}, environ={})).requests[0]
    assert request.to_dict(show_secrets=True)["url"] == "https://pin.test/4711/4"
    assert request.to_dict()["url"] == "***"


def test_only_the_credential_after_an_auth_scheme_is_masked_and_never_a_derived_word(tmp_path):
    """'SCHEME <credential>' keeps its scheme; a secret's own text (upper-cased, say) never passes for one."""
    engine = Engine(write_mappings(tmp_path, {"schemes.yaml": """\
        name: Schemes
        settings:
          type: object
          properties:
            key: {type: string, secret: true}
        actions:
          track:
            request:
              url: "https://schemes.test/t"
              headers:
                X-Sig: "HMAC {{ 'payload' | hmac_sha256(settings.key) }} v1"
            body:
              upper: "{{ settings.key | upper }}"
              upper_and_more: "{{ settings.key | upper }} tail"
        """}))
    request = engine.render(track(1, "n"), engine.route("schemes", {"key": "secretword"}, environ={})).requests[0]
    shown = request.to_dict()
    assert shown["headers"]["X-Sig"] == "HMAC ***"
    assert shown["body"] == {"upper": "***", "upper_and_more": "***"}
    assert "SECRETWORD" not in json.dumps(shown)
