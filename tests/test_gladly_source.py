"""The Gladly source (mappings/sources/gladly.yaml) against Gladly's own page (seed 004).

Seed rules: two track events, "Gladly Conversation Created" and "Gladly Conversation
Closed"; userId = the Gladly customer id; timestamp (and originalTimestamp) = the
conversation's created time; properties agentId, agentName, customerName,
conversationId, customAttributes, email (primary, else first), phone (primary, else
first, E.164), status; topicIds on Closed only; context.library unknown/unknown;
integrations {}. Closed may come more than once for one conversation (reopened and
closed again); nothing is sent when the customer profile was deleted.

Fixtures: fixtures/gladly/payloads/*.json (webhook bodies), fixtures/gladly/payloads.jsonl,
and saved API answers under fixtures/gladly/api/v1/<url path>.json (read by
SavedResponses; a missing file is a 404, which is how the deleted customer is modelled).

Update the snapshots with ``pytest tests/test_gladly_source.py --snapshot-update`` and
read every changed file under tests/snapshots/gladly/ before committing.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine import Engine
from engine.deliver.http import HttpClient, Response, SavedResponses, deliver
from engine.problems import ConfigError
from engine.render.request import Request
from engine.validate import EventValidator

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "gladly"
PAYLOADS = FIXTURES / "payloads"
API = FIXTURES / "api" / "v1"
PAYLOAD_FILES = sorted(PAYLOADS.glob("*.json"))
SNAPSHOTS = Path(__file__).parent / "snapshots" / "gladly"

AGENT_EMAIL = "api@acme.example"
TOKEN = "test-gladly-token"
SETTINGS = {"org": "acme", "agent_email": AGENT_EMAIL, "api_token": TOKEN}
GLADLY_AUTH = "Basic " + base64.b64encode(f"{AGENT_EMAIL}:{TOKEN}".encode()).decode()

# ids in the fixtures
ADA, BEN, CARLA, DEV = "pmHxa2zOQTmgKZU8h0hbiQ", "Xk3nq9RrT4uVw7yZa1bC2d", "Lr5sT7uV9wX1yZ3aB5cD7e", "Mn2oP4qR6sT8uV0wX2yZ4a"
TARO, ZOE, GONE = "Yq8rS0tU2vW4xY6zA8bC0d", "Ze1eN2uN3eZ4oE5nU6nE7z", "Dd9eF1gH3iJ5kL7mN9oP1q"
JORDAN, SOREN = "zGaHq1ZbQbOiRwLRdMsO9A", "bT6uV8wX0yZ2aB4cD6eF8g"
CONV_ADA = "OOdwYvVpRiKIpMYtBbFR4A"        # OPEN, agent Jordan, no topicIds
CONV_BEN = "Q9rS1tU3vW5xY7zA9bC1dE"        # CLOSED, agent Søren, two topics; closed twice
CONV_CARLA = "nA1gE2nT3lE4sS5cO6nV7w"      # OPEN, no agent
CONV_DEV = "cL0sE1dN2oT3oP4iC5sA6b"        # CLOSED, no topicIds, customer without emails/phones
CONV_GONE = "dE1lE2tE3dC4uS5tO6mE7r"       # CLOSED, customer deleted
TOPICS_BEN = ["tR1eF2uN3dS4aB5cD6eF7g", "tS8hI9pP0iN1gA2bC3dE4f"]


def load(name: str):
    return json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))


def saved(kind: str, ident: str) -> dict:
    return json.loads((API / kind / f"{ident}.json").read_text(encoding="utf-8"))


def dump(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


class Recording:
    """A client that remembers every request and answers from another client."""

    def __init__(self, inner=None):
        self.inner = inner or SavedResponses(FIXTURES)
        self.requests: list[Request] = []

    def send(self, request):
        self.requests.append(request)
        return self.inner.send(request)

    @property
    def paths(self):
        return [r.url.split("/api/v1/", 1)[1] for r in self.requests]


@pytest.fixture(scope="module")
def gladly(engine):
    # environ={} keeps EVENTMAP_GLADLY_* of the machine out of the results
    return engine.source("gladly", SETTINGS, environ={})


def process(gladly, name: str, client=None):
    return gladly.process(load(name), client or SavedResponses(FIXTURES))


def only_event(result) -> dict:
    assert result.status == "events", result.to_dict()
    assert len(result.events) == 1
    return result.events[0]


# --------------------------------------------------------------------------- 1. snapshots

def test_fixtures_are_found():
    assert len(PAYLOAD_FILES) == 11
    assert not (API / "customer-profiles" / f"{GONE}.json").exists(), "the deleted customer must have no file (a 404)"


@pytest.mark.parametrize("payload_file", PAYLOAD_FILES, ids=lambda p: p.stem)
def test_snapshot(gladly, snapshot, payload_file):
    result = gladly.process(json.loads(payload_file.read_text(encoding="utf-8")), SavedResponses(FIXTURES))
    snapshot.snapshot_dir = SNAPSHOTS
    snapshot.assert_match(dump(result.to_dict()), f"{payload_file.stem}.json")


# --------------------------------------------------------------------------- 2. seed rules

def test_created_event_is_exactly_the_seed_shape(gladly):
    event = only_event(process(gladly, "conversation-created"))
    assert event == {
        "type": "track",
        "event": "Gladly Conversation Created",
        "userId": ADA,
        "messageId": "4bc1af69-e7f0-51e0-90d1-bb5e81ff3b2e",
        # the conversation's createdAt, not the webhook's timestamp (2022-07-08T18:46:38.101Z)
        "timestamp": "2022-07-08T18:46:37.946Z",
        "originalTimestamp": "2022-07-08T18:46:37.946Z",
        "context": {"library": {"name": "unknown", "version": "unknown"}},
        "integrations": {},
        "properties": {
            "agentId": JORDAN,
            "agentName": "Jordan Rivera",
            "customerName": "Ada Lovelace",
            "conversationId": CONV_ADA,
            "customAttributes": {"loyaltyTier": "gold", "accountNumber": "A-1001", "lifetimeOrders": "14"},
            "email": "ada.lovelace@example.com",
            "phone": "+14155550199",
            "status": "OPEN",
        },
    }


def test_closed_event_is_exactly_the_seed_shape(gladly):
    event = only_event(process(gladly, "conversation-closed"))
    assert event == {
        "type": "track",
        "event": "Gladly Conversation Closed",
        "userId": BEN,
        "messageId": "0df810c2-d571-51af-9cec-72c97308a88a",
        "timestamp": "2022-07-09T14:02:11.500Z",
        "originalTimestamp": "2022-07-09T14:02:11.500Z",
        "context": {"library": {"name": "unknown", "version": "unknown"}},
        "integrations": {},
        "properties": {
            "agentId": SOREN,
            "agentName": "Søren Ødegård",
            "customerName": "Ben Okafor",
            "conversationId": CONV_BEN,
            "customAttributes": {"plan": "basic"},
            "email": "ben.okafor@example.net",
            "phone": "+12125550175",
            "status": "CLOSED",
            "topicIds": TOPICS_BEN,
        },
    }


@pytest.mark.parametrize("name, expected", [
    ("conversation-created", "Gladly Conversation Created"),
    ("conversation-created-no-agent", "Gladly Conversation Created"),
    ("conversation-created-non-ascii", "Gladly Conversation Created"),
    ("conversation-closed", "Gladly Conversation Closed"),
    ("conversation-closed-after-reopen", "Gladly Conversation Closed"),
    ("conversation-closed-no-topics", "Gladly Conversation Closed"),
    ("conversation-closed-non-ascii-latin", "Gladly Conversation Closed"),
])
def test_event_name_follows_the_webhook_type(gladly, name, expected):
    event = only_event(process(gladly, name))
    assert (event["type"], event["event"]) == ("track", expected)


def test_created_has_no_topicIds_even_when_the_conversation_has_topics(gladly):
    conversation = {**saved("conversations", CONV_ADA), "topicIds": ["tX1"]}
    result = gladly.process(load("conversation-created"), lookups={
        "conversation": conversation, "customer": saved("customer-profiles", ADA), "agent": saved("agents", JORDAN)})
    assert "topicIds" not in only_event(result)["properties"]


def test_closed_has_the_conversation_topicIds(gladly):
    assert only_event(process(gladly, "conversation-closed-non-ascii-latin"))["properties"]["topicIds"] == ["tS8hI9pP0iN1gA2bC3dE4f"]


def test_closed_without_topicIds_has_an_empty_list(gladly):
    assert "topicIds" not in saved("conversations", CONV_DEV)
    assert only_event(process(gladly, "conversation-closed-no-topics"))["properties"]["topicIds"] == []


def test_timestamp_is_the_conversation_createdAt_normalised_to_utc_millis(gladly):
    # createdAt "2024-03-01T09:00:00Z" (no millis); the webhook's timestamp is 09:45:12.345
    event = only_event(process(gladly, "conversation-closed-no-topics"))
    assert event["timestamp"] == event["originalTimestamp"] == "2024-03-01T09:00:00.000Z"


def test_userId_is_the_conversation_customer_id(gladly):
    payload = load("conversation-created")
    payload["content"]["customerId"] = "stale-id-from-the-webhook"
    assert only_event(gladly.process(payload, SavedResponses(FIXTURES)))["userId"] == ADA


# --- email: primary, else the first

def test_email_primary_not_first(gladly):
    assert only_event(process(gladly, "conversation-created"))["properties"]["email"] == "ada.lovelace@example.com"


def test_email_no_primary_takes_the_first(gladly):
    assert only_event(process(gladly, "conversation-closed"))["properties"]["email"] == "ben.okafor@example.net"


def lookups_for_customer(customer: dict) -> dict:
    return {"conversation": saved("conversations", CONV_ADA), "customer": {"id": ADA, **customer},
            "agent": saved("agents", JORDAN)}


@pytest.mark.parametrize("emails, expected", [
    ([{"original": "First@x.example"}, {"original": "Second@x.example", "primary": True}], "Second@x.example"),
    ([{"original": "First@x.example", "primary": False}, {"original": "Second@x.example"}], "First@x.example"),
    ([{"original": "A@x.example", "normalized": "a@x.example"}, {"original": "b@x.example", "primary": True}], "b@x.example"),
])
def test_email_rule_on_ready_made_profiles(gladly, emails, expected):
    result = gladly.process(load("conversation-created"), lookups=lookups_for_customer({"emails": emails}))
    assert only_event(result)["properties"]["email"] == expected


def test_no_emails_and_no_phones_leave_both_keys_out(gladly):
    properties = only_event(process(gladly, "conversation-closed-no-topics"))["properties"]
    assert "email" not in properties and "phone" not in properties
    assert properties["customAttributes"] == {}
    assert properties["customerName"] == "Dev Patel"


# --- phone: primary, else the first, in E.164

def test_phone_primary_not_first(gladly):
    assert only_event(process(gladly, "conversation-created"))["properties"]["phone"] == "+14155550199"


def test_phone_no_primary_takes_the_first(gladly):
    assert only_event(process(gladly, "conversation-closed"))["properties"]["phone"] == "+12125550175"


def test_phone_non_us_numbers(gladly):
    assert only_event(process(gladly, "conversation-created-non-ascii"))["properties"]["phone"] == "+81312345678"
    assert only_event(process(gladly, "conversation-closed-non-ascii-latin"))["properties"]["phone"] == "+34612345678"


@pytest.mark.parametrize("phones, expected", [
    # primary without normalized: its original, made E.164 (it has a country code)
    ([{"original": "+1 415 555 0100", "normalized": "+14155550100"},
      {"original": "+44 20 7946 0958", "primary": True}], "+442079460958"),
    # no primary: the first
    ([{"original": "+1 (212) 555-0175"}, {"original": "+1 212 555 0176"}], "+12125550175"),
])
def test_phone_rule_on_ready_made_profiles(gladly, phones, expected):
    result = gladly.process(load("conversation-created"), lookups=lookups_for_customer({"phones": phones}))
    assert only_event(result)["properties"]["phone"] == expected


def test_primary_phone_without_normalized_and_without_country_code_is_passed_through(gladly):
    # Carla's primary phone has only original "(415) 555-0132". The YAML applies e164 with
    # no region, and without a region there is no E.164 for a number without "+": it is
    # passed on unchanged rather than guessed (the other, normalized, phone is NOT used).
    assert only_event(process(gladly, "conversation-created-no-agent"))["properties"]["phone"] == "(415) 555-0132"


def test_phone_region_setting_makes_local_numbers_e164(engine):
    gladly = engine.source("gladly", {**SETTINGS, "phone_region": "US"}, environ={})
    assert only_event(process(gladly, "conversation-created-no-agent"))["properties"]["phone"] == "+14155550132"


# --- agent

def test_no_agent_assigned_leaves_agentId_and_agentName_out_and_asks_for_no_agent(gladly):
    client = Recording()
    properties = only_event(process(gladly, "conversation-created-no-agent", client))["properties"]
    assert "agentId" not in properties and "agentName" not in properties
    assert client.paths == [f"conversations/{CONV_CARLA}", f"customer-profiles/{CARLA}"]


def test_agent_lookup_reads_the_conversation_agent(gladly):
    client = Recording()
    process(gladly, "conversation-created", client)
    assert client.paths == [f"conversations/{CONV_ADA}", f"customer-profiles/{ADA}", f"agents/{JORDAN}"]


# --- message ids

def test_message_id_is_stable_for_the_same_delivery(gladly):
    first = only_event(process(gladly, "conversation-created"))["messageId"]
    second = only_event(process(gladly, "conversation-created"))["messageId"]
    assert first == second == "4bc1af69-e7f0-51e0-90d1-bb5e81ff3b2e"


def test_reopened_and_closed_again_gives_a_second_closed_event_with_its_own_id(gladly):
    first = only_event(process(gladly, "conversation-closed"))
    again = only_event(process(gladly, "conversation-closed-after-reopen"))
    assert first["event"] == again["event"] == "Gladly Conversation Closed"
    assert first["properties"]["conversationId"] == again["properties"]["conversationId"] == CONV_BEN
    assert first["messageId"] == "0df810c2-d571-51af-9cec-72c97308a88a"
    assert again["messageId"] == "be29ba6f-7e24-5b5c-b70e-6c834604bcbc"


def test_created_and_closed_of_one_delivery_id_do_not_share_a_message_id(gladly):
    payload = load("conversation-created")
    created = only_event(gladly.process(payload, SavedResponses(FIXTURES)))
    closed = only_event(gladly.process({**payload, "type": "CONVERSATION/CLOSED"}, SavedResponses(FIXTURES)))
    assert created["messageId"] != closed["messageId"]


# --- skipped, rejected

def test_deleted_customer_is_skipped(gladly):
    result = process(gladly, "conversation-closed-customer-deleted")
    assert result.status == "skipped"
    assert result.events == []
    assert result.reason == (f"customer profile {GONE} was deleted; Gladly sends no event for conversation {CONV_GONE}")
    assert "deleted" in result.reason


def test_ping_is_skipped_with_no_events_and_no_lookup(gladly):
    client = Recording()
    result = process(gladly, "ping", client)
    assert (result.status, result.events, result.webhook_type) == ("skipped", [], "PING")
    assert result.reason == "PING: Gladly checks the webhook answers; nothing to map"
    assert client.requests == []


@pytest.mark.parametrize("name, kind", [
    ("conversation-reopened", "CONVERSATION/REOPENED"),
    ("customer-profile-deleted", "CUSTOMER_PROFILE/DELETED"),
])
def test_other_types_are_skipped_naming_the_type(gladly, name, kind):
    client = Recording()
    result = process(gladly, name, client)
    assert (result.status, result.events, result.webhook_type) == ("skipped", [], kind)
    assert result.reason == (f"webhook type '{kind}' is not handled by Gladly "
                             "(handles: CONVERSATION/CREATED, CONVERSATION/CLOSED)")
    assert client.requests == []


@pytest.mark.parametrize("payload", [[], [load("conversation-created")], "CONVERSATION/CREATED", None, 42],
                         ids=["empty-list", "list", "string", "null", "number"])
def test_not_a_dict_is_rejected(gladly, payload):
    result = gladly.process(payload, Recording())
    assert result.status == "rejected"
    assert [e.as_dict() for e in result.errors] == [{"path": "", "message": "expected a JSON object as the webhook payload"}]


@pytest.mark.parametrize("delivery_id", [None, ""])
def test_no_delivery_id_is_rejected(gladly, delivery_id):
    payload = load("conversation-created")
    if delivery_id is None:
        del payload["id"]
    else:
        payload["id"] = delivery_id
    client = Recording()
    result = gladly.process(payload, client)
    assert result.status == "rejected"
    assert [e.as_dict()["path"] for e in result.errors] == ["id"]
    assert client.requests == []


def test_ready_made_lookups_need_no_client(gladly):
    result = gladly.process(load("conversation-created"), lookups={
        "conversation": saved("conversations", CONV_ADA),
        "customer": saved("customer-profiles", ADA),
        "agent": saved("agents", JORDAN)})
    assert result.to_dict() == process(gladly, "conversation-created").to_dict()


def test_a_missing_ready_made_lookup_without_client_fails(gladly):
    result = gladly.process(load("conversation-created"), lookups={"conversation": saved("conversations", CONV_ADA)})
    assert result.status == "failed"
    assert result.reason == "lookup 'customer' needs an HTTP client or a ready-made response"


@pytest.mark.parametrize("payload_file", PAYLOAD_FILES, ids=lambda p: p.stem)
def test_every_event_follows_the_segment_spec(gladly, payload_file):
    result = gladly.process(json.loads(payload_file.read_text(encoding="utf-8")), SavedResponses(FIXTURES))
    for event in result.events:
        assert EventValidator().check(event) == []


def test_seven_payloads_give_events(gladly):
    statuses = {p.stem: gladly.process(json.loads(p.read_text(encoding="utf-8")), SavedResponses(FIXTURES)).status
                for p in PAYLOAD_FILES}
    assert sorted(k for k, v in statuses.items() if v == "events") == [
        "conversation-closed", "conversation-closed-after-reopen", "conversation-closed-no-topics",
        "conversation-closed-non-ascii-latin", "conversation-created", "conversation-created-no-agent",
        "conversation-created-non-ascii"]


def test_ids_are_encoded_as_one_path_segment(gladly):
    payload = load("conversation-created")
    payload["content"]["conversationId"] = "x/../../agents/zz"
    client = Recording()
    gladly.process(payload, client)
    assert client.requests[0].url == "https://acme.gladly.com/api/v1/conversations/x%2F..%2F..%2Fagents%2Fzz"


def test_payload_without_conversation_id_is_rejected_without_a_request(gladly):
    payload = load("conversation-created")
    del payload["content"]["conversationId"]
    client = Recording()
    result = gladly.process(payload, client)
    assert result.status == "rejected"
    assert client.requests == []
    assert [(e.path, e.message) for e in result.errors] == [
        ("payload.content.conversationId",
         "the webhook payload has no content.conversationId; Gladly always sends one for conversation events")]


# --------------------------------------------------------------------------- 3. live lookups

def live(engine, httpserver):
    base = httpserver.url_for("").rstrip("/")
    return engine.source("gladly", {**SETTINGS, "base_url": base}, environ={})


def serve(httpserver, *paths):
    """Answer GET /api/v1/<path> with the saved fixture, for each path."""
    for path in paths:
        body = json.loads((API / f"{path}.json").read_text(encoding="utf-8"))
        httpserver.expect_request(f"/api/v1/{path}", method="GET").respond_with_json(body)


def test_live_lookups_send_what_gladly_expects(engine, gladly, httpserver):
    serve(httpserver, f"conversations/{CONV_ADA}", f"customer-profiles/{ADA}", f"agents/{JORDAN}")
    result = live(engine, httpserver).process(load("conversation-created"), HttpClient(timeout=5))
    httpserver.check_assertions()
    assert [(r.method, r.path) for r, _ in httpserver.log] == [
        ("GET", f"/api/v1/conversations/{CONV_ADA}"),
        ("GET", f"/api/v1/customer-profiles/{ADA}"),
        ("GET", f"/api/v1/agents/{JORDAN}")]
    for request, _ in httpserver.log:
        assert request.headers["Authorization"] == GLADLY_AUTH
        assert request.headers["Accept"] == "application/json"
        assert request.get_data() == b""
    # the same event as from the saved responses
    assert result.to_dict() == process(gladly, "conversation-created").to_dict()


def test_live_404_customer_is_skipped(engine, httpserver):
    serve(httpserver, f"conversations/{CONV_GONE}")
    httpserver.expect_request(f"/api/v1/customer-profiles/{GONE}").respond_with_json(
        {"errors": [{"code": "not found"}]}, status=404)
    result = live(engine, httpserver).process(load("conversation-closed-customer-deleted"), HttpClient(timeout=5))
    assert result.status == "skipped"
    assert "was deleted" in result.reason
    assert len(httpserver.log) == 2  # no agent lookup after the skip


def test_live_404_agent_gives_an_event_without_agentName(engine, httpserver):
    serve(httpserver, f"conversations/{CONV_ADA}", f"customer-profiles/{ADA}")
    httpserver.expect_request(f"/api/v1/agents/{JORDAN}").respond_with_json({"errors": []}, status=404)
    event = only_event(live(engine, httpserver).process(load("conversation-created"), HttpClient(timeout=5)))
    # the agent's id is still known from the conversation; only the name needs the agent lookup
    assert "agentName" not in event["properties"]
    assert event["properties"]["agentId"] == JORDAN


def test_live_404_conversation_is_rejected(engine, httpserver):
    httpserver.expect_request(f"/api/v1/conversations/{CONV_ADA}").respond_with_json({"errors": []}, status=404)
    result = live(engine, httpserver).process(load("conversation-created"), HttpClient(timeout=5))
    assert result.status == "rejected"
    assert [e.as_dict() for e in result.errors] == [
        {"path": "lookups.conversation", "message": f"conversation {CONV_ADA} does not exist in Gladly"}]
    assert len(httpserver.log) == 1


def test_live_401_fails_for_good_and_hides_the_token(engine, httpserver):
    httpserver.expect_request(f"/api/v1/conversations/{CONV_ADA}").respond_with_json(
        {"errors": [{"code": "unauthorized"}]}, status=401)
    result = live(engine, httpserver).process(load("conversation-created"), HttpClient(timeout=5))
    assert (result.status, result.retryable) == ("failed", False)
    assert "credentials" in result.reason
    assert "HTTP 401" in result.reason
    text = json.dumps(result.to_dict())
    assert TOKEN not in text
    assert GLADLY_AUTH.split(" ")[1] not in text


@pytest.mark.parametrize("status, retryable", [(500, True), (503, True), (429, True), (501, False), (403, False)])
def test_live_http_errors_say_whether_to_retry(engine, httpserver, status, retryable):
    httpserver.expect_request(f"/api/v1/conversations/{CONV_ADA}").respond_with_data("oops", status=status)
    result = live(engine, httpserver).process(load("conversation-created"), HttpClient(timeout=5))
    assert (result.status, result.retryable) == ("failed", retryable)
    assert f"got HTTP {status} from GET http://localhost:{httpserver.port}/api/v1/conversations/{CONV_ADA}" in result.reason
    assert result.to_dict()["retryable"] is retryable


def test_live_timeout_fails_and_may_be_retried(engine, httpserver):
    release = threading.Event()

    def slow(request):
        release.wait(5)  # much longer than the client's 0.5 s; released at the end of the test
        from werkzeug import Response as WerkzeugResponse
        return WerkzeugResponse("{}", content_type="application/json")

    httpserver.expect_request(f"/api/v1/conversations/{CONV_ADA}").respond_with_handler(slow)
    try:
        result = live(engine, httpserver).process(load("conversation-created"), HttpClient(timeout=0.5))
    finally:
        release.set()
        # the server is single-threaded: wait until it has finished (and logged) the slow
        # request, or the entry lands in the next test's log after this test's clear()
        deadline = time.monotonic() + 5
        while not httpserver.log and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(httpserver.log) == 1  # one attempt: lookups are not retried inside process()
    assert (result.status, result.retryable) == ("failed", True)
    assert result.reason.startswith("lookup 'conversation' failed: no answer within 0.5s from ")


def test_live_id_with_slashes_stays_in_the_conversations_path(engine, httpserver):
    # webhooks are unsigned: an id must never steer a lookup to another API path
    payload = load("conversation-created")
    payload["content"]["conversationId"] = "x/../../agents/zz"
    httpserver.expect_request("/api/v1/agents/zz").respond_with_json(saved("agents", JORDAN))
    result = live(engine, httpserver).process(payload, HttpClient(timeout=5))
    [(request, _)] = httpserver.log
    assert request.environ["RAW_URI"] == "/api/v1/conversations/x%2F..%2F..%2Fagents%2Fzz"
    assert (result.status, result.retryable) == ("failed", True)  # no handler matched: pytest-httpserver answers 500


def test_live_merged_customer_redirect_is_followed(engine, httpserver):
    old, new = "oLdMeRgEdCuStOmErIdAa", "nEwSuRvIvInGcUsToMeRbB"
    conversation = {**saved("conversations", CONV_ADA), "customerId": old}
    httpserver.expect_request(f"/api/v1/conversations/{CONV_ADA}").respond_with_json(conversation)
    httpserver.expect_request(f"/api/v1/customer-profiles/{old}").respond_with_data(
        "", status=301, headers={"Location": httpserver.url_for(f"/api/v1/customer-profiles/{new}")})
    httpserver.expect_request(f"/api/v1/customer-profiles/{new}").respond_with_json(
        {**saved("customer-profiles", ADA), "id": new})
    serve(httpserver, f"agents/{JORDAN}")
    event = only_event(live(engine, httpserver).process(load("conversation-created"), HttpClient(timeout=5)))
    assert event["userId"] == new
    assert event["properties"]["email"] == "ada.lovelace@example.com"
    assert [r.path for r, _ in httpserver.log] == [
        f"/api/v1/conversations/{CONV_ADA}", f"/api/v1/customer-profiles/{old}",
        f"/api/v1/customer-profiles/{new}", f"/api/v1/agents/{JORDAN}"]
    assert httpserver.log[2][0].headers["Authorization"] == GLADLY_AUTH


def test_base_url_default_is_the_org_host(engine):
    client = Recording(inner=SavedResponses(FIXTURES))
    engine.source("gladly", SETTINGS, environ={}).process(load("conversation-created"), client)
    assert client.requests[0].url == f"https://acme.gladly.com/api/v1/conversations/{CONV_ADA}"
    sandbox = Recording()
    engine.source("gladly", {**SETTINGS, "sandbox": True}, environ={}).process(load("conversation-created"), sandbox)
    assert sandbox.requests[0].url == f"https://acme.gladly.qa/api/v1/conversations/{CONV_ADA}"


def test_a_missing_setting_is_named_with_its_variable(engine):
    with pytest.raises(ConfigError) as caught:
        engine.source("gladly", {"org": "acme", "agent_email": AGENT_EMAIL}, environ={})
    assert [str(p) for p in caught.value.problems] == [
        "settings.api_token: gladly: 'api_token' is required: pass it in the settings or set EVENTMAP_GLADLY_API_TOKEN"]


def test_every_missing_setting_is_named_once(engine):
    with pytest.raises(ConfigError) as caught:
        engine.source("gladly", {"org": "acme"}, environ={})
    assert sorted(p.path for p in caught.value.problems) == ["settings.agent_email", "settings.api_token"]


# --------------------------------------------------------------------------- 4. routing

@pytest.fixture(scope="module")
def gladly_events(gladly):
    return [only_event(process(gladly, name)) for name in ("conversation-created", "conversation-closed")]


def test_events_render_for_planhat(engine, gladly_events):
    route = engine.route("planhat", {"tenant_token": "test-tenant-token"}, environ={})
    for event in gladly_events:
        [outcome] = engine.render_all(event, [route])
        assert outcome.status == "send", outcome.to_dict()
        [request] = outcome.requests
        assert (request.method, request.url) == ("POST", "https://api.planhat.com/analytics/test-tenant-token")
        assert request.body == {
            "externalId": event["userId"],
            "email": event["properties"]["email"],
            "action": event["event"],
            "date": event["timestamp"],
            "info": event["properties"],
            "source": "Segment",
        }


def test_events_render_for_segment(engine, gladly_events):
    route = engine.route("segment", {"write_key": "test-write-key"}, environ={})
    for event in gladly_events:
        [outcome] = engine.render_all(event, [route])
        assert outcome.status == "send", outcome.to_dict()
        [request] = outcome.requests
        assert (request.method, request.url) == ("POST", "https://api.segment.io/v1/track")
        assert request.body == event
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"test-write-key:").decode()


def test_events_batch_into_one_segment_request(engine, gladly_events):
    route = engine.route("segment", {"write_key": "test-write-key"}, environ={})
    outcomes = [engine.render_all(event, [route])[0] for event in gladly_events]
    [request] = engine.batch(route, outcomes)
    assert (request.method, request.url) == ("POST", "https://api.segment.io/v1/batch")
    assert request.body == {"batch": gladly_events}
    assert request.message_ids == tuple(e["messageId"] for e in gladly_events)


# --------------------------------------------------------------------------- 5. CLI end to end

WRITE_KEY = "seg-write-key-123"
SEGMENT_AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


def run_cli(args, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTMAP_")}
    env.update({"EVENTMAP_GLADLY_ORG": "acme", "EVENTMAP_GLADLY_AGENT_EMAIL": AGENT_EMAIL,
                "EVENTMAP_GLADLY_API_TOKEN": TOKEN, "PYTHONIOENCODING": "utf-8"})
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


def send_to_segment(httpserver, payload="fixtures/gladly/payloads/conversation-created.json"):
    return run_cli(["source", "gladly", payload, "--lookups", "fixtures/gladly", "--to", "segment", "--send"],
                   {"EVENTMAP_SEGMENT_WRITE_KEY": WRITE_KEY,
                    "EVENTMAP_SEGMENT_BASE_URL": httpserver.url_for("").rstrip("/")})


def test_cli_sends_the_event_to_segment(gladly, httpserver):
    httpserver.expect_request("/v1/batch", method="POST").respond_with_json({"success": True})
    done = send_to_segment(httpserver)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = only_event(process(gladly, "conversation-created"))
    assert out["status"] == "events"
    assert out["events"] == [expected]
    assert out["deliveries"] == [{
        "destination": "Segment", "url": f"http://localhost:{httpserver.port}/v1/batch",
        "messageIds": [expected["messageId"]], "delivered": True, "attempts": 1, "status": 200,
        "error": None, "retryable": False}]
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == SEGMENT_AUTH
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data(as_text=True)) == {"batch": [expected]}
    assert WRITE_KEY not in done.stdout and TOKEN not in done.stdout


def test_cli_retries_429_then_delivers(httpserver):
    httpserver.expect_oneshot_request("/v1/batch", method="POST").respond_with_json(
        {"error": "slow down"}, status=429, headers={"Retry-After": "0"})
    httpserver.expect_request("/v1/batch", method="POST").respond_with_json({"success": True})
    done = send_to_segment(httpserver)
    assert done.returncode == 0, done.stderr
    [delivery] = json.loads(done.stdout)["deliveries"]
    assert (delivery["delivered"], delivery["attempts"], delivery["status"]) == (True, 2, 200)
    assert len(httpserver.log) == 2
    assert httpserver.log[0][0].get_data() == httpserver.log[1][0].get_data()


def test_cli_does_not_retry_400(httpserver):
    httpserver.expect_request("/v1/batch", method="POST").respond_with_json({"error": "bad event"}, status=400)
    done = send_to_segment(httpserver)
    assert done.returncode == 3, done.stderr
    [delivery] = json.loads(done.stdout)["deliveries"]
    assert (delivery["delivered"], delivery["retryable"], delivery["attempts"], delivery["status"]) == (False, False, 1, 400)
    assert delivery["error"] == 'Segment answered 400: {"error": "bad event"}'
    assert len(httpserver.log) == 1


def test_cli_skipped_payload_sends_nothing(httpserver):
    done = send_to_segment(httpserver, "fixtures/gladly/payloads/ping.json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "skipped" and "deliveries" not in out
    assert httpserver.log == []


def test_cli_jsonl_prints_one_line_per_input_line(gladly):
    done = run_cli(["source", "gladly", "fixtures/gladly/payloads.jsonl", "--jsonl", "--lookups", "fixtures/gladly"])
    assert done.returncode == 2, done.stderr  # one line is not JSON: rejected
    input_lines = (FIXTURES / "payloads.jsonl").read_text(encoding="utf-8").splitlines()
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len(input_lines) == 7
    assert [(line["line"], line["status"]) for line in lines] == [
        (1, "events"), (2, "events"), (3, "skipped"), (4, "rejected"), (5, "skipped"), (6, "skipped"), (7, "events")]
    assert lines[3]["errors"][0]["message"].startswith("fixtures/gladly/payloads.jsonl:4: not valid JSON")
    assert [e["event"] for line in lines for e in line.get("events", [])] == [
        "Gladly Conversation Created", "Gladly Conversation Closed", "Gladly Conversation Created"]
    assert lines[0]["events"] == [only_event(process(gladly, "conversation-created"))]
    assert lines[6]["events"][0]["properties"]["customerName"] == "山田 太郎"


# --------------------------------------------------------------------------- delivery detail

class Scripted:
    def __init__(self, *responses):
        self.responses = list(responses)

    def send(self, request):
        return self.responses.pop(0)


def test_retry_after_zero_is_honoured():
    request = Request("Segment", "batch", "POST", "https://api.segment.io/v1/batch", {}, {}, {"batch": []})
    waits = []
    done = deliver(Scripted(Response(429, {}, {"Retry-After": "0"}), Response(200, {})), request, sleep=waits.append)
    assert done.delivered and done.attempts == 2
    assert waits == [0.0]


def test_a_broken_requires_path_is_named_with_file_and_line(tmp_path):
    from conftest import REPO

    from engine import ConfigError
    shipped = (REPO / "mappings" / "sources" / "gladly.yaml").read_text(encoding="utf-8")
    broken = shipped.replace("      - path: payload.content.conversationId", "      - path: payload.content.[")
    (tmp_path / "destinations").mkdir()
    (tmp_path / "destinations" / "planhat.yaml").write_text(
        (REPO / "mappings" / "destinations" / "planhat.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "gladly.yaml").write_text(broken, encoding="utf-8")
    line = broken.splitlines().index("      - path: payload.content.[") + 1
    with pytest.raises(ConfigError) as caught:
        Engine(tmp_path)
    [problem] = caught.value.problems
    assert (problem.line, problem.path) == (line, "lookups.conversation.requires[0]")
    assert "not a valid JMESPath expression" in problem.message
