"""Klaviyo's key rules, through the shipped mapping: the revision-dated API's headers, profile-import from
traits, events with their value and deduplication id, Order Completed's items, required identifiers with
their reasons, no batching, and the host override."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "klaviyo.json").read_text(encoding="utf-8"))
IDENTIFY = {"type": "identify", "userId": "u1", "messageId": "m1", "context": {"ip": "203.0.113.9", "locale": "en-GB"},
            "traits": {"email": " ada@example.com ", "name": "Ada King Lovelace", "phone": "+44 20 7946 0958", "plan": "pro",
                       "company": {"name": "Acme"}, "title": "", "address": {"city": "London", "postalCode": "EC1A 1BB", "country": "GB"},
                       "empty": None}}


def render(engine, event, **settings):
    return engine.render(event, engine.route("klaviyo", {**SETTINGS, **settings}, environ={}))


def only(outcome):
    assert outcome.status == "send", outcome.errors
    (request,) = outcome.requests
    return request


def test_every_request_carries_the_key_the_revision_and_jsonapi_types(engine):
    request = only(render(engine, IDENTIFY))
    headers = request.to_dict(show_secrets=True)["headers"]
    assert headers["Authorization"] == f"Klaviyo-API-Key {SETTINGS['api_key']}"
    assert headers["revision"] == "2026-07-15" and headers["Content-Type"] == "application/vnd.api+json"
    assert SETTINGS["api_key"] not in json.dumps(request.to_dict()) + repr(request)
    assert only(render(engine, IDENTIFY, revision="2026-10-15")).headers["revision"] == "2026-10-15"


def test_identify_imports_the_profile_with_its_fields_and_custom_properties(engine):
    request = only(render(engine, IDENTIFY))
    assert request.url == "https://a.klaviyo.com/api/profile-import"
    data = request.body["data"]
    assert data["type"] == "profile"
    attributes = data["attributes"]
    assert (attributes["email"], attributes["external_id"], attributes["phone_number"]) == ("ada@example.com", "u1", "+442079460958")
    assert (attributes["first_name"], attributes["last_name"], attributes["organization"]) == ("Ada", "King Lovelace", "Acme")
    assert attributes["location"] == {"city": "London", "zip": "EC1A 1BB", "country": "GB", "ip": "203.0.113.9"}
    # traits without a profile field; a null trait is left out, never sent (null would clear the field)
    assert attributes["properties"] == {"plan": "pro"}
    assert "title" not in attributes  # an empty trait would clear Klaviyo's field: left out
    assert "null" not in json.dumps(request.body)


def test_identify_without_email_phone_or_user_id_is_rejected_with_the_reason(engine):
    outcome = render(engine, {"type": "identify", "anonymousId": "a1", "messageId": "m1", "traits": {"plan": "pro"}})
    assert outcome.status == "rejected"
    assert "one of email, phone (E.164) or userId is required" in outcome.errors[0].message
    phone_only = only(render(engine, {"type": "identify", "anonymousId": "a1", "messageId": "m1", "traits": {"phone": "+15005550006"}}))
    assert phone_only.body["data"]["attributes"] == {"phone_number": "+15005550006"}  # no empty location or properties


def test_track_creates_an_event_with_the_message_id_as_unique_id(engine):
    event = {"type": "track", "event": "Signed Up", "userId": "u1", "anonymousId": "a1", "messageId": "m-77",
             "timestamp": "2024-05-14T09:20:00Z", "context": {"traits": {"email": "ada@example.com"}},
             "properties": {"plan": "pro", "value": "12.5"}}
    request = only(render(engine, event))
    assert request.url == "https://a.klaviyo.com/api/events"
    attributes = request.body["data"]["attributes"]
    assert attributes["unique_id"] == "m-77" and attributes["time"] == "2024-05-14T09:20:00.000Z"
    assert attributes["metric"] == {"data": {"type": "metric", "attributes": {"name": "Signed Up"}}}
    assert attributes["profile"]["data"]["attributes"] == {"email": "ada@example.com", "external_id": "u1", "anonymous_id": "a1"}
    assert attributes["value"] == 12.5 and attributes["properties"] == {"plan": "pro", "value": "12.5"}


def test_order_completed_has_the_revenue_as_value_and_the_products_as_items(engine):
    event = json.loads((ROOT / "fixtures" / "events" / "track-order-completed.json").read_text(encoding="utf-8"))
    attributes = only(render(engine, event)).body["data"]["attributes"]
    assert (attributes["value"], attributes["value_currency"]) == (50, "EUR")
    properties = attributes["properties"]
    assert "products" not in properties and properties["OrderId"] == "ORD-50314"
    assert properties["ItemNames"] == ["Monopoly: 3rd Edition", "Uno Card Game"]
    assert properties["Items"][1] == {"ProductID": "P-505bd76785", "SKU": "46493-32", "ProductName": "Uno Card Game",
                                      "Quantity": 2, "ItemPrice": 3, "RowTotal": 6, "Categories": ["Games"]}


def test_a_track_needs_someone_and_a_short_metric_name(engine):
    nobody = {"type": "track", "event": "X", "userId": "u1", "messageId": "m1"}
    assert only(render(engine, nobody)).body["data"]["attributes"]["profile"]["data"]["attributes"] == {"external_id": "u1"}
    long_name = render(engine, {**nobody, "event": "x" * 128})
    assert long_name.status == "rejected" and "less than 128 characters" in long_name.errors[0].message
    assert only(render(engine, {**nobody, "event": "x" * 127}))


def test_no_batching_each_event_is_its_own_request(engine):
    route = engine.route("klaviyo", SETTINGS, environ={})
    outcomes = [engine.render({**IDENTIFY, "messageId": f"m{i}"}, route) for i in range(5)]
    assert len(engine.batch(route, outcomes)) == 5


def test_base_url_overrides_the_host(engine):
    assert only(render(engine, IDENTIFY, base_url="http://127.0.0.1:9")).url == "http://127.0.0.1:9/api/profile-import"


def test_a_private_key_is_required(engine):
    from engine.problems import ConfigError
    with pytest.raises(ConfigError, match="api_key"):
        engine.route("klaviyo", {"api_key": "public-key"}, environ={})
