"""Customer.io's key rules, through the shipped mapping: one identifier per person (id, else email where the
workspace allows), dates as Unix seconds, events, page and screen views on the person or anonymous, groups as
objects with relationships, size limits with their reasons, no batching, and the EU host."""
from __future__ import annotations

import json
from pathlib import Path

from test_contracts import Accepting

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "customerio.json").read_text(encoding="utf-8"))
IDENTIFY = {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m1", "timestamp": "2024-05-14T09:20:00Z",
            "traits": {"email": "ada@example.com", "createdAt": "2023-11-02T08:00:00.000Z", "plan": "pro",
                       "trial": {"ends": "2024-06-01T00:00:00Z", "note": "2-day"}}}
TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "anonymousId": "a1", "messageId": "m2",
         "timestamp": "2024-05-14T09:20:00Z", "context": {"traits": {"email": "ada@example.com"}},
         "properties": {"order_id": "ORD-1", "shipped_at": "2024-05-15T10:00:00Z", "total": 10}}


def render(engine, event, **settings):
    return engine.render(event, engine.route("customerio", {**SETTINGS, **settings}, environ={}))


def only(outcome):
    assert outcome.status == "send", outcome.errors
    (request,) = outcome.requests
    return request


def test_identify_upserts_the_person_by_id_with_dates_as_unix_seconds(engine):
    request = only(render(engine, IDENTIFY))
    assert request.url == "https://track.customer.io/api/v2/entity"
    assert request.headers["Authorization"].startswith("Basic ")
    body = request.body
    assert (body["type"], body["action"], body["identifiers"], body["timestamp"]) == ("person", "identify", {"id": "u1"}, 1715678400)
    attributes = body["attributes"]
    assert attributes["created_at"] == 1698912000 and "createdAt" not in attributes
    assert attributes["trial"] == {"ends": 1717200000, "note": "2-day"}  # nested dates too; "2-day" is no date
    assert (attributes["email"], attributes["plan"], attributes["anonymous_id"]) == ("ada@example.com", "pro", "a1")


def test_without_a_user_id_the_email_identifies_only_where_the_workspace_allows(engine):
    anonymous = {k: v for k, v in IDENTIFY.items() if k != "userId"}
    refused = render(engine, anonymous)
    assert refused.status == "rejected" and "a userId is required" in refused.errors[0].message
    assert only(render(engine, anonymous, identify_by_email=True)).body["identifiers"] == {"email": "ada@example.com"}
    # one identifier only, even when both are known
    assert only(render(engine, IDENTIFY, identify_by_email=True)).body["identifiers"] == {"id": "u1"}


def test_track_is_an_event_on_the_person_with_dates_as_unix_seconds(engine):
    body = only(render(engine, TRACK)).body
    assert (body["action"], body["name"], body["identifiers"]) == ("event", "Order Completed", {"id": "u1"})
    assert body["attributes"] == {"order_id": "ORD-1", "shipped_at": 1715767200, "total": 10}


def test_an_anonymous_event_goes_to_the_v1_anonymous_endpoint_for_merging_later(engine):
    anonymous = {k: v for k, v in TRACK.items() if k != "userId"}
    request = only(render(engine, anonymous))
    assert request.url == "https://track.customer.io/api/v1/events"
    assert request.body == {"name": "Order Completed", "type": "event", "id": "01HXV6DKG0570V52F7A8GSBCV2", "anonymous_id": "a1",
                            "timestamp": 1715678400,
                            "data": {"order_id": "ORD-1", "shipped_at": 1715767200, "total": 10}}
    # where the workspace identifies by email, the same event is the person's, and only that is sent
    route = engine.route("customerio", {**SETTINGS, "identify_by_email": True}, environ={})
    (request,) = engine.render(anonymous, route, responses=Accepting()).requests
    assert request.url.endswith("/api/v2/entity") and request.body["identifiers"] == {"email": "ada@example.com"}
    (request,) = engine.render(TRACK, route, responses=Accepting()).requests
    assert request.body["identifiers"] == {"id": "u1"}


def test_page_and_screen_views(engine):
    page = {"type": "page", "userId": "u1", "messageId": "m3", "name": "Pricing", "context": {"page": {"url": "https://x.example/pricing"}}}
    body = only(render(engine, page)).body
    assert (body["action"], body["name"]) == ("page", "https://x.example/pricing")
    screen = {"type": "screen", "anonymousId": "a1", "messageId": "m4", "name": "Cart"}
    assert only(render(engine, screen)).body == {"name": "Cart", "type": "screen", "anonymous_id": "a1"}


def test_group_creates_the_object_and_relates_the_person(engine):
    group = {"type": "group", "userId": "u1", "groupId": 42, "messageId": "m5", "traits": {"name": "Acme", "createdAt": "2020-01-01T00:00:00Z"}}
    body = only(render(engine, group, object_type_id="3")).body
    assert body == {"type": "object", "identifiers": {"object_type_id": "3", "object_id": "42"}, "action": "identify",
                    "attributes": {"name": "Acme", "created_at": 1577836800}, "cio_relationships": [{"identifiers": {"id": "u1"}}]}
    anonymous = only(render(engine, {**{k: v for k, v in group.items() if k != "userId"}, "anonymousId": "a1"})).body
    assert "cio_relationships" not in anonymous


def test_limits_are_checked_with_their_reasons(engine):
    too_long = render(engine, {**TRACK, "event": "e" * 101})
    assert too_long.status == "rejected" and "at most 150 and 100 bytes" in too_long.errors[0].message
    assert only(render(engine, {**TRACK, "event": "e" * 100}))
    long_id = render(engine, {**IDENTIFY, "userId": "u" * 151})
    assert long_id.status == "rejected" and "at most 150 bytes" in long_id.errors[0].message


def test_the_eu_region_and_base_url(engine):
    assert only(render(engine, TRACK, region="eu")).url == "https://track-eu.customer.io/api/v2/entity"
    anonymous = {k: v for k, v in TRACK.items() if k != "userId"}
    assert only(render(engine, anonymous, region="eu")).url == "https://track-eu.customer.io/api/v1/events"
    assert only(render(engine, TRACK, base_url="http://127.0.0.1:9")).url == "http://127.0.0.1:9/api/v2/entity"


def test_no_batching_each_event_is_its_own_request(engine):
    route = engine.route("customerio", SETTINGS, environ={})
    outcomes = [engine.render({**IDENTIFY, "messageId": f"m{i}"}, route) for i in range(4)]
    assert len(engine.batch(route, outcomes)) == 4
