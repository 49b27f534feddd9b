"""Tracking-plan violations in the store, on SQLite and PostgreSQL alike (``store``/``backend`` fixtures):
counted per hour with one example, filtered, pruned, written with their events, and the inbox's source.
"""
from __future__ import annotations

import threading

from engine.store import NewDelivery, NewEvent, NewViolation, Received, ViolationQuery
from engine.store.migrations import migrations

T0 = 1_700_000_000.0   # on the hour
HOUR, DAY = 3600.0, 86400.0


def broken(message_id: str, *violations: tuple, source: str = "web") -> NewEvent:
    """A track event with its violations: (event, rule, path, action) each."""
    body = {"type": "track", "event": violations[0][0], "userId": "u", "messageId": message_id,
            "properties": {"total": "x", "products": [{"price": "y"}]}}
    return NewEvent(body, message_id, [NewDelivery("crisp")],
                    [NewViolation(source, event, rule, path, f"{rule} at {path}", action, body, message_id)
                     for event, rule, path, action in violations])


TOTAL = ("Order Completed", "type", "properties.total", "warn")


def test_violations_are_summed_per_rule_and_path_with_the_first_example_of_the_hour(store):
    store.accept([broken("m1", TOTAL, ("Order Completed", "type", "properties.products[0].price", "warn")),
                  broken("m2", TOTAL, ("Order Completed", "type", "properties.products[3].price", "warn"))], T0 + 10)
    store.accept([broken("m3", TOTAL)], T0 + 20)
    found = {(v.path, v.count): v for v in store.violations(ViolationQuery())}
    assert set(found) == {("properties.total", 3), ("properties.products[].price", 2)}   # positions folded
    total = found[("properties.total", 3)]
    assert (total.source, total.event, total.rule, total.action) == ("web", "Order Completed", "type", "warn")
    assert (total.first_at, total.last_at, total.message_id, total.message) == (T0 + 10, T0 + 20, "m1",
                                                                                 "type at properties.total")
    assert total.example["messageId"] == "m1" and total.example["properties"] == {"total": "x", "products": [{"price": "y"}]}
    assert store.violation_counts() == {("web", "Order Completed", "type"): 5}


def test_since_counts_the_hours_from_then_on_and_filters_match_exactly(store):
    store.accept([broken("m1", TOTAL)], T0)
    store.accept([broken("m2", TOTAL), broken("m3", ("Signed Up", "enum", "properties.plan", "block"))], T0 + 2 * HOUR)
    store.accept([broken("m4", TOTAL, source="app")], T0 + 2 * HOUR)
    everything = store.violations(ViolationQuery())
    assert sorted((v.source, v.event, v.count) for v in everything) == [
        ("app", "Order Completed", 1), ("web", "Order Completed", 2), ("web", "Signed Up", 1)]
    recent = store.violations(ViolationQuery(source="web", event="Order Completed", since=T0 + HOUR + 5))
    assert [(v.count, v.first_at, v.message_id) for v in recent] == [(1, T0 + 2 * HOUR, "m2")]
    within = store.violations(ViolationQuery(source="web", event="Order Completed", since=T0 + 2 * HOUR + 1800))
    assert [v.count for v in within] == [1]   # the hour 'since' falls in counts whole
    assert store.violations(ViolationQuery(event="Order")) == []
    assert len(store.violations(ViolationQuery(limit=1))) == 1
    assert store.violations(ViolationQuery())[0].last_at == T0 + 2 * HOUR   # the most recent first


def test_violations_of_a_refused_event_are_kept_too_and_nothing_is_written_without_any(store):
    store.accept([NewEvent({"type": "track"}, "m0", [NewDelivery("crisp")])], T0)
    assert store.violations(ViolationQuery()) == [] and store.violation_counts() == {}
    refused = broken("m1", ("Nope", "unplanned", "event", "block"))
    refused.deliveries = [NewDelivery("(intake)", "rejected", "the event is not in the source's tracking plan",
                                      [{"path": "event", "message": "'Nope' is not in the tracking plan 'shop'"}])]
    store.accept([refused], T0)
    assert [(v.event, v.rule, v.action) for v in store.violations(ViolationQuery())] == [("Nope", "unplanned", "block")]


def test_long_names_and_nul_characters_are_kept_whole(store):
    """An unplanned event's name is the client's: a long one must not fail the write of its batch (PostgreSQL
    refuses btree entries over about 2.7 KB), nor a NUL (PostgreSQL text cannot hold one)."""
    name = "E" * 5000 + "\x00!"
    store.accept([broken("m1", (name, "unplanned", "event", "warn")), broken("m2", TOTAL)], T0)
    found = {v.event[:1]: v for v in store.violations(ViolationQuery())}
    assert found["E"].event.startswith("E" * 5000) and len(found["E"].event) == 5002 and found["O"].count == 1


def test_prune_forgets_violations_last_seen_before_the_horizon(store):
    store.accept([broken("m1", TOTAL)], T0)
    store.accept([broken("m2", ("Signed Up", "enum", "properties.plan", "warn"))], T0 + 3 * DAY)
    store.prune(T0 + DAY)
    assert [v.event for v in store.violations(ViolationQuery())] == ["Signed Up"]


def test_writers_counting_the_same_violations_at_once_lose_none(backend):
    """Several threads (their own stores, as server processes) add to the same rows: no deadlock, no lost count."""
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            with backend.open() as store:
                for i in range(20):
                    store.accept([broken(f"w{worker}-{i}", TOTAL, ("Signed Up", "enum", "properties.plan", "warn"))],
                                 T0 + i)
        except BaseException as exc:
            errors.append(exc)

    backend.open().close()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    with backend.open() as store:
        assert store.violation_counts() == {("web", "Order Completed", "type"): 80, ("web", "Signed Up", "enum"): 80}


def test_the_inbox_keeps_each_requests_source(store):
    store.receive([Received("track", b"{}", T0, "1.2.3.4", source="web"), Received("batch", b"{}", T0)])
    taken = store.take_received(10, "p1", T0, 60)
    assert [(r.call, r.source) for r in taken] == [("track", "web"), ("batch", None)]


def test_upgrading_keeps_the_requests_waiting_in_the_inbox(backend):
    """Migration 6 adds the inbox's source column: requests stored before it are taken as before, with no source."""
    for number, script in migrations(backend.name):
        if number > 5:
            break
        for statement in (s.strip() for s in script.split(";")):
            if statement:
                backend.execute(statement)
    backend.execute("INSERT INTO schema_version(version) VALUES (5)")
    backend.execute("INSERT INTO inbox(call, body, received_at) VALUES ('track', 'x', 1.0)")
    with backend.open(upgrade=True) as store:
        assert [(r.call, r.source) for r in store.take_received(5, "p1", 2.0, 60)] == [("track", None)]
        assert store.violations(ViolationQuery()) == []


def test_metrics_show_the_most_frequent_series_and_sum_the_rest_under_other():
    """Unplanned event names are the client's: /metrics must not grow a series per made-up name."""
    from engine.serve import metrics
    counts = {("web", f"Made Up {i:03d}", "unplanned"): 1 for i in range(250)}
    counts[("web", "Order Completed", "type")] = 7
    lines = [line for line in metrics.render({}, violations=counts).splitlines()
             if line.startswith("eventmap_plan_violations{")]
    assert len(lines) == metrics.VIOLATION_SERIES + 1
    assert 'eventmap_plan_violations{source="web",event="Order Completed",rule="type"} 7' in lines
    assert 'eventmap_plan_violations{source="web",event="(other)",rule="unplanned"} 51' in lines
    assert sum(int(line.split()[-1]) for line in lines) == 257
