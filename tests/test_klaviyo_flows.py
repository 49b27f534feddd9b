"""Klaviyo through `eventmap enqueue` and `eventmap deliver` against a stateful stand-in on localhost
(tests/klaviyo_stand_in.py): a new person, the same person changed, a track for them, a track for someone
Klaviyo does not know, a 429 and a 409 in the middle of a flow, and a SIGKILL of deliver mid-flow. Each
ends with the stand-in holding exactly what Klaviyo would, and no dead letter but where Klaviyo says so."""
from __future__ import annotations

import time
from pathlib import Path

import flows_harness as flows
import pytest
from flows_harness import deliver, enqueue, kill_deliver_while_hanging, served, states
from klaviyo_stand_in import KlaviyoStandIn
from vendor_server import Answer

from engine.store import DEAD, DELIVERED

KEY = "pk_flowtestkey4471"


@pytest.fixture
def klaviyo():
    with served(KlaviyoStandIn(KEY)) as stand_in:
        yield stand_in


def write_config(folder: Path, url: str, lease: str = "30s", concurrency: int = 1) -> Path:
    return flows.write_config(folder, "klaviyo", f'{{api_key: "{KEY}", base_url: "{url}"}}', lease, concurrency)


def identify(n: int, user: str, email: str, **traits) -> dict:
    return {"type": "identify", "userId": user, "messageId": f"id-{n}", "timestamp": "2024-05-14T09:20:00Z",
            "traits": {"email": email, **traits}}


def track(n: int, email: str, user: str | None = None, name: str = "Order Completed", **properties) -> dict:
    event = {"type": "track", "messageId": f"tr-{n}", "event": name, "timestamp": "2024-05-14T09:30:00Z",
             "anonymousId": f"anon-{n}", "context": {"traits": {"email": email}}, "properties": properties}
    if user:
        event["userId"] = user
    return event


def test_people_and_their_events_end_as_klaviyo_holds_them(tmp_path, klaviyo):
    config = write_config(tmp_path, klaviyo.url)
    ada = "ada@example.com"

    # 1. a new person: created (201) with its fields and custom properties
    enqueue(tmp_path, config, identify(1, "u-ada", ada, name="Ada Lovelace", plan="pro"))
    deliver(config)
    assert klaviyo.profiles == {"01KLAVIYO0001": {"email": ada, "external_id": "u-ada", "first_name": "Ada",
                                                   "last_name": "Lovelace", "properties": {"plan": "pro"}}}

    # 2. the same person again with a change: updated (200), not duplicated; what was not sent stays
    enqueue(tmp_path, config, identify(2, "u-ada", ada, plan="enterprise", title="Countess"))
    deliver(config)
    assert klaviyo.profiles == {"01KLAVIYO0001": {"email": ada, "external_id": "u-ada", "first_name": "Ada",
                                                   "last_name": "Lovelace", "title": "Countess",
                                                   "properties": {"plan": "enterprise"}}}

    # 3. a track for them lands on that profile, with its value
    enqueue(tmp_path, config, track(3, ada, "u-ada", order_id="o1", revenue=42.5, currency="EUR"))
    deliver(config)
    (order,) = klaviyo.events_of(email=ada)
    assert (order["metric"], order["unique_id"], order["value"]) == ("Order Completed", "tr-3", 42.5)

    # 4. a track for someone Klaviyo does not know: Klaviyo creates the profile from the event's profile
    enqueue(tmp_path, config, track(4, "bo@example.com", name="Signed Up", plan="free"))
    deliver(config)
    assert klaviyo.profile(email="bo@example.com") == {"email": "bo@example.com", "anonymous_id": "anon-4"}
    assert [e["metric"] for e in klaviyo.events_of(email="bo@example.com")] == ["Signed Up"]
    assert len(klaviyo.profiles) == 2

    found = states(tmp_path)
    assert {m: r.state for m, r in found.items()} == {"id-1": DELIVERED, "id-2": DELIVERED, "tr-3": DELIVERED, "tr-4": DELIVERED}
    assert [status for _, _, status in klaviyo.calls] == [201, 200, 202, 202]


