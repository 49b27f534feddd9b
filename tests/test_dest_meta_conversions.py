"""Meta Conversions API's key rules, through the shipped mapping: customer information normalised and hashed
as Meta documents it (checked against the examples on Meta's page), no clear-text contact details in any
request of any fixture, standard events, deduplication id, website-event requirements, batching and the
test event code."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from test_snapshots import EVENT_FILES, load_event

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "meta-conversions.json").read_text(encoding="utf-8"))
HASHED = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "external_id", "db", "ge")
PAGE = "https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters"

# Meta's own examples on PAGE: input, normalised form, expected SHA-256
EMAIL = ("John_Smith@gmail.com", "john_smith@gmail.com", "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f")
PHONE = ("(650)555-1212", "16505551212", "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176")
FIRST_NAMES = [("Mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
               ("정", "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"),
               ("Valéry", "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c")]


def render(engine, event, **settings):
    return engine.render(event, engine.route("meta-conversions", {**SETTINGS, **settings}, environ={}))


def server_event(engine, event, **settings) -> dict:
    outcome = render(engine, event, **settings)
    assert outcome.status == "send", outcome.errors
    (request,) = outcome.requests
    (sent,) = request.body["data"]
    return sent


def track(name="Signed Up", traits=None, **extra) -> dict:
    event = {"type": "track", "event": name, "messageId": "ajs-next-0001", "userId": "U-42",
             "timestamp": "2024-05-14T09:20:00.000Z",
             "context": {"ip": "203.0.113.9", "traits": traits or {}}, "properties": {}}
    event.update(extra)
    return event


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_email_phone_and_names_hash_to_metas_documented_examples(engine):
    user = server_event(engine, track(traits={"email": f"  {EMAIL[0]} ", "phone": PHONE[0], "firstName": "Mary"}),
                        default_phone_country="US")["user_data"]
    assert user["em"] == EMAIL[2] == sha(EMAIL[1])
    assert user["ph"] == PHONE[2] == sha(PHONE[1])
    for name, expected in FIRST_NAMES:
        got = server_event(engine, track(traits={"firstName": name, "lastName": name}))["user_data"]
        assert got["fn"] == got["ln"] == expected, name


def test_a_phone_with_its_country_code_needs_no_default_country(engine):
    user = server_event(engine, track(traits={"phone": "+1 (650) 555-1212"}))["user_data"]
    assert user["ph"] == PHONE[2]
    uk = server_event(engine, track(traits={"phone": "+44 020 7946 0958"}))["user_data"]
    assert uk["ph"] == sha("442079460958")  # E.164 drops the trunk 0; digits only, no leading zeros


def test_zip_city_state_and_country_follow_metas_rules(engine):
    """zp: lowercase, no spaces or dash, the first 5 digits for the US; ct: lowercase without spaces or
    punctuation; st and country: 2-letter codes in lowercase (PAGE). Meta's zip example hash was not in the
    stored copy of the page; the normalised forms are its rules, hashed with SHA-256."""
    address = {"city": "New York", "state": "NY", "postalCode": "94035-1234", "country": "US"}
    user = server_event(engine, track(traits={"address": address}))["user_data"]
    assert (user["zp"], user["ct"], user["st"], user["country"]) == (sha("94035"), sha("newyork"), sha("ny"), sha("us"))
    uk = server_event(engine, track(traits={"address": {"postalCode": "M1 1UE", "country": "GB", "city": "St. Helens"}}))
    assert (uk["user_data"]["zp"], uk["user_data"]["ct"]) == (sha("m11ue"), sha("sthelens"))
    # a full state or country name is left out rather than hashed in a form Meta cannot match
    named = server_event(engine, track(traits={"address": {"state": "California", "country": "United States"}}))
    assert "st" not in named["user_data"] and "country" not in named["user_data"]


def test_external_id_is_the_user_id_hashed_and_ip_and_user_agent_stay_in_clear(engine):
    user = server_event(engine, track(context={"ip": "203.0.113.9", "userAgent": "UA/1.0"}))["user_data"]
    assert user["external_id"] == sha("u-42")
    assert (user["client_ip_address"], user["client_user_agent"]) == ("203.0.113.9", "UA/1.0")


def test_no_clear_text_contact_details_leave_in_any_request_of_any_fixture(engine):
    """Every user_data value Meta says is hashed is 64 hex characters, in every request of every fixture,
    under every settings variant; and no fixture's email, phone or name appears anywhere in a request."""
    variants = [{}, {"action_source": "website", "default_phone_country": "US"}, {"action_source": "physical_store"}]
    checked = 0
    for path in EVENT_FILES:
        event = load_event(path)
        clear = _contact_details(event)
        for variant in variants:
            for request in render(engine, event, **variant).requests:
                text = json.dumps(request.body, ensure_ascii=False)
                for sent in request.body["data"]:
                    for key in HASHED:
                        if key in sent["user_data"]:
                            assert re.fullmatch(r"[0-9a-f]{64}", sent["user_data"][key]), (path.name, key)
                            checked += 1
                for value in clear:
                    assert value not in text, f"{path.name}: {value!r} left in clear"
    assert checked > 20


def _contact_details(event: dict) -> set[str]:
    found = set()
    people = (event.get("traits") or {}, (event.get("context") or {}).get("traits") or {})
    for source, keys in [*((t, ("email", "phone", "firstName", "first_name", "lastName", "last_name", "name")) for t in people),
                         (event.get("properties") or {}, ("email", "phone"))]:  # a property "name" is a product's
        for key in keys:
            if isinstance(source.get(key), str) and len(source[key]) > 3:
                found.add(source[key])
    return found


