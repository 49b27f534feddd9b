"""Every request of every fixture event, for every destination, meets its vendor's contract.

The same discovery as tests/test_snapshots.py: destinations from mappings/destinations/, events from
fixtures/events/, settings from fixtures/settings/ (plus each contract's settings variants). Multi-step
actions run every step against a vendor that answers 200, so each of their requests is checked; the
batch requests of each destination are checked too.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
from contract_harness import Sent, Violation
from contracts import DESTINATIONS, INTERCOM, POSTHOG, SHIPPED_BEFORE_CONTRACTS
from test_snapshots import EVENT_FILES, SLUGS, fixture_settings, load_event

from engine import Engine
from engine.deliver.http import Response
from engine.render.request import Request


class Accepting:
    """A vendor that answers 200 to everything, so every step of a multi-step action is rendered."""

    def send(self, request: Request) -> Response:
        return Response(200, {})


def routes_of(engine: Engine, slug: str) -> list:
    base = fixture_settings(engine, slug)
    contract = DESTINATIONS.get(slug)
    variants = contract.variants if contract else []
    return [engine.route(slug, {**base, **variant}, environ={}) for variant in [{}, *variants]]


def requests_of(engine: Engine, route, event: dict) -> list[Request]:
    return engine.render(event, route, responses=Accepting()).requests


def report(violations: list[Violation]) -> str:
    return "\n".join(str(v) for v in violations)


def test_every_destination_has_a_contract():
    missing = sorted(set(SLUGS) - set(DESTINATIONS) - SHIPPED_BEFORE_CONTRACTS)
    assert not missing, f"no contract in tests/contracts.py for {missing}: add the vendor's own, or a rules schema"
    assert not set(DESTINATIONS) - set(SLUGS), "tests/contracts.py names a destination that is not shipped"


@pytest.mark.parametrize("event_file", EVENT_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("slug", sorted(DESTINATIONS))
def test_every_rendered_request_meets_the_contract(engine, slug, event_file):
    contract = DESTINATIONS[slug]
    for route in routes_of(engine, slug):
        for request in requests_of(engine, route, load_event(event_file)):
            left, _ = contract.violations(request)
            assert not left, f"{slug} {request.method} {request.url}:\n{report(left)}"


@pytest.mark.parametrize("slug", sorted(DESTINATIONS))
def test_every_batch_request_meets_the_contract(engine, slug):
    contract = DESTINATIONS[slug]
    for route in routes_of(engine, slug):
        outcomes = [engine.render(load_event(path), route) for path in EVENT_FILES]
        for request in engine.batch(route, outcomes):
            left, _ = contract.violations(request)
            assert not left, f"{slug} batch {request.url}:\n{report(left)}"


def excused_names(engine) -> dict[str, set[str]]:
    """Per destination, the exceptions that excused at least one violation of some fixture's request."""
    used: dict[str, set[str]] = {slug: set() for slug in DESTINATIONS}
    for slug, contract in DESTINATIONS.items():
        for route in routes_of(engine, slug):
            outcomes = [engine.render(load_event(path), route, responses=Accepting()) for path in EVENT_FILES]
            offline = [engine.render(load_event(path), route) for path in EVENT_FILES]
            requests = [r for o in outcomes for r in o.requests] + engine.batch(route, offline)
            for request in requests:
                used[slug] |= {exception.name for _, exception in contract.violations(request)[1]}
    return used


def test_each_named_exception_is_still_needed(engine):
    """An exception no fixture's request triggers any more is stale: the vendor fixed its contract, or
    our request changed. Remove it, so it cannot hide a real violation later."""
    used = excused_names(engine)
    for slug, contract in DESTINATIONS.items():
        for exception in contract.exceptions:
            assert exception.name in used[slug], f"{slug}: exception {exception.name!r} excuses nothing any more"
            assert exception.reason and exception.url.startswith("https://")


def test_an_exception_excuses_one_rule_at_one_place_only():
    (exception,) = DESTINATIONS["mixpanel"].exceptions
    hit = Violation(exception.check, exception.where, exception.rule, "required query parameter 'project_id' is missing")
    assert exception.excuses(hit)
    for other in (dataclasses.replace(hit, where="query.strict"), dataclasses.replace(hit, rule="type"),
                  dataclasses.replace(hit, check="mixpanel rules")):
        assert not exception.excuses(other)
    (ga4,) = DESTINATIONS["google-analytics-4"].exceptions
    other_dependency = Violation(ga4.check, ga4.where, ga4.rule, "'currency' is a dependency of 'value'")
    assert not ga4.excuses(other_dependency)


# --------------------------------------------------------------------------- the harness bites

def rendered(engine, slug: str, event_file: str, **settings) -> Request:
    route = engine.route(slug, {**fixture_settings(engine, slug), **settings}, environ={})
    event = json.loads((EVENT_FILES[0].parent / f"{event_file}.json").read_text(encoding="utf-8"))
    (request, *_) = requests_of(engine, route, event)
    return request


