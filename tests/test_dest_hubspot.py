"""HubSpot's key rules, through the shipped mapping: contacts updated, else created, by email (a 409 on create
updates after all); HubSpot's default contact properties only; custom behavioral events named pe<HubID>_<name>
with the documented normalisation, their properties flattened and the products list left out, deduplicated by a
uuid from the messageId; companies upserted by their unique id property, associated with the user's contact.
Every request of each path, including the ones only an answer leads to, meets the rules schema."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from contracts import DESTINATIONS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_vendor import Scripted

from engine.render.request import Request

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "hubspot.json").read_text(encoding="utf-8"))
IDENTIFY = {"type": "identify", "userId": "u1", "messageId": "m1", "timestamp": "2024-05-14T09:20:00Z",
            "traits": {"email": "Ada@Example.com ", "name": "Ada King Lovelace", "title": "Countess", "plan": "pro",
                       "company": {"name": "Analytical Engines"}, "address": {"city": "London", "postalCode": "EC1A"}}}
TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m2", "timestamp": "2024-05-14T09:20:00Z",
         "context": {"traits": {"email": "ada@example.com"}},
         "properties": {"order_id": "o1", "revenue": 12.5, "paid": True, "shipping": {"method": "post", "days": 2},
                        "products": [{"sku": "s1"}]}}
GROUP = {"type": "group", "groupId": 42, "userId": "u1", "messageId": "m3", "timestamp": "2024-05-14T09:20:00Z",
         "context": {"traits": {"email": "ada@example.com"}},
         "traits": {"name": "Acme", "employees": "120", "website": "https://acme.example", "industry": "Manufacturing"}}


def route(engine, **settings):
    return engine.route("hubspot", {**SETTINGS, **settings}, environ={})


def run(engine, event, answers: dict, **settings):
    vendor = Scripted(answers)
    outcome = engine.render(event, route(engine, **settings), responses=vendor)
    assert outcome.requests == vendor.asked or not vendor.asked   # a single request is shown, not sent
    return outcome


def meets_the_rules(request: Request) -> None:
    left, _ = DESTINATIONS["hubspot"].violations(request)
    assert not left, "\n".join(map(str, left))


def test_identify_updates_the_contact_by_email(engine):
    outcome = run(engine, IDENTIFY, {})
    (update,) = outcome.requests
    assert (update.method, update.url, update.query) == (
        "PATCH", "https://api.hubapi.com/crm/v3/objects/contacts/Ada%40Example.com", {"idProperty": "email"})
    assert update.headers["Authorization"] == "Bearer pat-na1-test-hubspot-token-0001"
    # HubSpot's default contact properties only: plan is not one, and HubSpot refuses properties it does not define
    assert update.body == {"properties": {"email": "Ada@Example.com", "firstname": "Ada", "lastname": "King Lovelace",
                                          "company": "Analytical Engines", "jobtitle": "Countess", "city": "London",
                                          "zip": "EC1A"}}
    meets_the_rules(update)


def test_identify_creates_the_contact_hubspot_does_not_have(engine):
    outcome = run(engine, IDENTIFY, {("PATCH", "/crm/v3/objects/contacts/"): (404, {"category": "OBJECT_NOT_FOUND"})})
    update, create = outcome.requests
    assert (create.method, create.url, create.body) == ("POST", "https://api.hubapi.com/crm/v3/objects/contacts", update.body)
    assert [s["then"] for s in outcome.steps] == ["run create", "continue"]
    meets_the_rules(create)


def test_a_409_on_create_updates_the_contact_after_all(engine):
    outcome = run(engine, IDENTIFY, {("PATCH", "/crm/v3/objects/contacts/"): [(404, {}), (200, {"id": "7"})],
                                     ("POST", "/crm/v3/objects/contacts"): (409, {"message": "Contact already exists. Existing ID: 7"})})
    assert [(r.method, r.url.rsplit("/", 1)[1]) for r in outcome.requests] == [
        ("PATCH", "Ada%40Example.com"), ("POST", "contacts"), ("PATCH", "Ada%40Example.com")]
    assert outcome.status == "send" and outcome.reason is None


def test_identify_needs_an_email(engine):
    outcome = engine.render({**IDENTIFY, "traits": {"name": "Ada"}}, route(engine))
    assert outcome.status == "rejected" and "an email is required" in outcome.errors[0].message


@pytest.mark.parametrize(("name", "internal"), [("Order Completed", "order_completed"), ("Signed Up!", "signed_up_"),
                                                ("  checkout-step 2 ", "checkout_step_2"), ("Commande passée", "commande_pass_e")])
def test_track_is_an_event_occurrence_named_pe_hubid_and_the_normalised_name(engine, name, internal):
    (request,) = run(engine, {**TRACK, "event": name}, {}).requests
    assert request.body["eventName"] == f"pe4471001_{internal}"
    meets_the_rules(request)


def test_track_properties_are_flat_without_products_and_the_uuid_dedupes(engine):
    (request,) = run(engine, TRACK, {}).requests
    assert request.url == "https://api.hubapi.com/events/v3/send"
    body = request.body
    assert body["properties"] == {"order_id": "o1", "revenue": 12.5, "paid": True, "shipping_method": "post", "shipping_days": 2}
    assert (body["email"], body["occurredAt"]) == ("ada@example.com", "2024-05-14T09:20:00.000Z")
    again = run(engine, TRACK, {}).requests[0].body["uuid"]
    assert body["uuid"] == again and len(again) == 36      # a redelivery carries the same uuid
    assert run(engine, {**TRACK, "messageId": "m9"}, {}).requests[0].body["uuid"] != again
    bare = run(engine, {**TRACK, "properties": {"products": []}}, {}).requests[0]
    assert bare.body["properties"] == {}                   # required by the endpoint, even empty
    meets_the_rules(bare)


def test_track_needs_the_users_email(engine):
    anonymous = {k: v for k, v in TRACK.items() if k not in ("userId", "context")} | {"anonymousId": "a1"}
    outcome = engine.render(anonymous, route(engine))
    assert outcome.status == "rejected" and "the user's email" in outcome.errors[0].message
    with_email = {**anonymous, "properties": {"email": "bo@example.com"}}
    assert engine.render(with_email, route(engine)).requests[0].body["email"] == "bo@example.com"


def test_group_upserts_the_company_and_associates_the_contact(engine):
    outcome = run(engine, GROUP, {("POST", "/crm/v3/objects/companies/batch/upsert"): (200, {"status": "COMPLETE", "results": [{"id": "901"}]}),
                                  ("GET", "/crm/v3/objects/contacts/"): (200, {"id": "77", "properties": {}})})
    upsert, contact, associate = outcome.requests
    assert upsert.body == {"inputs": [{"idProperty": "segment_group_id", "id": "42", "properties": {
        "segment_group_id": "42", "name": "Acme", "website": "https://acme.example", "numberofemployees": 120}}]}
    assert (contact.method, contact.url, contact.query) == (
        "GET", "https://api.hubapi.com/crm/v3/objects/contacts/ada%40example.com", {"idProperty": "email"})
    assert (associate.method, associate.url, associate.body) == (
        "PUT", "https://api.hubapi.com/crm/v4/objects/companies/901/associations/default/contacts/77", None)
    for request in outcome.requests:
        meets_the_rules(request)


def test_a_group_for_a_contact_hubspot_does_not_have_is_final_with_the_reason(engine):
    outcome = run(engine, GROUP, {("POST", "/crm/v3/objects/companies/batch/upsert"): (200, {"results": [{"id": "901"}]}),
                                  ("GET", "/crm/v3/objects/contacts/"): (404, {})})
    assert outcome.steps[-1]["then"] == "fail"
    assert "no contact with the email ada@example.com" in outcome.steps[-1]["error"]


def test_a_group_without_the_users_email_upserts_the_company_alone(engine):
    alone = {**GROUP, "context": {}}
    outcome = run(engine, alone, {}, company_id_property="crm_group_key")
    (upsert,) = outcome.requests
    assert outcome.action == "company"
    assert upsert.body["inputs"][0]["idProperty"] == "crm_group_key"
    assert upsert.body["inputs"][0]["properties"]["crm_group_key"] == "42"


def test_a_company_hubspot_refuses_in_a_207_is_final_with_its_message(engine):
    refused = {"status": "COMPLETE", "results": [], "errors": [{"message": "Property values were not valid", "status": "error"}]}
    outcome = run(engine, {**GROUP, "context": {}}, {("POST", "/crm/v3/objects/companies/batch/upsert"): (207, refused)})
    assert outcome.steps[0]["then"] == "fail"
    assert outcome.steps[0]["error"] == "HubSpot did not upsert the company: Property values were not valid"


def test_the_rules_schema_bites(engine):
    (request,) = run(engine, TRACK, {}).requests
    rules = DESTINATIONS["hubspot"]
    for change, where, rule in [
        (lambda b: b.update(eventName="order_completed"), "request.body.eventName", "pattern"),
        (lambda b: b["properties"].update(OrderId="o1"), "request.body.properties", "pattern"),
        (lambda b: b["properties"].update(note="x" * 51), "request.body.properties.note", "maxLength"),
        (lambda b: b.pop("email"), "request.body.email", "required"),
    ]:
        body = json.loads(json.dumps(request.body))
        change(body)
        found = {(v.where, v.rule) for v in rules.violations(dataclasses.replace(request, body=body))[0]}
        assert (where, rule) in found or any(w.startswith(where) for w, _ in found), found
    long_url = json.loads(json.dumps(request.body))
    long_url["properties"]["page_url"] = "https://x.example/" + "a" * 150
    assert rules.violations(dataclasses.replace(request, body=long_url))[0] == []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=1, max_size=40).filter(lambda text: text.strip()))
def test_any_event_name_becomes_an_internal_name_of_the_characters_hubspot_allows(engine, name):
    (request,) = run(engine, {**TRACK, "event": name}, {}).requests
    internal = request.body["eventName"].removeprefix("pe4471001_")
    assert internal and set(internal) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")
    assert len(internal) == len(name.strip().lower())   # one character for each, as Segment's normalisation does