def test_contact_properties_of_a_custom_event_are_not_sent_as_custom_data(engine):
    sent = server_event(engine, track(properties={"email": "a@b.example", "plan": "pro", "phone": "+15555550100"}))
    assert sent["custom_data"] == {"plan": "pro"}
    assert sent["user_data"]["em"] == sha("a@b.example")


def test_event_id_is_the_message_id_and_event_time_unix_seconds(engine):
    sent = server_event(engine, track())
    assert (sent["event_id"], sent["event_time"], sent["event_name"]) == ("ajs-next-0001", 1715678400, "Signed Up")


@pytest.mark.parametrize(("segment", "meta"), [("Order Completed", "Purchase"), ("Product Added", "AddToCart"),
                                               ("Checkout Started", "InitiateCheckout"), ("Product Viewed", "ViewContent")])
def test_ecommerce_events_become_metas_standard_events(engine, segment, meta):
    products = [{"product_id": "p1", "price": 10.0, "quantity": 2}, {"sku": "s2", "price": 5.5}]
    properties = {"order_id": "o1", "revenue": 25.5, "currency": "eur", "products": products,
                  "product_id": "p1", "price": 10.0, "quantity": 2}
    sent = server_event(engine, track(segment, properties=properties))
    assert sent["event_name"] == meta
    data = sent["custom_data"]
    assert data["currency"] == "EUR" and data["content_type"] == "product"
    if meta in ("Purchase", "InitiateCheckout"):
        assert data["value"] == 25.5
        assert data["contents"] == [{"id": "p1", "quantity": 2, "item_price": 10}, {"id": "s2", "item_price": 5.5}]
        assert data["content_ids"] == ["p1", "s2"]
    else:
        assert data["value"] == 20 and data["contents"] == [{"id": "p1", "quantity": 2, "item_price": 10}]
    if meta == "Purchase":
        assert data["order_id"] == "o1"
    if meta == "InitiateCheckout":
        assert data["num_items"] == 3


def test_a_purchase_without_value_or_currency_is_rejected_with_the_reason(engine):
    outcome = render(engine, track("Order Completed", properties={"order_id": "o1", "revenue": 10}))
    assert outcome.status == "rejected"
    assert "'currency' is required" in outcome.errors[0].message
    assert server_event(engine, track("Order Completed", properties={"revenue": 10}), default_currency="USD")["custom_data"]["currency"] == "USD"
    no_value = render(engine, track("Order Completed", properties={"currency": "EUR"}))
    assert "'value' is required" in no_value.errors[0].message


def test_a_website_event_needs_its_url_and_user_agent(engine):
    page = {"type": "page", "messageId": "m1", "userId": "u1", "timestamp": "2024-05-14T09:20:00Z",
            "context": {"page": {"url": "https://shop.example/?fbclid=AbC123&x=1"}}}
    outcome = render(engine, page)
    assert outcome.status == "rejected" and "client_user_agent" in outcome.errors[0].message
    page["context"]["userAgent"] = "UA/1.0"
    sent = server_event(engine, page)
    assert (sent["event_name"], sent["action_source"], sent["event_source_url"]) == ("PageView", "website", page["context"]["page"]["url"])
    # fbc made from the landing page's fbclid: fb.1.<ms>.<fbclid>
    assert sent["user_data"]["fbc"] == "fb.1.1715678400000.AbC123"
    # without a page URL the event is not a website event, unless the setting says so
    assert server_event(engine, track())["action_source"] == "other"
    assert render(engine, track(), action_source="website").status == "rejected"


def test_fbp_and_fbc_from_the_context_are_sent_as_they_are(engine):
    sent = server_event(engine, track(context={"fbp": "fb.1.1558571054389.1098115397", "fbc": "fb.1.1554763741205.AbCdEf"}))
    assert (sent["user_data"]["fbp"], sent["user_data"]["fbc"]) == ("fb.1.1558571054389.1098115397", "fb.1.1554763741205.AbCdEf")


def test_batches_hold_at_most_1000_events_and_carry_the_test_code(engine):
    route = engine.route("meta-conversions", {**SETTINGS, "test_event_code": "TEST123"}, environ={})
    outcomes = [engine.render({**track(), "messageId": f"m{i}"}, route) for i in range(2001)]
    batches = engine.batch(route, outcomes)
    assert [len(r.body["data"]) for r in batches] == [1000, 1000, 1]
    assert all(r.body["test_event_code"] == "TEST123" for r in batches)
    single = render(engine, track(), test_event_code="TEST123").requests[0]
    assert single.body["test_event_code"] == "TEST123" and len(single.body["data"]) == 1


def test_the_pixel_version_and_token_make_the_url(engine):
    request = render(engine, track(), api_version="v23.0").requests[0]
    assert request.url == "https://graph.facebook.com/v23.0/100000000000001/events"
    assert request.to_dict(show_secrets=True)["query"] == {"access_token": SETTINGS["access_token"]}
    assert SETTINGS["access_token"] not in repr(request) + json.dumps(request.to_dict())
    assert render(engine, track(), base_url="http://127.0.0.1:9").requests[0].url.startswith("http://127.0.0.1:9/v21.0/")


def test_identify_and_group_are_skipped_with_the_reason(engine):
    outcome = render(engine, {"type": "identify", "userId": "u1", "messageId": "m1", "traits": {"email": "a@b.c"}})
    assert outcome.status == "skipped" and "identify" in outcome.reason
