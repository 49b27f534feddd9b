"""Mixpanel's key rules, through the shipped mapping: identifiers, deduplication, required fields,
identify and group, batching limits and residency hosts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "mixpanel.json").read_text(encoding="utf-8"))
TRACK = {"type": "track", "event": "Signed Up", "userId": "u1", "anonymousId": "a1", "messageId": "ajs-next-" + "0" * 32,
         "timestamp": "2024-05-14T09:20:00.000Z", "properties": {"plan": "pro"}}


def render(engine, event, **settings):
    return engine.render(event, engine.route("mixpanel", {**SETTINGS, **settings}, environ={}))


def test_the_distinct_id_is_the_user_id_else_the_anonymous_id_and_both_ids_travel(engine):
    props = render(engine, TRACK).requests[0].body[0]["properties"]
    assert (props["distinct_id"], props["$user_id"], props["$device_id"]) == ("u1", "u1", "a1")
    anonymous = {k: v for k, v in TRACK.items() if k != "userId"}
    props = render(engine, anonymous).requests[0].body[0]["properties"]
    assert props["distinct_id"] == "a1" and "$user_id" not in props


def test_insert_id_is_a_uuid_derived_from_the_message_id_so_a_redelivery_is_deduplicated(engine):
    first = render(engine, TRACK).requests[0].body[0]["properties"]["$insert_id"]
    again = render(engine, dict(TRACK)).requests[0].body[0]["properties"]["$insert_id"]
    other = render(engine, {**TRACK, "messageId": "m2"}).requests[0].body[0]["properties"]["$insert_id"]
    assert first == again != other
    assert len(first) == 36 and set(first) <= set("0123456789abcdef-")  # Mixpanel: <= 36 bytes, [A-Za-z0-9-]


def test_time_is_milliseconds_and_a_missing_one_is_rejected_with_the_reason(engine):
    assert render(engine, TRACK).requests[0].body[0]["properties"]["time"] == 1715678400000
    outcome = render(engine, {k: v for k, v in TRACK.items() if k != "timestamp"})
    assert outcome.status == "rejected"
    assert "'time' is required on every event" in outcome.errors[0].message


def test_import_authenticates_with_the_token_or_a_service_account_with_its_project(engine):
    request = render(engine, TRACK).requests[0]
    assert request.url == "https://api.mixpanel.com/import" and request.query == {"strict": "1"}
    assert request.to_dict(show_secrets=True)["headers"]["Authorization"].startswith("Basic ")
    service = render(engine, TRACK, service_account_username="sa", service_account_secret="s3", project_id="42").requests[0]
    assert service.query == {"strict": "1", "project_id": "42"}
    assert service.headers["Authorization"] == "Basic c2E6czM="  # sa:s3


def test_a_service_account_without_its_secret_and_project_is_a_settings_error(engine):
    from engine.problems import ConfigError
    with pytest.raises(ConfigError, match="service_account"):
        engine.route("mixpanel", {**SETTINGS, "service_account_username": "sa"}, environ={})


@pytest.mark.parametrize(("region", "host"), [("api", "api.mixpanel.com"), ("api-eu", "api-eu.mixpanel.com"),
                                              ("api-in", "api-in.mixpanel.com")])
def test_the_residency_host(engine, region, host):
    assert render(engine, TRACK, region=region).requests[0].url == f"https://{host}/import"


def test_base_url_overrides_the_host(engine):
    assert render(engine, TRACK, base_url="http://127.0.0.1:9").requests[0].url == "http://127.0.0.1:9/import"


def test_batches_hold_at_most_2000_events(engine):
    route = engine.route("mixpanel", SETTINGS, environ={})
    outcomes = [engine.render({**TRACK, "messageId": f"m{i}"}, route) for i in range(4001)]
    batches = engine.batch(route, outcomes)
    assert [len(r.body) for r in batches] == [2000, 2000, 1]
    assert all(r.url.endswith("/import") for r in batches)


def test_identify_sets_the_profile_with_mixpanels_reserved_properties(engine):
    event = {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m1",
             "traits": {"email": "a@b.c", "firstName": "Ann", "plan": "pro"}, "context": {"ip": "203.0.113.9"}}
    (request,) = render(engine, event).requests
    assert request.url == "https://api.mixpanel.com/engage" and request.query == {"ip": "0"}
    (update,) = request.to_dict(show_secrets=True)["body"]
    assert update["$token"] == SETTINGS["project_token"] and update["$distinct_id"] == "u1"
    assert update["$set"] == {"plan": "pro", "$email": "a@b.c", "$first_name": "Ann"} and update["$ip"] == "203.0.113.9"


def test_identify_on_original_id_merge_first_links_the_anonymous_id(engine):
    event = {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m1", "traits": {"plan": "pro"}}
    outcome = render(engine, event, id_merge="original")
    request, profile = outcome.requests  # offline: every step sure to run, whatever the answers
    assert request.url.endswith("/import") and profile.url.endswith("/engage")
    (identify,) = request.body
    assert identify["event"] == "$identify"
    assert (identify["properties"]["$identified_id"], identify["properties"]["$anon_id"]) == ("u1", "a1")
    assert [step["step"] for step in outcome.steps] == ["identify_event", "profile"]


def test_group_sets_the_group_profile_under_the_group_key(engine):
    event = {"type": "group", "userId": "u1", "groupId": "acme", "messageId": "m1", "traits": {"name": "Acme"}}
    request, membership = render(engine, event, group_key="company").requests   # both steps always run
    (update,) = request.body
    assert request.url.endswith("/groups") and membership.url.endswith("/engage")
    assert (update["$group_key"], update["$group_id"], update["$set"]) == ("company", "acme", {"name": "Acme"})


def test_order_completed_keeps_its_products_for_mixpanels_revenue_reports(engine):
    event = json.loads((ROOT / "fixtures" / "events" / "track-checkout-started.json").read_text(encoding="utf-8"))
    props = render(engine, {**event, "event": "Order Completed"}).requests[0].body[0]["properties"]
    assert len(props["products"]) == 3 and props["revenue"] == 41.0 and props["currency"] == "EUR"


def test_the_user_agent_gives_browser_os_and_device(engine):
    event = json.loads((ROOT / "fixtures" / "events" / "track-product-added-mobile.json").read_text(encoding="utf-8"))
    props = render(engine, event).requests[0].body[0]["properties"]
    assert (props["$browser"], props["$os"], props["$device"]) == ("Mobile Safari", "iOS", "iPhone")
