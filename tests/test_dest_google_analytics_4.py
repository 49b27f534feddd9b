"""Google Analytics 4's key rules, through the shipped mapping: identifiers, the ecommerce mapping,
GA4's limits (rejected with the rule and its source), one event a request, the EU host."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "fixtures" / "events"
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "google-analytics-4.json").read_text(encoding="utf-8"))
TRACK = {"type": "track", "event": "Report Exported", "userId": "u1", "anonymousId": "a1", "messageId": "m1",
         "timestamp": "2024-05-14T09:20:00.000Z", "properties": {"format": "csv"}}


def render(engine, event, **settings):
    return engine.render(event, engine.route("google-analytics-4", {**SETTINGS, **settings}, environ={}))


def fixture(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def test_client_id_is_the_anonymous_id_else_the_user_id_and_user_id_is_the_user_id(engine):
    body = render(engine, TRACK).requests[0].body
    assert (body["client_id"], body["user_id"]) == ("a1", "u1")
    body = render(engine, {k: v for k, v in TRACK.items() if k != "anonymousId"}).requests[0].body
    assert body["client_id"] == "u1"


def test_the_event_time_travels_in_microseconds(engine):
    assert render(engine, TRACK).requests[0].body["timestamp_micros"] == 1715678400000000


def test_secrets_go_in_the_query_and_are_masked(engine):
    request = render(engine, TRACK).requests[0]
    assert request.query == {"measurement_id": "G-TEST0001", "api_secret": SETTINGS["api_secret"]}
    assert request.to_dict()["query"]["api_secret"] == "***"


@pytest.mark.parametrize(("settings", "url"), [
    ({}, "https://www.google-analytics.com/mp/collect"),
    ({"region": "eu"}, "https://region1.google-analytics.com/mp/collect"),
    ({"validate_only": True}, "https://www.google-analytics.com/debug/mp/collect"),
    ({"base_url": "http://127.0.0.1:9"}, "http://127.0.0.1:9/mp/collect")])
def test_the_host_and_path(engine, settings, url):
    assert render(engine, TRACK, **settings).requests[0].url == url


def test_order_completed_is_a_purchase_with_items_from_the_products(engine):
    (event,) = render(engine, fixture("track-order-completed")).requests[0].body["events"]
    assert event["name"] == "purchase"
    params = event["params"]
    assert (params["transaction_id"], params["value"], params["currency"], params["tax"], params["shipping"]) == \
        ("ORD-50314", 50, "EUR", 2.5, 5)
    assert params["items"][1] == {"item_id": "P-505bd76785", "item_name": "Uno Card Game", "item_category": "Games",
                                  "price": 3, "quantity": 2}


def test_product_added_is_add_to_cart_valued_at_price_times_quantity(engine):
    (event,) = render(engine, fixture("track-product-added-mobile")).requests[0].body["events"]
    assert event["name"] == "add_to_cart" and event["params"]["value"] == 6.0
    assert event["params"]["items"][0]["item_id"] == "P-505bd76785"


def test_checkout_started_is_begin_checkout_and_a_page_is_a_page_view(engine):
    assert render(engine, fixture("track-checkout-started")).requests[0].body["events"][0]["name"] == "begin_checkout"
    (page,) = render(engine, fixture("page-browser-user-agent")).requests[0].body["events"]
    assert page["name"] == "page_view"
    assert page["params"]["page_location"] == "https://example.com/docs/getting-started?utm_source=newsletter"


@pytest.mark.parametrize(("change", "path", "reason"), [
    (lambda p: p.pop("order_id"), "vars.transaction_id", "'transaction_id' is required"),
    (lambda p: p.pop("currency"), "vars.currency", "'currency' is required with 'value'"),
    (lambda p: p.update(currency="EURO"), "vars.currency_is_iso", "3-letter ISO 4217"),
    (lambda p: [p.pop(k) for k in ("revenue", "total")], "vars.value", "'value' is required"),
    (lambda p: p["products"][0].update(name="x" * 101), "vars.items_ok", "at most 100 characters"),
    (lambda p: [q.pop(k) for q in p["products"] for k in ("product_id", "sku", "name")], "vars.items_ok",
     "each with item_id or item_name"),
])
def test_a_purchase_missing_what_ga4_needs_is_rejected_with_the_reason(engine, change, path, reason):
    event = fixture("track-order-completed")
    change(event["properties"])
    outcome = render(engine, event)
    assert outcome.status == "rejected"
    assert [(e.path, reason in e.message, "https://" in e.message) for e in outcome.errors] == [(path, True, True)]


def test_a_default_currency_fills_in_for_an_event_without_one(engine):
    event = fixture("track-order-completed")
    event["properties"].pop("currency")
    assert render(engine, event, default_currency="EUR").requests[0].body["events"][0]["params"]["currency"] == "EUR"


@pytest.mark.parametrize(("name", "sent"), [("Report Exported", "report_exported"), ("x" * 40, "x" * 40)])
def test_custom_event_names_are_snake_case(engine, name, sent):
    assert render(engine, {**TRACK, "event": name}).requests[0].body["events"][0]["name"] == sent


@pytest.mark.parametrize("name", ["x" * 41, "Commande passée", "3D Viewed", "session_start", "ga_thing"])
def test_a_custom_event_name_ga4_would_drop_is_rejected(engine, name):
    outcome = render(engine, {**TRACK, "event": name})
    assert outcome.status == "rejected" and outcome.errors[0].path == "vars.name_ok"
    assert "at most 40 characters" in outcome.errors[0].message


@pytest.mark.parametrize("properties", [
    {"note": "x" * 101}, {f"p{i}": i for i in range(25)}, {"Referred By": "friend"}, {"ga_source": "x"}])
def test_parameters_ga4_would_drop_are_rejected(engine, properties):
    outcome = render(engine, {**TRACK, "properties": properties})
    assert outcome.status == "rejected" and outcome.errors[0].path == "vars.params_ok"


def test_parameters_at_the_limits_are_sent(engine):
    properties = {f"p{i}": "x" * 100 for i in range(24)}
    (event,) = render(engine, {**TRACK, "properties": properties}).requests[0].body["events"]
    assert len(event["params"]) == 25


def test_nested_properties_are_flattened_and_booleans_become_text(engine):
    (event,) = render(engine, fixture("track-nested-properties")).requests[0].body["events"]
    assert event["params"]["workspace_settings_theme"] == "dark" and event["params"]["trial"] == "false"


def test_each_event_is_its_own_request_so_no_request_carries_over_25(engine):
    route = engine.route("google-analytics-4", SETTINGS, environ={})
    outcomes = [engine.render({**TRACK, "messageId": f"m{i}"}, route) for i in range(30)]
    requests = engine.batch(route, outcomes)
    assert len(requests) == 30 and all(len(r.body["events"]) == 1 for r in requests)


def test_identify_and_screen_are_skipped_with_the_reason(engine):
    for name in ("identify-full", "screen"):
        outcome = render(engine, fixture(name))
        assert outcome.status == "skipped" and "not accepted by Google Analytics 4" in outcome.reason
