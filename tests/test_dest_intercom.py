"""Intercom's key rules, through the shipped mapping: contacts found by external_id (read directly) else by email
(the search, decided by its total_count), then updated or created, a 409 on create leading to the update; data
events by user_id, or by the id of the one contact the email search finds (none or several is final with the
reason); companies upserted by company_id and the contact attached. Every request of every branch meets Intercom's
own OpenAPI description and the documented rules, with the one named exception (metadata value types)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from contract_harness import Violation
from contracts import DESTINATIONS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_vendor import Scripted

from engine.render.request import Request

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "intercom.json").read_text(encoding="utf-8"))
IDENTIFY = {"type": "identify", "userId": "u1", "messageId": "m1", "timestamp": "2024-05-14T09:20:00Z",
            "traits": {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace", "plan": "pro",
                       "phone": "+44 20 7946 0958", "createdAt": "2024-01-02T03:04:05Z"}}
BY_EMAIL = {k: v for k, v in IDENTIFY.items() if k != "userId"} | {"anonymousId": "a1"}
TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m2", "timestamp": "2024-05-14T09:20:00.900Z",
         "context": {"traits": {"email": "ada@example.com"}},
         "properties": {"order_id": "o1", "revenue": 19.99, "currency": "EUR", "gift": True, "email": "ada@example.com",
                        "shipping": {"method": "post", "days": 2}, "products": [{"sku": "s1"}]}}
GROUP = {"type": "group", "groupId": "acme", "userId": "u1", "messageId": "m3", "timestamp": "2024-05-14T09:20:00Z",
         "traits": {"name": "Acme", "employees": "120", "plan": "enterprise", "createdAt": "2020-01-01T00:00:00Z"}}
CONTACT = {"type": "contact", "id": "c-1", "external_id": "u1", "email": "ada@example.com"}
FOUND = {"type": "list", "total_count": 1, "data": [CONTACT]}
NONE = {"type": "list", "total_count": 0, "data": []}
TWO = {"type": "list", "total_count": 2, "data": [CONTACT, {**CONTACT, "id": "c-2"}]}


def run(engine, event, answers: dict, **settings):
    vendor = Scripted(answers)
    outcome = engine.render(event, engine.route("intercom", {**SETTINGS, **settings}, environ={}), responses=vendor)
    assert outcome.requests == vendor.asked or not vendor.asked   # a single request is shown, not sent
    for request in outcome.requests:
        meets_the_contract(request)
    return outcome


def meets_the_contract(request: Request) -> None:
    left, _ = DESTINATIONS["intercom"].violations(request)
    assert not left, f"{request.method} {request.url}\n" + "\n".join(map(str, left))


def sent(outcome) -> list[tuple[str, str]]:
    return [(r.method, r.url.split("intercom.io", 1)[1]) for r in outcome.requests]


def test_identify_by_user_id_reads_the_contact_and_updates_it(engine):
    outcome = run(engine, IDENTIFY, {("GET", "/contacts/find_by_external_id/"): (200, CONTACT)})
    assert sent(outcome) == [("GET", "/contacts/find_by_external_id/u1"), ("PUT", "/contacts/c-1")]
    update = outcome.requests[1]
    assert update.headers["Intercom-Version"] == "2.14" and update.headers["Authorization"] == "Bearer test-intercom-token-0001"
    # Intercom's standard fields only: plan is not one, and Intercom writes only custom attributes it defines
    assert update.body == {"external_id": "u1", "email": "ada@example.com", "phone": "+442079460958", "name": "Ada Lovelace",
                           "signed_up_at": 1704164645, "last_seen_at": 1715678400}


def test_a_user_intercom_does_not_have_is_created(engine):
    outcome = run(engine, IDENTIFY, {("GET", "/contacts/find_by_external_id/"): (404, {"type": "error.list"})})
    assert sent(outcome) == [("GET", "/contacts/find_by_external_id/u1"), ("POST", "/contacts")]
    assert outcome.requests[1].body["role"] == "user" and outcome.requests[1].body["external_id"] == "u1"
    assert outcome.status == "send" and outcome.reason is None


def test_a_409_on_create_finds_the_contact_again_and_updates_it(engine):
    outcome = run(engine, IDENTIFY, {("GET", "/contacts/find_by_external_id/"): [(404, {}), (200, CONTACT)],
                                     ("POST", "/contacts"): (409, {"errors": [{"code": "conflict"}]})})
    assert sent(outcome) == [("GET", "/contacts/find_by_external_id/u1"), ("POST", "/contacts"),
                             ("GET", "/contacts/find_by_external_id/u1"), ("PUT", "/contacts/c-1")]
    assert outcome.reason is None


def test_a_409_for_another_contacts_email_is_final_with_the_reason(engine):
    outcome = run(engine, IDENTIFY, {("GET", "/contacts/find_by_external_id/"): (404, {}), ("POST", "/contacts"): (409, {})})
    assert outcome.steps[-1]["then"] == "fail" and "another contact has the email" in outcome.steps[-1]["error"]


@pytest.mark.parametrize(("found", "then"), [(NONE, [("POST", "/contacts")]), (FOUND, [("PUT", "/contacts/c-1")])])
def test_without_a_user_id_the_email_search_decides_create_or_update(engine, found, then):
    outcome = run(engine, BY_EMAIL, {("POST", "/contacts/search"): (200, found)})
    assert outcome.action == "identify"
    assert sent(outcome) == [("POST", "/contacts/search"), *then]
    assert outcome.requests[0].body == {"query": {"field": "email", "operator": "=", "value": "ada@example.com"}}
    assert "external_id" not in outcome.requests[-1].body


def test_several_contacts_with_the_email_are_final_with_the_reason(engine):
    outcome = run(engine, BY_EMAIL, {("POST", "/contacts/search"): (200, TWO)})
    assert sent(outcome) == [("POST", "/contacts/search")]
    assert outcome.steps[0]["error"].startswith("2 Intercom contacts have the email ada@example.com")


def test_a_409_after_an_empty_search_searches_again(engine):
    outcome = run(engine, BY_EMAIL, {("POST", "/contacts/search"): [(200, NONE), (200, FOUND)], ("POST", "/contacts"): (409, {})})
    assert sent(outcome) == [("POST", "/contacts/search"), ("POST", "/contacts"), ("POST", "/contacts/search"), ("PUT", "/contacts/c-1")]
    lagging = run(engine, BY_EMAIL, {("POST", "/contacts/search"): (200, NONE), ("POST", "/contacts"): (409, {})})
    # Intercom's search lags behind a new contact by minutes: tried again later, not a dead letter
    assert lagging.steps[-1]["then"] == "retry" and "tried again later" in lagging.steps[-1]["error"]


def test_track_is_a_data_event_by_user_id_with_flat_metadata_and_the_revenue_as_money(engine):
    outcome = run(engine, TRACK, {})
    (event,) = outcome.requests
    assert (event.method, event.url) == ("POST", "https://api.intercom.io/events")
    assert event.body == {"event_name": "Order Completed", "created_at": 1715678400, "user_id": "u1",
                          "metadata": {"order_id": "o1", "currency": "EUR", "gift": "true", "shipping_method": "post", "shipping_days": 2,
                                       "price": {"amount": 1999, "currency": "EUR"}}}


@pytest.mark.parametrize(("found", "outcome_of"), [(FOUND, "continue"), (NONE, "fail"), (TWO, "fail")])
def test_without_a_user_id_the_event_goes_to_the_one_contact_the_email_finds(engine, found, outcome_of):
    anonymous = {k: v for k, v in TRACK.items() if k != "userId"} | {"anonymousId": "a1"}
    outcome = run(engine, anonymous, {("POST", "/contacts/search"): (200, found)})
    assert outcome.action == "track" and outcome.steps[0]["then"] == outcome_of
    if found is FOUND:
        assert outcome.requests[1].body["id"] == "c-1" and "user_id" not in outcome.requests[1].body
    else:
        assert len(outcome.requests) == 1
    nobody = {k: v for k, v in anonymous.items() if k != "context"} | {"properties": {}}
    rejected = engine.render(nobody, engine.route("intercom", SETTINGS, environ={}))
    assert rejected.status == "rejected" and "a userId, or the user's email" in rejected.errors[0].message


def test_group_upserts_the_company_and_attaches_the_user(engine):
    outcome = run(engine, GROUP, {("POST", "/companies"): (200, {"type": "company", "id": "co-9", "company_id": "acme"}),
                                  ("GET", "/contacts/find_by_external_id/"): (200, CONTACT)})
    assert sent(outcome) == [("POST", "/companies"), ("GET", "/contacts/find_by_external_id/u1"), ("POST", "/contacts/c-1/companies")]
    assert outcome.requests[0].body == {"company_id": "acme", "name": "Acme", "plan": "enterprise", "size": 120,
                                        "remote_created_at": 1577836800}
    assert outcome.requests[2].body == {"id": "co-9"}
    unknown = run(engine, GROUP, {("POST", "/companies"): (200, {"id": "co-9"}), ("GET", "/contacts/find_by_external_id/"): (404, {})})
    assert "the company is saved but not attached" in unknown.steps[-1]["error"]


def test_group_without_a_user_id_attaches_the_email_searchs_contact_or_saves_the_company_alone(engine):
    by_email = {k: v for k, v in GROUP.items() if k != "userId"} | {"anonymousId": "a1", "context": {"traits": {"email": "ada@example.com"}}}
    outcome = run(engine, by_email, {("POST", "/companies"): (200, {"id": "co-9"}), ("POST", "/contacts/search"): (200, FOUND)})
    assert outcome.action == "group_by_email"
    assert sent(outcome) == [("POST", "/companies"), ("POST", "/contacts/search"), ("POST", "/contacts/c-1/companies")]
    alone = run(engine, {**by_email, "context": {}}, {})
    assert alone.action == "group" and sent(alone) == [("POST", "/companies")]


def test_the_eu_and_au_hosts(engine):
    assert run(engine, TRACK, {}, region="eu").requests[0].url == "https://api.eu.intercom.io/events"
    assert run(engine, TRACK, {}, region="au").requests[0].url == "https://api.au.intercom.io/events"


def test_the_metadata_exception_excuses_value_types_only_and_the_rules_still_check_them(engine):
    (request,) = run(engine, TRACK, {}).requests
    contract = DESTINATIONS["intercom"]
    left, excused = contract.violations(request)
    assert not left and {e.name for _, e in excused} == {"intercom-metadata-types"}
    (exception,) = contract.exceptions
    assert exception.excuses(Violation("intercom openapi", "body.metadata.total", "type", "57.5 is not of type 'string'"))
    for other in (Violation("intercom openapi", "body.created_at", "type", "'1' is not of type 'string'"),
                  Violation("intercom openapi", "body.metadata.price.amount", "type", "1 is not of type 'string'"),
                  Violation("intercom openapi", "body.metadata", "type", "[] is not of type 'string'"),
                  Violation("intercom rules", "body.metadata.total", "type", "x is not of type 'string'")):
        assert not exception.excuses(other), other
    for bad in ({"deep": {"a": 1}}, {"flag": False}, {"price": {"amount": 12.5, "currency": "EUR"}}, {"list": [1]}):
        broken = dataclasses.replace(request, body={**request.body, "metadata": bad})
        assert contract.violations(broken)[0], f"{bad} must break Intercom's documented metadata types"
    in_millis = dataclasses.replace(request, body={**request.body, "created_at": 1715678400900})
    assert ("request.body.created_at", "maximum") in {(v.where, v.rule) for v in contract.violations(in_millis)[0]}


# --------------------------------------------------------------------------- any properties: valid metadata

KEYS = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False),
                    st.text(max_size=20))
PROPERTIES = st.dictionaries(KEYS, st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                              st.dictionaries(KEYS, inner, max_size=3)),
                                                max_leaves=8), max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(properties=PROPERTIES, revenue=st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False), st.integers(0, 10**5)))
def test_any_properties_become_metadata_intercom_takes_or_the_event_is_rejected_with_the_reason(engine, properties, revenue):
    event = {**TRACK, "properties": {**properties, **({"revenue": revenue} if revenue is not None else {})}}
    outcome = engine.render(event, engine.route("intercom", SETTINGS, environ={}))
    if outcome.status != "send":   # keys that clash once flattened ("a": {"b"} beside "a_b"): the event's own verdict
        assert outcome.status == "rejected" and "flatten" in outcome.errors[0].message, outcome.errors
        return
    (request,) = outcome.requests
    meets_the_contract(request)
    assert all(not isinstance(v, (bool, list)) and (not isinstance(v, dict) or "amount" in v)
               for v in request.body.get("metadata", {}).values())
