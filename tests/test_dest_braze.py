"""Braze's key rules, through the shipped mapping: who a request is for (external_id, else the anonymousId's
alias-only profile), profile fields and custom attributes, custom events, one purchase per product of an order with
the product's fields over the order's, every purchase rule checked before sending with its reason, batches of at
most 75 of each, and the instance's REST endpoint."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from contracts import DESTINATIONS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.problems import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "braze.json").read_text(encoding="utf-8"))
IDENTIFY = {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m1", "timestamp": "2024-05-14T09:20:00Z",
            "traits": {"email": " ada@example.com ", "name": "Ada King Lovelace", "gender": "Female", "birthday": "1815-12-10",
                       "phone": "+44 20 7946 0958", "avatar": "https://x.example/ada.png", "plan": "pro", "logins": 3,
                       "address": {"city": "London", "country": "GB", "street": "12 Row"}}}
TRACK = {"type": "track", "event": "Signed Up", "userId": "u1", "anonymousId": "a1", "messageId": "m2",
         "timestamp": "2024-05-14T09:20:00Z", "properties": {"plan": "pro", "seats": 3}}
ORDER = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m3", "timestamp": "2024-05-14T12:30:45.123Z",
         "properties": {"order_id": "o1", "revenue": 22.0, "currency": "eur", "name": "the order", "coupon": "SPRING",
                        "products": [{"product_id": "p1", "name": "Monopoly", "price": 19, "quantity": 1, "category": "Games"},
                                     {"sku": "sku-2", "name": "Uno", "price": "1.50", "quantity": 2, "currency": "GBP"}]}}


def render(engine, event, **settings):
    return engine.render(event, engine.route("braze", {**SETTINGS, **settings}, environ={}))


def body(engine, event, **settings) -> dict:
    outcome = render(engine, event, **settings)
    assert outcome.status == "send", outcome.errors
    (request,) = outcome.requests
    return request.body


def rejected(engine, event) -> str:
    outcome = render(engine, event)
    assert outcome.status == "rejected" and not outcome.requests
    return outcome.errors[0].message


def test_identify_sets_profile_fields_and_custom_attributes_by_external_id(engine):
    (attributes,) = body(engine, IDENTIFY)["attributes"]
    assert attributes == {"plan": "pro", "logins": 3, "external_id": "u1", "_update_existing_only": False,
                          "email": "ada@example.com", "phone": "+442079460958", "first_name": "Ada",
                          "last_name": "King Lovelace", "gender": "F", "dob": "1815-12-10", "country": "GB",
                          "home_city": "London", "image_url": "https://x.example/ada.png"}


@pytest.mark.parametrize(("said", "sent"), [("male", "M"), (" Woman ", "F"), ("other", "O"), ("prefer not to say", "P"),
                                            ("n", "N"), ("nonbinary", None), (7, None)])
def test_gender_is_one_of_brazes_letters_or_left_out(engine, said, sent):
    (attributes,) = body(engine, {**IDENTIFY, "traits": {"gender": said}})["attributes"]
    assert attributes.get("gender") == sent and "gender" in attributes if sent else "gender" not in attributes


def test_without_a_user_id_the_anonymous_id_names_an_alias_only_profile_braze_creates(engine):
    anonymous = {k: v for k, v in IDENTIFY.items() if k != "userId"}
    (attributes,) = body(engine, anonymous)["attributes"]
    assert "external_id" not in attributes
    assert attributes["user_alias"] == {"alias_name": "a1", "alias_label": "anonymous_id"}
    # "If this value is omitted, the alias-only user profile will not be created"
    assert attributes["_update_existing_only"] is False
    (event,) = body(engine, {k: v for k, v in TRACK.items() if k != "userId"}, alias_label="seg_anon",
                    update_existing_only=True)["events"]
    assert event["user_alias"] == {"alias_name": "a1", "alias_label": "seg_anon"} and event["_update_existing_only"] is True


def test_track_is_a_custom_event(engine):
    assert body(engine, TRACK) == {"events": [{"external_id": "u1", "app_id": "test-braze-app-0001", "name": "Signed Up",
                                               "time": "2024-05-14T09:20:00.000Z", "properties": {"plan": "pro", "seats": 3},
                                               "_update_existing_only": False}]}
    assert "app_id" not in body(engine, TRACK, app_id=None)["events"][0]
    assert "event name is required" in rejected(engine, {**TRACK, "event": "  "})


def test_an_order_is_one_purchase_per_product_with_the_products_fields_over_the_orders(engine):
    first, second = body(engine, ORDER)["purchases"]
    assert first == {"external_id": "u1", "app_id": "test-braze-app-0001", "product_id": "p1", "currency": "EUR", "price": 19,
                     "quantity": 1, "time": "2024-05-14T12:30:45.123Z",
                     "properties": {"order_id": "o1", "revenue": 22.0, "name": "Monopoly", "coupon": "SPRING", "category": "Games"},
                     "_update_existing_only": False}
    # no product_id: the sku; the product's own currency; the price as a number; the product's name over the order's
    assert (second["product_id"], second["currency"], second["price"], second["quantity"]) == ("sku-2", "GBP", 1.5, 2)
    assert second["properties"] == {"order_id": "o1", "revenue": 22.0, "name": "Uno", "coupon": "SPRING", "sku": "sku-2"}
    no_currency = {**ORDER, "properties": {"products": [{"product_id": "p1", "price": 1}]}}
    assert body(engine, no_currency)["purchases"][0]["currency"] == "USD"


def test_an_order_without_products_is_a_custom_event(engine):
    empty = {**ORDER, "properties": {"order_id": "o1", "products": []}}
    assert body(engine, empty) == {"events": [{"external_id": "u1", "app_id": "test-braze-app-0001", "name": "Order Completed",
                                               "time": "2024-05-14T12:30:45.123Z", "properties": {"order_id": "o1", "products": []},
                                               "_update_existing_only": False}]}


def order_of(*products) -> dict:
    return {**ORDER, "properties": {"order_id": "o1", "products": list(products)}}


@pytest.mark.parametrize(("products", "reason"), [
    ([{"name": None, "price": 1}], "every product needs a product_id"),
    ([{"product_id": "p1", "price": 1}, {"product_id": "p2"}], "every product needs a numeric price"),
    ([{"product_id": "p1", "price": 1, "quantity": 101}], "a quantity a whole number from 1 to 100"),
    ([{"product_id": "p1", "price": 1, "quantity": 0}], "a quantity a whole number from 1 to 100"),
    ([{"product_id": "p1", "price": 1, "quantity": 1.5}], "a quantity a whole number from 1 to 100"),
    ([{"product_id": "p" * 256, "price": 1}], "a product_id is at most 255 characters"),
    ([{"product_id": f"p{n}", "price": 1} for n in range(76)], "an order has at most 75 products"),
])
def test_each_purchase_rule_rejects_the_order_with_its_reason_before_anything_is_sent(engine, products, reason):
    message = rejected(engine, order_of(*products))
    assert message.startswith("Braze purchase: ") and reason in message
    assert message.endswith("https://www.braze.com/docs/api/objects_filters/purchase_object/")


def test_the_edges_of_the_purchase_rules_are_sent(engine):
    fine = [{"product_id": "p" * 255, "price": 0, "quantity": 100}] + [{"product_id": f"p{n}", "price": 1} for n in range(74)]
    assert len(body(engine, order_of(*fine))["purchases"]) == 75


def test_batches_hold_at_most_75_of_each_and_orders_go_alone(engine):
    route = engine.route("braze", SETTINGS, environ={})
    events = [{**(IDENTIFY if n % 2 else TRACK), "messageId": f"m{n}", "userId": f"u{n}"} for n in range(160)]
    events.insert(3, ORDER)
    outcomes = [engine.render(event, route) for event in events]
    requests = engine.batch(route, outcomes)
    shapes = [{kind: len(objects) for kind, objects in request.body.items()} for request in requests]
    assert shapes == [{"purchases": 2}, {"attributes": 37, "events": 38}, {"attributes": 38, "events": 37},
                      {"attributes": 5, "events": 5}]
    # in event order: the first batch carries u0 (a track) and u1 (an identify) first
    assert requests[1].body["events"][0]["external_id"] == "u0" and requests[1].body["attributes"][0]["external_id"] == "u1"
    assert all(r.url == "https://rest.fra-01.braze.eu/users/track" for r in requests)


def test_the_instance_rest_endpoint_and_base_url(engine):
    request = render(engine, TRACK, instance_url="https://rest.iad-03.braze.com").requests[0]
    assert request.url == "https://rest.iad-03.braze.com/users/track"
    assert request.headers["Authorization"] == "Bearer test-braze-rest-key-0001"
    default = engine.route("braze", {"api_key": "k"}, environ={})
    assert engine.render(TRACK, default).requests[0].url == "https://rest.iad-01.braze.com/users/track"
    assert render(engine, TRACK, base_url="http://127.0.0.1:9").requests[0].url == "http://127.0.0.1:9/users/track"
    with pytest.raises(ConfigError, match="instance_url"):
        engine.route("braze", {**SETTINGS, "instance_url": "https://rest.iad-99.braze.com"}, environ={})


def test_the_rules_schema_bites(engine):
    route = engine.route("braze", SETTINGS, environ={})
    outcomes = [engine.render({**TRACK, "messageId": f"m{n}"}, route) for n in range(75)]
    (request,) = engine.batch(route, outcomes)
    contract = DESTINATIONS["braze"]
    assert contract.violations(request)[0] == []
    too_many = dataclasses.replace(request, body={"events": request.body["events"] * 2})
    assert ("request.body.events", "maxItems") in {(v.where, v.rule) for v in contract.violations(too_many)[0]}
    unnamed = dataclasses.replace(request, body={"events": [{**request.body["events"][0], "name": ""}]})
    assert ("request.body.events[0].name", "minLength") in {(v.where, v.rule) for v in contract.violations(unnamed)[0]}
    nobody = dataclasses.replace(request, body={"events": [{"name": "x", "time": "2024-05-14T09:20:00Z"}]})
    assert contract.violations(nobody)[0], "an event for nobody must break the rules"
    dollar = dataclasses.replace(request, body={"events": [{**request.body["events"][0], "properties": {"$x": 1}}]})
    assert ("request.body.events[0].properties", "pattern") in {(v.where, v.rule) for v in contract.violations(dollar)[0]}


# --------------------------------------------------------------------------- any order: sent and valid, or rejected

PRICES = st.one_of(st.none(), st.integers(-5, 10**6), st.floats(-1, 1e6, allow_nan=False), st.sampled_from(["1.50", "x", ""]))
QUANTITIES = st.one_of(st.none(), st.integers(-3, 150), st.floats(0, 200, allow_nan=False), st.booleans())
PRODUCTS = st.lists(st.fixed_dictionaries({}, optional={"product_id": st.one_of(st.text(max_size=300), st.integers()),
                                                        "sku": st.text(max_size=5), "price": PRICES, "quantity": QUANTITIES,
                                                        "currency": st.sampled_from(["usd", "GBP", None])}),
                    min_size=1, max_size=80)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(products=PRODUCTS)
def test_any_order_is_sent_meeting_brazes_rules_or_rejected_with_the_reason(engine, products):
    outcome = render(engine, order_of(*products))
    if outcome.status == "send":
        (request,) = outcome.requests
        left, _ = DESTINATIONS["braze"].violations(request)
        assert not left, "\n".join(map(str, left))
    else:
        assert outcome.status == "rejected" and outcome.errors and not outcome.requests
        assert outcome.errors[0].message.startswith("Braze"), outcome.errors[0].message
