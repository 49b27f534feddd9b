"""Amplitude's key rules, through the shipped mapping: identifiers and insert_id, revenue, the Identify API's
form with $set/$setOnce, groups, the EU host and the Batch API, batching limits, the user agent."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from contracts import DESTINATIONS

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "amplitude.json").read_text(encoding="utf-8"))
EVENTS = ROOT / "fixtures" / "events"
TRACK = {"type": "track", "event": "Signed Up", "userId": "user-0001", "anonymousId": "anon-0001",
         "messageId": "ajs-next-" + "0" * 32, "timestamp": "2024-05-14T09:20:00.000Z", "properties": {"plan": "pro"}}


def load(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def render(engine, event, **settings):
    return engine.render(event, engine.route("amplitude", {**SETTINGS, **settings}, environ={}))


def event_of(outcome) -> dict:
    (request,) = outcome.requests
    (event,) = request.body["events"]
    return event


def form_of(request) -> dict:
    """The form as Amplitude reads it: each field once, the JSON ones parsed."""
    fields = {k: v[0] for k, v in parse_qs(request.encoded_body().decode(), keep_blank_values=True).items()}
    return {k: json.loads(v) if k in ("identification", "mapping", "options") else v for k, v in fields.items()}


def test_user_id_device_id_time_and_insert_id(engine):
    outcome = render(engine, TRACK)
    assert outcome.requests[0].url == "https://api2.amplitude.com/2/httpapi"
    event = event_of(outcome)
    assert (event["user_id"], event["device_id"], event["event_type"]) == ("user-0001", "anon-0001", "Signed Up")
    assert event["time"] == 1715678400000   # ms since the epoch, as Amplitude requires
    assert outcome.requests[0].body["api_key"] == SETTINGS["api_key"]
    assert "options" not in outcome.requests[0].body


def test_the_device_id_prefers_the_devices_own_id(engine):
    event = event_of(render(engine, {**TRACK, "context": {"device": {"id": "idfv-0001"}}}))
    assert event["device_id"] == "idfv-0001"


def test_insert_id_is_the_message_id_so_a_redelivery_is_deduplicated(engine):
    first, again = event_of(render(engine, TRACK)), event_of(render(engine, dict(TRACK)))
    other = event_of(render(engine, {**TRACK, "messageId": "m-other"}))
    assert first["insert_id"] == again["insert_id"] == TRACK["messageId"] != other["insert_id"]


def test_an_event_without_any_id_is_rejected_with_the_reason(engine):
    """The Segment spec already requires userId or anonymousId; the mapping says so itself too, should an
    event reach it without one (the destination's own render, past validation)."""
    route = engine.route("amplitude", SETTINGS, environ={})
    for kind in ("track", "identify"):
        event = {**TRACK, "type": kind, "userId": None, "anonymousId": None}
        outcome = route.destination.render(event, route.settings, route.secrets)
        assert outcome.status == "rejected"
        assert "a user_id or device_id is required" in outcome.errors[0].message


def test_order_completed_carries_the_revenue(engine):
    event = event_of(render(engine, load("track-order-completed")))
    assert (event["revenue"], event["revenueType"], event["currency"]) == (50, "Purchase", "EUR")
    assert len(event["event_properties"]["products"]) == 2
    total_only = {**load("track-order-completed"), "properties": {"total": 57.5, "currency": "eur"}}
    event = event_of(render(engine, total_only))
    assert (event["revenue"], event["currency"]) == (57.5, "EUR")


def test_other_tracks_carry_no_revenue(engine):
    event = event_of(render(engine, {**TRACK, "properties": {"revenue": 10, "currency": "EUR"}}))
    assert "revenue" not in event and "revenueType" not in event and event["event_properties"]["revenue"] == 10


def test_utm_and_referrer_become_set_and_set_once(engine):
    event = event_of(render(engine, load("page-browser-user-agent")))
    assert event["user_properties"] == {
        "$set": {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring-launch",
                 "referrer": "https://www.google.com/"},
        "$setOnce": {"initial_utm_source": "newsletter", "initial_utm_medium": "email",
                     "initial_utm_campaign": "spring-launch", "initial_referrer": "https://www.google.com/"}}
    assert "user_properties" not in event_of(render(engine, TRACK))   # nothing empty is sent


def test_the_user_agent_gives_os_name_device_type_and_friends(engine):
    desktop = event_of(render(engine, load("page-browser-user-agent")))
    assert (desktop["os_name"], desktop["os_version"], desktop["device_type"], desktop["platform"]) == \
        ("Chrome", "124", "desktop", "Web")
    mobile = event_of(render(engine, load("track-product-added-mobile")))
    assert (mobile["os_name"], mobile["device_model"], mobile["device_brand"], mobile["device_type"]) == \
        ("Mobile Safari", "iPhone", "Apple", "mobile")
    app = event_of(render(engine, {**TRACK, "context": {"os": {"name": "iOS", "version": "17.4"},
                                                        "device": {"type": "ios", "model": "iPhone15,2"},
                                                        "library": {"name": "analytics-ios"}}}))
    assert (app["os_name"], app["os_version"], app["platform"], app["device_model"]) == ("iOS", "17.4", "iOS", "iPhone15,2")


def test_web_is_the_platform_of_analytics_js_only(engine):
    assert event_of(render(engine, {**TRACK, "context": {"library": {"name": "analytics.js"}}}))["platform"] == "Web"
    for context in ({"library": {"name": "analytics-node"}}, {"library": {"name": "analytics.jsx"}}, {}):
        event = event_of(render(engine, {**TRACK, "context": context}))
        assert "platform" not in event, context


def test_page_and_screen_names(engine):
    assert event_of(render(engine, load("page-named")))["event_type"] == "Viewed Pricing"
    assert event_of(render(engine, load("page-unnamed")))["event_type"] == "Loaded a Page"
    assert event_of(render(engine, load("screen")))["event_type"] == "Viewed Order Details"


def test_identify_goes_to_the_identify_api_as_a_form_with_set_and_set_once(engine):
    (request,) = render(engine, load("page-browser-user-agent") | {"type": "identify", "traits": {"plan": "pro"}}).requests
    assert request.url == "https://api2.amplitude.com/identify"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = form_of(request)
    assert form["api_key"] == SETTINGS["api_key"]
    identification = form["identification"]
    assert identification["user_id"] == "usr_4f2a91c7"
    assert identification["user_properties"]["$set"] == {"plan": "pro", "utm_source": "newsletter", "utm_medium": "email",
                                                          "utm_campaign": "spring-launch",
                                                          "referrer": "https://www.google.com/"}
    assert identification["user_properties"]["$setOnce"]["initial_referrer"] == "https://www.google.com/"
    # operations only: never a plain property beside $set (Amplitude refuses the mix)
    assert all(key.startswith("$") for key in identification["user_properties"])


def test_identify_leaves_null_traits_out(engine):
    form = form_of(render(engine, load("identify-null-traits")).requests[0])
    assert form["identification"]["user_properties"] == {"$set": {"email": "null.traits@example.com"}}


def test_group_joins_the_user_then_sets_the_group(engine):
    membership, properties = render(engine, load("group"), group_type="org id").requests
    assert membership.url.endswith("/identify") and properties.url.endswith("/groupidentify")
    assert form_of(membership)["identification"] == {"user_id": "usr_4f2a91c7", "groups": {"org id": "acme-corp"},
                                                    "user_properties": {"$set": {"org id": "acme-corp"}}}
    (group,) = form_of(properties)["identification"]
    assert (group["group_type"], group["group_value"]) == ("org id", "acme-corp")
    assert group["group_properties"]["$set"]["name"] == "Acme Corp"


def test_aliases_go_to_the_user_mapping_api_only_when_asked(engine):
    skipped = render(engine, load("alias"))
    assert skipped.status == "skipped" and "settings.map_aliases" in skipped.reason
    (request,) = render(engine, load("alias"), map_aliases=True).requests
    assert request.url == "https://api.amplitude.com/usermap"
    assert form_of(request)["mapping"] == [{"user_id": "5b1e9d3c-7a42-4f0e-9c61-8d2a4e7f1b35", "global_user_id": "usr_4f2a91c7"}]


def test_min_id_length_is_sent_as_the_option(engine):
    assert render(engine, TRACK, min_id_length=3).requests[0].body["options"] == {"min_id_length": 3}
    assert form_of(render(engine, load("identify-full"), min_id_length=3).requests[0])["options"] == {"min_id_length": 3}


@pytest.mark.parametrize(("settings", "url"), [
    ({}, "https://api2.amplitude.com/2/httpapi"),
    ({"region": "eu"}, "https://api.eu.amplitude.com/2/httpapi"),
    ({"endpoint": "batch"}, "https://api2.amplitude.com/batch"),
    ({"region": "eu", "endpoint": "batch"}, "https://api.eu.amplitude.com/batch"),
    ({"base_url": "http://127.0.0.1:9/"}, "http://127.0.0.1:9/2/httpapi"),
])
def test_the_regional_host_and_the_batch_api(engine, settings, url):
    assert render(engine, TRACK, **settings).requests[0].url == url


def test_the_eu_host_serves_identify_too(engine):
    assert render(engine, load("identify-full"), region="eu").requests[0].url == "https://api.eu.amplitude.com/identify"


def test_batches_hold_at_most_1000_events_and_1_mb(engine):
    route = engine.route("amplitude", SETTINGS, environ={})
    outcomes = [engine.render({**TRACK, "messageId": f"m{i}"}, route) for i in range(2001)]
    batches = engine.batch(route, outcomes)
    assert [len(r.body["events"]) for r in batches] == [1000, 1000, 1]
    big = [engine.render({**TRACK, "messageId": f"b{i}", "properties": {"note": "x" * 200_000}}, route) for i in range(9)]
    sized = engine.batch(route, big)
    assert len(sized) > 1 and all(len(r.encoded_body()) <= 1_000_000 for r in sized)


def test_identify_and_group_are_never_batched(engine):
    route = engine.route("amplitude", SETTINGS, environ={})
    outcomes = [engine.render(load(name), route) for name in ("identify-full", "identify-no-email", "group")]
    assert [r.url.rsplit("/", 1)[1] for r in engine.batch(route, outcomes)] == ["identify", "identify", "identify",
                                                                                 "groupidentify"]


def test_the_rules_catch_a_mixed_user_properties_and_a_short_id(engine):
    """The contract's rules bite: what Amplitude refuses fails them."""
    (request,) = render(engine, load("identify-full")).requests
    contract = DESTINATIONS["amplitude"]
    assert contract.violations(request)[0] == []
    ident = form_of(request)["identification"]
    mixed = {**ident, "user_properties": {"$set": {"a": 1}, "plan": "pro"}}
    body = {"api_key": "k", "identification": json.dumps(mixed)}
    assert contract.violations(dataclasses.replace(request, body=body, wire=None))[0]
    short = event_of(render(engine, {**TRACK, "userId": "u1", "anonymousId": None}))
    assert short["user_id"] == "u1"   # sent: Amplitude removes it and answers 400; its batch splits (worker)
    (short_request,) = render(engine, {**TRACK, "userId": "u1", "anonymousId": None}).requests
    assert any(v.rule == "minLength" for v in contract.violations(short_request)[0])