def test_a_429_in_the_middle_is_retried_after_retry_after_and_nothing_is_duplicated(tmp_path, klaviyo):
    config = write_config(tmp_path, klaviyo.url)
    # Klaviyo's rate limit answer: 429 with Retry-After (https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling)
    klaviyo.server.answer(Answer(429, {"errors": [{"code": "throttled", "detail": "Request was throttled."}]},
                                 headers={"Retry-After": "1"}),
                          when=lambda r: r.path == "/api/events", times=1)
    enqueue(tmp_path, config, identify(1, "u-cy", "cy@example.com", plan="pro"),
            track(2, "cy@example.com", "u-cy", order_id="o2", revenue=10), track(3, "cy@example.com", "u-cy", name="Viewed"))
    deliver(config)
    deadline = time.time() + 30
    while {r.state for r in states(tmp_path).values()} != {DELIVERED} and time.time() < deadline:
        time.sleep(0.5)
        deliver(config)
    found = states(tmp_path)
    assert {m: r.state for m, r in found.items()} == {"id-1": DELIVERED, "tr-2": DELIVERED, "tr-3": DELIVERED}
    assert 429 in [a.status for r in found.values() for a in r.history]
    assert len(klaviyo.profiles) == 1
    assert sorted(e["unique_id"] for e in klaviyo.events_of(email="cy@example.com")) == ["tr-2", "tr-3"]


def test_a_409_conflict_is_a_dead_letter_with_klaviyos_reason_and_the_rest_go_on(tmp_path, klaviyo):
    """Klaviyo answers 409 when one request's identifiers belong to two profiles: it will not merge them, and
    retrying cannot help. That event is dead with the answer summarised; the others are delivered."""
    config = write_config(tmp_path, klaviyo.url)
    enqueue(tmp_path, config, identify(1, "u-di", "di@example.com"), identify(2, "u-ed", "ed@example.com"))
    deliver(config)
    # ed's email with di's userId: two profiles, one request
    enqueue(tmp_path, config, identify(3, "u-di", "ed@example.com", plan="pro"), track(4, "di@example.com", "u-di"))
    deliver(config)
    found = states(tmp_path)
    assert {m: r.state for m, r in found.items()} == {"id-1": DELIVERED, "id-2": DELIVERED, "id-3": DEAD, "tr-4": DELIVERED}
    assert "409 is final" in found["id-3"].reason and "duplicate_profile" in found["id-3"].history[-1].error
    assert found["id-3"].attempts == 1
    assert klaviyo.profile(external_id="u-di") == {"email": "di@example.com", "external_id": "u-di", "anonymous_id": "anon-4"}
    assert len(klaviyo.profiles) == 2 and len(klaviyo.events) == 1


def test_sigkill_of_deliver_mid_flow_then_a_rerun_loses_nothing_and_counts_nothing_twice(tmp_path, klaviyo):
    people = [f"p{n}@example.com" for n in range(4)]
    config = write_config(tmp_path, klaviyo.url, lease="2s", concurrency=1)
    events = [e for n, email in enumerate(people)
              for e in (identify(n, f"u{n}", email, plan="pro"), track(n, email, f"u{n}", order_id=f"o{n}", revenue=n))]
    enqueue(tmp_path, config, *events)
    # the second event request is recorded by Klaviyo, but its answer never comes: deliver is killed waiting
    events_seen = []

    def second_event(received):
        events_seen.append(received.path)
        return events_seen.count("/api/events") == 2
    kill_deliver_while_hanging(klaviyo, config, second_event)
    assert len(klaviyo.events) == 2  # the stalled one was recorded before the kill

    time.sleep(2.1)  # the killed worker's lease runs out
    deliver(config)
    found = states(tmp_path)
    assert {r.state for r in found.values()} == {DELIVERED}, [(m, r.reason) for m, r in found.items() if r.state != DELIVERED]
    assert len(found) == 8
    # exactly one profile per person and one event per track: the redelivered event had the same unique_id
    assert sorted(p["email"] for p in klaviyo.profiles.values()) == people
    assert sorted((e["profile"], e["unique_id"]) for e in klaviyo.events) == sorted(
        (pid, f"tr-{n}") for n, email in enumerate(people) for pid, p in klaviyo.profiles.items() if p["email"] == email)
    assert [status for _, _, status in klaviyo.calls].count(202) == 5  # four tracks, the stalled one sent twice
