"""What the console reads from the store, on SQLite and PostgreSQL (``store``/``backend`` fixtures): events found
by destination, state and time; why deliveries are retrying or dead; the requests each attempt sent; the sample
of requests refused at the door; and a retried dead letter that is then delivered.

Times are a fake clock (plain floats).
"""
from __future__ import annotations

import uuid

import pytest

from engine.store import (
    DEAD,
    DELIVERED,
    QUEUED,
    REJECTED,
    RETRYING,
    SKIPPED,
    Attempt,
    EventQuery,
    Finish,
    NewDelivery,
    NewEvent,
    Replay,
    ReplayStep,
)
from engine.store import refusals as refusal_rows
from engine.store.base import OUT_OF_ORDER, SentRequest
from engine.store.migrations import migrations
from engine.store.refusals import Refusal, key_prefix

T0 = 1_700_000_000.0
HOUR, DAY = 3600.0, 86400.0


def body(message_id: str, **extra) -> dict:
    return {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": message_id, **extra}


def accept(store, message_id: str, now: float = T0, **extra) -> dict[str, int]:
    """One event for crisp and planhat (queued) and richpanel (skipped): {destination: delivery id}."""
    [accepted] = store.accept([NewEvent(body(message_id, **extra), message_id,
                                        [NewDelivery("crisp"), NewDelivery("planhat"),
                                         NewDelivery("richpanel", SKIPPED, "not subscribed")])], now)
    return {destination: delivery for delivery, destination, _ in accepted.deliveries}


def settle(store, destination: str, verdicts: dict[int, Finish], now: float = T0) -> None:
    leased = store.lease(destination, 1000, "w", now, 60)
    assert {item.id for item in leased} >= set(verdicts)
    assert store.finish(list(verdicts.values()), "w", now) == len(verdicts)
    store.release("w")


def found(store, **filters) -> list[str]:
    return [e.message_id for e in store.events(EventQuery(**filters))]


# --------------------------------------------------------------------------- events by destination, state, time

def test_events_are_found_by_destination_and_state_newest_first(store):
    ids = [accept(store, f"m{i}", event=f"n{i % 2}") for i in range(6)]
    settle(store, "crisp", {ids[i]["crisp"]: Finish(ids[i]["crisp"], state, Attempt(T0, status, None))
                            for i, (state, status) in enumerate([(DELIVERED, 200), (DEAD, 400), (DELIVERED, 200),
                                                                 (RETRYING, 500), (DELIVERED, 200)])})
    assert found(store, destination="crisp", state=DELIVERED) == ["m4", "m2", "m0"]
    assert found(store, destination="crisp", state=DEAD) == ["m1"]
    assert found(store, destination="crisp", state=QUEUED) == ["m5"]
    assert found(store, destination="planhat", state=DELIVERED) == []
    assert found(store, destination="crisp") == ["m5", "m4", "m3", "m2", "m1", "m0"]
    assert found(store, destination="nowhere") == []
    assert found(store, state=SKIPPED) == ["m5", "m4", "m3", "m2", "m1", "m0"]   # richpanel's, any destination
    assert found(store, state=RETRYING) == ["m3"]
    assert found(store, destination="crisp", state=DELIVERED, limit=2) == ["m4", "m2"]
    page = store.events(EventQuery(destination="crisp", state=DELIVERED, limit=2))
    assert found(store, destination="crisp", state=DELIVERED, before_id=page[-1].id) == ["m0"]
    # with the event's own columns: the deliveries' walk joins the event
    assert found(store, destination="crisp", state=DELIVERED, name="n0") == ["m4", "m2", "m0"]
    assert found(store, destination="crisp", state=DELIVERED, name="n1") == []
    assert found(store, destination="crisp", message_id="m3") == ["m3"]
    # each event comes with every delivery, whichever found it
    [event] = store.events(EventQuery(destination="crisp", state=DEAD))
    assert sorted(d.destination for d in event.deliveries) == ["crisp", "planhat", "richpanel"]


def test_an_event_with_deliveries_in_the_state_at_several_destinations_is_listed_once(store):
    accept(store, "m0")
    accept(store, "m1")
    assert found(store, state=QUEUED) == ["m1", "m0"]   # queued at crisp and at planhat
    assert found(store, state=QUEUED, limit=1) == ["m1"]


def test_events_are_found_by_time_range_even_when_received_out_of_id_order(store):
    for i in range(40):
        accept(store, f"m{i}", now=T0 + i * 60)
    # written after m39 but stamped 2.5 minutes before it: a writer that waited for its turn
    accept(store, "late", now=T0 + 36 * 60 + 30)
    assert OUT_OF_ORDER >= 3 * 60   # within the slack the id bounds allow
    since, until = T0 + 36 * 60, T0 + 37 * 60
    assert found(store, since=since, until=until) == ["late", "m36"]
    assert found(store, since=since, until=until, destination="crisp") == ["late", "m36"]
    assert found(store, since=since, until=until, destination="crisp", state=QUEUED) == ["late", "m36"]
    assert found(store, since=T0 + 20 * 60, until=T0 + 22 * 60) == ["m21", "m20"]
    assert found(store, since=T0 + 38 * 60) == ["m39", "m38"]
    assert found(store, until=T0 + 60) == ["m0"]
    assert found(store, since=T0 + DAY) == [] and found(store, until=T0 - 1) == []
    assert found(store, since=until, until=since) == []


def test_a_replayed_delivery_is_found_by_when_its_event_was_received_not_when_it_was_replayed(store):
    """A replay (engine/replay.py) writes deliveries long after their event came in: the time range is the
    event's, whichever of its deliveries finds it."""
    accept(store, "old")
    accept(store, "new", now=T0 + DAY)
    [second, first] = [e.id for e in store.events(EventQuery(limit=2))]
    replay = store.start_replay(Replay(0, "", T0 - 1, T0 + 1, None, ["hubspot"], None, first, first, first - 1,
                                       counts={"hubspot": {}}, owner="p1"), T0 + DAY)
    assert store.replay_step(replay.id, "p1", replay.after_id, ReplayStep(first, 1, 1, {"hubspot": {"replayed": 1}},
                                                                         [(first, "old", NewDelivery("hubspot"))]),
                             T0 + DAY)
    assert found(store, destination="hubspot", since=T0 - 60, until=T0 + 60) == ["old"]
    assert found(store, destination="hubspot", state=QUEUED, until=T0 + 60) == ["old"]
    assert found(store, destination="hubspot", since=T0 + DAY - 60) == []
    # the newest event has two queued deliveries to crisp now: one page of two still holds two events
    again = store.start_replay(Replay(0, "", T0 + DAY - 1, T0 + DAY + 1, None, ["crisp"], None, second, second,
                                      second - 1, counts={"crisp": {}}, owner="p1"), T0 + DAY)
    assert store.replay_step(again.id, "p1", again.after_id, ReplayStep(second, 1, 1, {"crisp": {"replayed": 1}},
                                                                       [(second, "new", NewDelivery("crisp"))]),
                             T0 + DAY)
    assert found(store, destination="crisp", state=QUEUED, limit=2) == ["new", "old"]


def test_destinations_are_every_name_with_a_delivery(store):
    assert store.destinations() == []
    accept(store, "m0")
    store.accept([NewEvent({"type": "nonsense"}, None, [NewDelivery("(intake)", REJECTED, "not Segment")])], T0)
    assert store.destinations() == ["(intake)", "crisp", "planhat", "richpanel"]


# --------------------------------------------------------------------------- why not delivered now

def test_answers_group_retrying_deliveries_by_their_last_status_with_the_latest_error(store):
    ids = [accept(store, f"m{i}")["crisp"] for i in range(4)]
    settle(store, "crisp", {
        ids[0]: Finish(ids[0], RETRYING, Attempt(T0 + 1, 500, "crisp answered 500: first"), next_at=T0 + 99),
        ids[1]: Finish(ids[1], RETRYING, Attempt(T0 + 2, 500, "crisp answered 500: latest"), next_at=T0 + 99),
        ids[2]: Finish(ids[2], RETRYING, Attempt(T0 + 3, None, "timed out"), next_at=T0 + 99),
        ids[3]: Finish(ids[3], DELIVERED, Attempt(T0 + 4, 200, None))}, now=T0 + 5)
    assert store.answers(RETRYING) == {"crisp": [(500, 2, "crisp answered 500: latest", T0 + 5),
                                                 (None, 1, "timed out", T0 + 5)]}
    assert store.answers(RETRYING, ["planhat"]) == {}
    assert store.answers(DEAD) == {}


def test_dead_reasons_are_counted_per_destination(store):
    ids = [accept(store, f"m{i}")["crisp"] for i in range(3)]
    settle(store, "crisp", {i: Finish(i, DEAD, Attempt(T0, 400, "no"), reason="400 is final: the vendor refused this event")
                            for i in ids[:2]} | {ids[2]: Finish(ids[2], DEAD, Attempt(T0, 503, "busy"),
                                                                reason="gave up after 9 attempts")})
    assert store.reasons(DEAD) == {"crisp": {"400 is final: the vendor refused this event": 2,
                                             "gave up after 9 attempts": 1}}


def test_timelines_count_attempts_per_destination_and_bucket(store):
    hour = T0 - T0 % HOUR
    first, second = accept(store, "m0", now=hour), accept(store, "m1", now=hour)
    settle(store, "crisp", {first["crisp"]: Finish(first["crisp"], DELIVERED, Attempt(hour + 10, 200, None)),
                            second["crisp"]: Finish(second["crisp"], RETRYING, Attempt(hour + 70, 503, "busy"),
                                                    next_at=hour + 99)}, now=hour)
    settle(store, "planhat", {first["planhat"]: Finish(first["planhat"], DELIVERED, Attempt(hour + 20, 204, None))},
           now=hour)
    assert store.timelines(hour, 60) == {"crisp": [(hour, 1, 0), (hour + 60, 0, 1)], "planhat": [(hour, 1, 0)]}
    assert store.timeline(hour, 60, "crisp") == [(hour, 1, 0), (hour + 60, 0, 1)]
    assert store.timelines(hour + 100, 60) == {}


# --------------------------------------------------------------------------- what was sent

def request(url: str, events: int) -> SentRequest:
    return SentRequest.recorded({"method": "POST", "url": url, "headers": {"Authorization": "Bearer ***"},
                                 "query": {}, "body": [{"n": i} for i in range(events)]}, events, "crisp")


def test_a_batch_request_is_kept_once_and_each_of_its_deliveries_shows_it_with_its_siblings(store):
    ids = [accept(store, f"m{i}")["crisp"] for i in range(3)]
    batch = request("http://vendor/bulk", 3)
    settle(store, "crisp", {i: Finish(i, DELIVERED, Attempt(T0 + 1, 200, None, 0.1, sent=batch)) for i in ids})
    for delivery in ids:
        record = store.get(delivery)
        assert record.sent is not None and record.sent.request == batch.request
        assert (record.sent.events, record.sent.destination, record.sent.at) == (3, "crisp", T0 + 1)
        assert record.sent.deliveries == ids
        assert record.history[-1].sent_id == record.sent.id
    assert len({store.get(i).sent.id for i in ids}) == 1
    assert store._rows("SELECT COUNT(*) FROM sent_requests")[0][0] == 1   # kept once, not once per delivery


def test_each_attempt_keeps_its_own_request_and_the_latest_is_shown(store):
    delivery = accept(store, "m0")["crisp"]
    settle(store, "crisp", {delivery: Finish(delivery, RETRYING, Attempt(T0, 500, "down", sent=request("http://a", 2)),
                                             next_at=T0 + 10)})
    settle(store, "crisp", {delivery: Finish(delivery, DELIVERED, Attempt(T0 + 10, 200, None,
                                                                         sent=request("http://b", 1)))}, now=T0 + 10)
    record = store.get(delivery)
    assert record.sent.request["url"] == "http://b" and record.sent.events == 1
    first, second = record.history
    assert store.sent_request(first.sent_id).request["url"] == "http://a"
    assert first.sent_id != second.sent_id == record.sent.id


def test_an_attempt_without_a_recorded_request_says_so_and_a_lost_lease_keeps_none(store):
    [first, second] = [accept(store, f"m{i}")["crisp"] for i in range(2)]
    settle(store, "crisp", {first: Finish(first, DELIVERED, Attempt(T0, 200, None))})
    assert store.get(first).sent is None and store.get(first).history[0].sent_id is None
    store.lease("crisp", 1, "w1", T0, 60)
    sent = request("http://lost", 1)
    assert store.finish([Finish(second, DELIVERED, Attempt(T0, 200, None, sent=sent))], "someone-else", T0) == 0
    assert store._rows("SELECT COUNT(*) FROM sent_requests")[0][0] == 0


def test_a_step_keeps_the_request_it_sent(store):
    delivery = accept(store, "m0")["crisp"]
    store.lease("crisp", 1, "w", T0, 60)
    assert store.step_done(delivery, "w", {"find": {"status": 200, "body": {}}},
                           Attempt(T0, 200, None, 0.1, "find", sent=request("http://find", 1)), T0)
    record = store.get(delivery)
    assert record.sent.request["url"] == "http://find" and record.history[0].step == "find"


def test_a_request_over_the_bound_is_kept_as_an_excerpt_that_says_so():
    huge = SentRequest.recorded({"method": "POST", "url": "u", "headers": {}, "query": {},
                                 "body": {"text": "x" * (2 << 20)}}, 1, "crisp")
    assert isinstance(huge.request["body"], str) and len(huge.request["body"]) < 2000
    assert "cut: the request is over 1 MiB" in huge.request["body"]
    small = SentRequest.recorded({"method": "POST", "url": "u", "headers": {}, "query": {}, "body": {"a": 1}}, 1, "c")
    assert small.request["body"] == {"a": 1}


def test_pruning_removes_a_sent_request_with_the_last_attempt_that_points_at_it(store):
    ids = [accept(store, f"m{i}")["crisp"] for i in range(2)]
    batch = request("http://vendor/bulk", 2)
    settle(store, "crisp", {ids[0]: Finish(ids[0], DELIVERED, Attempt(T0, 200, None, sent=batch)),
                            ids[1]: Finish(ids[1], DEAD, Attempt(T0, 200, None, sent=batch), reason="final")})
    store.prune(T0 + DAY)
    assert store.get(ids[0]) is None
    kept = store.get(ids[1]).sent   # the dead letter keeps it
    assert kept is not None and kept.deliveries == [ids[1]] and kept.events == 2
    store.requeue(T0 + DAY)
    settle(store, "crisp", {ids[1]: Finish(ids[1], DELIVERED, Attempt(T0 + DAY, 200, None))}, now=T0 + DAY)
    store.prune(T0 + 3 * DAY)
    assert store._rows("SELECT COUNT(*) FROM sent_requests")[0][0] == 0


# --------------------------------------------------------------------------- a retried dead letter

def test_a_retried_dead_letter_then_delivered_shows_the_latest_attempt_not_the_old_verdict(store):
    delivery = accept(store, "m0")["crisp"]
    settle(store, "crisp", {delivery: Finish(delivery, DEAD, Attempt(T0, 400, "crisp answered 400: bad email"),
                                             reason="400 is final: the vendor refused this event",
                                             errors=[{"path": "email", "message": "bad"}])})
    assert store.requeue(T0 + 10, ids=[delivery]) == 1
    queued = store.get(delivery)
    assert (queued.state, queued.reason, queued.errors, queued.last_status) == (QUEUED, None, None, 400)
    settle(store, "crisp", {delivery: Finish(delivery, DELIVERED, Attempt(T0 + 11, 200, None))}, now=T0 + 11)
    record = store.get(delivery)
    assert (record.state, record.reason, record.errors, record.last_status, record.last_error) == \
        (DELIVERED, None, None, 200, None)
    assert [a.status for a in record.history] == [400, 200]   # the history keeps the rest
    [listed] = [d for e in store.events(EventQuery(message_id="m0")) for d in e.deliveries if d.id == delivery]
    assert (listed.reason, listed.last_status) == (None, 200)


# --------------------------------------------------------------------------- refused at the door

def refusal(at: float, **values) -> Refusal:
    fields = {"status": 401, "code": "unauthorized", "reason": "unknown write key", "path": "/v1/batch",
              "key_prefix": key_prefix("wrong-key-1234567"), "origin": "https://shop.example", "ip": "10.0.0.7",
              "first_at": at, "last_at": at, **values}
    return Refusal(**fields)


def test_refusals_are_counted_per_kind_and_hour_the_latest_first(store):
    store.refused([refusal(T0), refusal(T0 + 5, count=3, reason="unknown write key (again)")])
    store.refused([refusal(T0 + 9, status=403, code="origin_refused", reason="origin not allowed", source="web",
                           key_prefix=None)])
    store.refused([refusal(T0 + HOUR)])   # the next hour: a row of its own
    kept = store.refusals()
    assert [(r.status, r.count, r.first_at, r.last_at) for r in kept] == [
        (401, 1, T0 + HOUR, T0 + HOUR), (403, 1, T0 + 9, T0 + 9), (401, 4, T0, T0 + 5)]
    assert kept[2].reason == "unknown write key (again)" and kept[2].key_prefix == "wron… (17 characters)"
    assert kept[1].source == "web" and kept[1].origin == "https://shop.example" and kept[1].ip == "10.0.0.7"
    assert [r.status for r in store.refusals(since=T0 + 8)] == [401, 403]
    assert len(store.refusals(limit=1)) == 1


def test_the_refusal_sample_stays_bounded_and_is_pruned(store, monkeypatch):
    monkeypatch.setattr(refusal_rows, "KEPT", 5)
    store.refused([refusal(T0 + i, ip=f"10.0.0.{i}") for i in range(8)])
    assert [r.ip for r in store.refusals()] == [f"10.0.0.{i}" for i in (7, 6, 5, 4, 3)]
    store.prune(T0 + 6)
    assert [r.ip for r in store.refusals()] == ["10.0.0.7", "10.0.0.6"]


def test_a_refusal_never_keeps_a_whole_key_and_long_text_is_cut(store):
    assert key_prefix("abcdefghijklmnop") == "abcd… (16 characters)"
    assert key_prefix("short-key") == "(9 characters)" and key_prefix("") is None and key_prefix(None) is None
    store.refused([refusal(T0, reason="x" * 5000, user_agent="\x00agent")])
    [kept] = store.refusals()
    assert len(kept.reason) == refusal_rows.TEXT_LIMIT and kept.reason.endswith("…")


# --------------------------------------------------------------------------- the migration

@pytest.mark.parametrize("version", [6, 7])
def test_upgrading_gives_old_attempts_their_destination(backend, version):
    """Attempts recorded before migration 8 count in the per-destination charts after the upgrade."""
    for number, script in migrations(backend.name):
        if number > version:
            break
        for statement in (s.strip() for s in script.split(";")):
            if statement:
                backend.execute(statement)
    backend.execute(f"INSERT INTO schema_version(version) VALUES ({version})")
    backend.execute(f"INSERT INTO events(message_id, received_at, body) VALUES ('old', {T0}, '{{}}')")
    backend.execute(f"INSERT INTO deliveries(event_id, destination, state, created_at, updated_at, first_at)"
                    f" SELECT id, 'crisp', 'delivered', {T0}, {T0}, {T0} FROM events")
    backend.execute(f"INSERT INTO attempts(delivery_id, at, status) SELECT id, {T0 + 1}, 200 FROM deliveries")
    with backend.open(upgrade=True) as upgraded:
        assert upgraded.timelines(T0, 60) == {"crisp": [(T0 - T0 % 60, 1, 0)]}
        assert upgraded.get(upgraded.list()[0].id).sent is None
        assert [e.message_id for e in upgraded.events(EventQuery(destination="crisp", state=DELIVERED))] == ["old"]


# --------------------------------------------------------------------------- one odd refusal affects only itself

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=400)   # NUL and lone surrogates too


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reason=ANY_TEXT, path=ANY_TEXT, key=ANY_TEXT, origin=ANY_TEXT, agent=ANY_TEXT)
def test_any_text_in_a_refusal_is_kept_with_the_others_of_its_write(store, reason, path, key, origin, agent):
    mark = uuid.uuid4().hex   # the examples share the store: each finds its own rows
    odd = refusal(T0, reason=reason, path=path, key_prefix=key_prefix(key), origin=origin, user_agent=agent,
                  ip=f"odd-{mark}")
    plain = refusal(T0, ip=f"plain-{mark}")
    store.refused([odd, plain])
    kept = {r.ip: r for r in store.refusals(limit=1000)}
    assert {f"odd-{mark}", f"plain-{mark}"} <= set(kept)
    shown = kept[f"odd-{mark}"].key_prefix or ""
    assert len(key) < 12 or key[4:] not in shown or not key[4:]   # never more of a key than its first four
    store._rows("SELECT 1")   # the store still answers
