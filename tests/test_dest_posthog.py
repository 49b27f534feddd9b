"""PostHog's key rules, through the shipped mapping: everything through /batch/ with api_key, distinct_id and
a uuid from the messageId, $identify with $set, $create_alias, $groupidentify, $pageview and $screen, the EU
host or a self-hosted URL, batching limits, and the capture OpenAPI floor with the documented rules."""
from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import pytest
from contracts import DESTINATIONS

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "posthog.json").read_text(encoding="utf-8"))
EVENTS = ROOT / "fixtures" / "events"
TRACK = {"type": "track", "event": "Signed Up", "userId": "u1", "anonymousId": "a1", "messageId": "m1",
         "timestamp": "2024-05-14T09:20:00Z", "properties": {"plan": "pro", "gone": None}}


def load(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def render(engine, event, **settings):
    return engine.render(event, engine.route("posthog", {**SETTINGS, **settings}, environ={}))


def item_of(outcome) -> dict:
    (request,) = outcome.requests
    (item,) = request.body["batch"]
    return item


def test_every_call_goes_to_batch_with_the_api_key(engine):
    for name in ("track-order-completed", "identify-full", "page-named", "screen", "group", "alias"):
        (request,) = render(engine, load(name)).requests
        assert request.method == "POST" and request.url == "https://us.i.posthog.com/batch/", name
        assert request.body["api_key"] == SETTINGS["api_key"] and len(request.body["batch"]) == 1


def test_distinct_id_timestamp_and_properties(engine):
    item = item_of(render(engine, TRACK))
    assert (item["event"], item["distinct_id"], item["timestamp"]) == ("Signed Up", "u1", "2024-05-14T09:20:00.000Z")
    assert item["properties"]["plan"] == "pro" and "gone" not in item["properties"]
    assert item["properties"]["$lib"] == "eventmap"
    assert item_of(render(engine, {k: v for k, v in TRACK.items() if k != "userId"}))["distinct_id"] == "a1"


def test_uuid_is_derived_from_the_message_id_so_a_redelivery_is_deduplicated(engine):
    first, again = item_of(render(engine, TRACK))["uuid"], item_of(render(engine, dict(TRACK)))["uuid"]
    other = item_of(render(engine, {**TRACK, "messageId": "m2"}))["uuid"]
    assert first == again != other
    assert str(uuid.UUID(first)) == first   # a valid UUID: PostHog drops events with invalid ones


def test_identify_sets_the_person_and_merges_the_anonymous_id(engine):
    item = item_of(render(engine, load("identify-full")))
    assert (item["event"], item["distinct_id"]) == ("$identify", "usr_4f2a91c7")
    assert item["properties"]["$set"]["email"] == "ada.lovelace@example.com"
    assert item["properties"]["$anon_distinct_id"] == "0c7a3f52-9d1e-4b8a-a6f3-2e5d8c1b7a90"
    anonymous = item_of(render(engine, load("identify-anonymous")))
    assert "$anon_distinct_id" not in anonymous["properties"]   # nothing to merge: the anonymousId is its own id
    nulls = item_of(render(engine, load("identify-null-traits")))
    assert nulls["properties"]["$set"] == {"email": "null.traits@example.com"}   # a null trait does not erase


def test_alias_links_the_previous_id(engine):
    item = item_of(render(engine, load("alias")))
    assert item["event"] == "$create_alias"
    assert item["properties"]["alias"] == "usr_4f2a91c7"
    assert item["distinct_id"] == item["properties"]["distinct_id"] == "5b1e9d3c-7a42-4f0e-9c61-8d2a4e7f1b35"


def test_group_identifies_the_group_under_the_group_type(engine):
    item = item_of(render(engine, load("group"), group_type="organization"))
    props = item["properties"]
    assert item["event"] == "$groupidentify" and item["distinct_id"] == "usr_4f2a91c7"
    assert (props["$group_type"], props["$group_key"]) == ("organization", "acme-corp")
    assert props["$group_set"]["name"] == "Acme Corp" and props["$groups"] == {"organization": "acme-corp"}


def test_events_carry_the_users_group(engine):
    props = item_of(render(engine, {**TRACK, "context": {"groupId": "acme"}}))["properties"]
    assert props["$groups"] == {"company": "acme"}


def test_page_is_a_pageview_and_screen_a_screen(engine):
    page = item_of(render(engine, load("page-browser-user-agent")))
    assert page["event"] == "$pageview"
    assert page["properties"]["$current_url"] == "https://example.com/docs/getting-started?utm_source=newsletter"
    assert (page["properties"]["$browser"], page["properties"]["$os"], page["properties"]["$device_type"]) == \
        ("Chrome", "Windows", "Desktop")
    screen = item_of(render(engine, load("screen")))
    assert (screen["event"], screen["properties"]["$screen_name"]) == ("$screen", "Order Details")


@pytest.mark.parametrize(("settings", "url"), [
    ({}, "https://us.i.posthog.com/batch/"),
    ({"region": "eu"}, "https://eu.i.posthog.com/batch/"),
    ({"base_url": "https://posthog.example.com/"}, "https://posthog.example.com/batch/"),
])
def test_the_cloud_region_or_a_self_hosted_url(engine, settings, url):
    assert render(engine, TRACK, **settings).requests[0].url == url


def test_historical_migration_is_sent_only_when_set(engine):
    assert "historical_migration" not in render(engine, TRACK).requests[0].body
    assert render(engine, TRACK, historical_migration=True).requests[0].body["historical_migration"] is True


def test_batches_mix_every_call_and_stay_under_20_mb(engine):
    route = engine.route("posthog", SETTINGS, environ={})
    mixed = [engine.render(load(name), route) for name in ("track-order-completed", "identify-full", "group", "alias")]
    (request,) = engine.batch(route, mixed)
    assert [item["event"] for item in request.body["batch"]] == ["Order Completed", "$identify", "$groupidentify",
                                                                 "$create_alias"]
    many = [engine.render({**TRACK, "messageId": f"m{i}"}, route) for i in range(2001)]
    assert [len(r.body["batch"]) for r in engine.batch(route, many)] == [1000, 1000, 1]
    big = [engine.render({**TRACK, "messageId": f"b{i}", "properties": {"note": "x" * 900_000}}, route) for i in range(45)]
    sized = engine.batch(route, big)
    assert len(sized) == 3 and all(len(r.encoded_body()) < 20_000_000 for r in sized)


def test_the_floor_and_the_rules_bite(engine):
    """PostHog's own OpenAPI floor refuses an unknown event key; the documented rules refuse an event without
    distinct_id, an invalid uuid and a $groupidentify without its key."""
    contract = DESTINATIONS["posthog"]
    (request,) = render(engine, load("group")).requests
    assert contract.violations(request)[0] == []

    def changed(change):
        body = json.loads(json.dumps(request.body))
        change(body["batch"][0])
        return [(v.check, v.rule) for v in contract.violations(dataclasses.replace(request, body=body, wire=None))[0]]

    assert ("posthog openapi", "anyOf") in changed(lambda item: item.update(surprise=1))
    assert ("posthog rules", "required") in changed(lambda item: item.pop("distinct_id"))
    assert ("posthog rules", "pattern") in changed(lambda item: item.update(uuid="not-a-uuid"))
    assert ("posthog rules", "required") in changed(lambda item: item["properties"].pop("$group_key"))