def violations(slug: str, request: Request) -> list[Violation]:
    return DESTINATIONS[slug].violations(request)[0]


def with_body(request: Request, change) -> Request:
    body = json.loads(json.dumps(request.body))
    change(body)
    return dataclasses.replace(request, body=body)


def test_a_wrong_field_type_fails(engine):
    request = rendered(engine, "mixpanel", "track-order-completed")
    assert violations("mixpanel", request) == []
    broken = with_body(request, lambda body: body[0]["properties"].update(time="1715689845123"))
    found = violations("mixpanel", broken)
    assert ("body[0].properties.time", "type") in {(v.where, v.rule) for v in found}, report(found)


def test_a_missing_required_field_fails(engine):
    request = rendered(engine, "google-analytics-4", "track-order-completed")
    assert violations("google-analytics-4", request) == []
    broken = with_body(request, lambda body: body["events"][0]["params"].pop("transaction_id"))
    found = violations("google-analytics-4", broken)
    assert ("body.events[0].params.transaction_id", "required") in {(v.where, v.rule) for v in found}, report(found)
    no_client = with_body(request, lambda body: body.pop("client_id"))
    assert ("request.body.client_id", "required") in {(v.where, v.rule) for v in violations("google-analytics-4", no_client)}


def test_a_wrong_path_fails(engine):
    request = rendered(engine, "mixpanel", "track-order-completed")
    wrong = dataclasses.replace(request, url=request.url.replace("/import", "/imports"))
    assert violations("mixpanel", wrong), "POST /imports must not pass as /import"
    slack = rendered(engine, "slack", "track-order-completed")
    assert violations("slack", slack) == []
    wrong = dataclasses.replace(slack, url=slack.url.replace("/services/", "/service/"))
    assert ("request.path", "pattern") in {(v.where, v.rule) for v in violations("slack", wrong)}


def test_a_missing_auth_header_fails(engine):
    request = rendered(engine, "mixpanel", "track-order-completed")
    unsigned = dataclasses.replace(request, headers={k: v for k, v in request.headers.items() if k != "Authorization"})
    assert ("headers.authorization", "security") in {(v.where, v.rule) for v in violations("mixpanel", unsigned)}
    ga4 = rendered(engine, "google-analytics-4", "page-browser-user-agent")
    no_secret = dataclasses.replace(ga4, query={k: v for k, v in ga4.query.items() if k != "api_secret"})
    assert ("request.query.api_secret", "required") in {(v.where, v.rule) for v in violations("google-analytics-4", no_secret)}


def test_the_ga4_code_only_checks_are_rules(engine):
    request = rendered(engine, "google-analytics-4", "track-order-completed")
    lower = with_body(request, lambda body: body["events"][0]["params"].update(currency="eur"))
    assert {"format", "pattern"} & {v.rule for v in violations("google-analytics-4", lower)}
    huge = with_body(request, lambda body: body["events"][0]["params"]["items"].extend(
        [{"item_id": f"p{i}", "item_name": "x" * 99} for i in range(1500)]))
    assert ("request.body_bytes", "maximum") in {(v.where, v.rule) for v in violations("google-analytics-4", huge)}
    long_value = with_body(request, lambda body: body["events"][0]["params"].update(note="x" * 101))
    assert ("request.body.events[0].params.note", "maxLength") in {
        (v.where, v.rule) for v in violations("google-analytics-4", long_value)}


def test_a_message_without_text_fails_slacks_rules(engine):
    request = rendered(engine, "slack", "track-order-completed")
    found = violations("slack", with_body(request, lambda body: body.pop("text")))
    assert [(v.where, v.rule) for v in found] == [("request.body.text", "required")], report(found)


# --------------------------------------------------------------------------- whole OpenAPI documents

def sent(method: str, url: str, body: dict, headers: dict) -> Request:
    return Request("test", "test", method, url, {"Content-Type": "application/json", **headers}, {}, body)


def test_whole_openapi_documents_route_and_check_requests():
    """openapi-core routes by method, server and path template (Intercom for part 2, PostHog's floor)."""
    event = {"event_name": "order-completed", "created_at": 1715689845, "user_id": "usr_1"}
    good = sent("POST", "https://api.intercom.io/events", event, {"Authorization": "Bearer t"})
    assert INTERCOM.violations(Sent.of(good)) == []
    assert INTERCOM.violations(Sent.of(dataclasses.replace(good, body={"created_at": 1})))
    assert INTERCOM.violations(Sent.of(dataclasses.replace(good, url="https://api.intercom.io/event")))
    batch = {"api_key": "phc_test", "batch": [{"event": "$pageview", "distinct_id": "u1", "properties": {}}]}
    capture = sent("POST", "https://us.i.posthog.com/batch/", batch, {})
    assert POSTHOG.violations(Sent.of(capture)) == [], POSTHOG.violations(Sent.of(capture))
