"""The archive and the replays' records, one suite for both stores (``store``/``backend`` fixtures).

The archive is the events table: what intake accepted, with the source it came from, kept while it has
deliveries or is younger than the archive's horizon, read back by key. A replay's chunk (its deliveries
and its progress) is written whole or not at all, and only by the process that runs the replay.
"""
from __future__ import annotations

import json

import pytest

from engine import Engine
from engine.intake import Intake
from engine.serve.inbox import InboxWorker
from engine.store import (
    DEAD,
    DELIVERED,
    INTAKE,
    QUEUED,
    REJECTED,
    REPLAY_ABANDONED,
    REPLAY_DONE,
    REPLAY_RUNNING,
    REPLAY_STOPPED,
    SKIPPED,
    Attempt,
    Finish,
    NewDelivery,
    NewEvent,
    Received,
    Replay,
    ReplayStep,
)
from engine.store.migrations import migrations

T0 = 1_700_000_000.0
DAY = 86400.0


def track(message_id: str, **more) -> dict:
    return {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": message_id, **more}


def intake(store, clock=lambda: T0, window: float = DAY) -> Intake:
    engine = Engine()
    return Intake(engine, [engine.route("segment", {"write_key": "k"})], store, dedupe_window=window, clock=clock)


def archived_ids(store, since=T0 - DAY, until=T0 + 30 * DAY, source=None) -> list[str]:
    bounds = store.archive_bounds(since, until)
    if bounds is None:
        return []
    return [a.message_id for a in store.archived(bounds[0] - 1, bounds[1], since, until, source, 1000)]


def replay_of(store, first: int, last: int, owner: str = "p1") -> Replay:
    return store.start_replay(Replay(0, "", T0, T0 + DAY, None, ["segment"], None, first, last, first - 1,
                                     counts={"segment": {}}, owner=owner), T0)


# --------------------------------------------------------------------------- what goes into the archive

def test_intake_archives_accepted_events_with_their_source_and_nothing_else(store):
    accepted = intake(store).accept([track("m1"), track("m2"), {"type": "track", "userId": "u1"}], source="web")
    again = intake(store).accept([track("m1")], source="web")   # a duplicate within the window
    store.accept([NewEvent({"id": "hook-1"}, "gladly:1", [NewDelivery("source:gladly")])], T0)  # a webhook payload
    intake(store).accept([track("m3")])                         # eventmap enqueue: no source

    assert [r.rejected for r in accepted] == [False, False, True]
    assert again[0].states() == {"segment": SKIPPED}
    assert archived_ids(store) == ["m1", "m2", "m3"]
    assert archived_ids(store, source="web") == ["m1", "m2"]
    [first] = store.archived(0, 10**9, T0 - 1, T0 + 1, "web", 1)
    assert first.source == "web" and first.event == track("m1") and first.received_at == T0


def test_the_inbox_keeps_the_source_for_the_events_it_makes(store):
    store.receive([Received("track", json.dumps(track("m1")).encode(), T0, None, source="mobile")])
    worker = InboxWorker(intake(store), store, owner="p1", clock=lambda: T0)
    assert worker.run_once(T0) == 1
    assert archived_ids(store, source="mobile") == ["m1"]


def test_archived_events_are_read_by_key_within_the_range(store):
    """Ids need not follow the times (collectors on several hosts, each with its clock): the range's first and
    last ids bound the pages, and the times decide."""
    for hour, late in ((1, ""), (4, ""), (2, ""), (3, ""), (0, ""), (4, "late-")):
        store.accept([NewEvent(track(f"{late}h{hour}-{i}"), f"{late}h{hour}-{i}", [], archive=True) for i in range(3)],
                     T0 + hour * 3600)
    since, until = T0 + 3600, T0 + 4 * 3600   # hours 1, 2 and 3
    first, last = store.archive_bounds(since, until)
    assert last - first == 11   # hour 4's first events lie between; its late ones after
    pages, after = [], first - 1
    while True:
        page = store.archived(after, last, since, until, None, 4)
        pages.append([a.message_id for a in page])
        if len(page) < 4:
            break
        after = page[-1].id
    assert pages == [["h1-0", "h1-1", "h1-2", "h2-0"], ["h2-1", "h2-2", "h3-0", "h3-1"], ["h3-2"]]
    assert store.archive_bounds(T0 + 9 * 3600, T0 + 10 * 3600) is None


# --------------------------------------------------------------------------- how long it is kept

def test_prune_keeps_archived_events_for_the_archive_horizon_after_their_deliveries_go(store):
    [old, dead] = [a.accepted.deliveries[0][0] for a in intake(store).accept([track("old"), track("dead")])]
    store.lease("segment", 10, "w1", T0, 60)
    store.finish([Finish(old, DELIVERED, Attempt(T0, 200, None)), Finish(dead, DEAD, Attempt(T0, 400, "no"))],
                 "w1", T0)

    assert store.prune(T0 + 8 * DAY, archive_before=T0 - 1) == 1   # the delivery goes, the event stays archived
    assert store.get(old) is None
    assert archived_ids(store) == ["old", "dead"]
    store.prune(T0 + 8 * DAY, archive_before=T0 + 1)                  # past the horizon: gone, unless a dead letter
    assert archived_ids(store) == ["dead"]
    assert store.get(dead).event == track("dead")


def test_without_an_archive_horizon_events_go_with_their_deliveries_as_before(store):
    [done] = [a.accepted.deliveries[0][0] for a in intake(store).accept([track("m1")])]
    store.accept([NewEvent(track("unrouted"), "unrouted", [], archive=True)], T0)   # every route disabled
    store.lease("segment", 10, "w1", T0, 60)
    store.finish([Finish(done, DELIVERED, Attempt(T0, 200, None))], "w1", T0)
    assert store.prune(T0 + DAY) == 1
    assert archived_ids(store) == []


# --------------------------------------------------------------------------- a replay's record

def test_a_replay_step_writes_its_deliveries_and_progress_together(store):
    accepted = intake(store).accept([track("m1"), track("m2")])
    first, second = (a.accepted.event_id for a in accepted)
    replay = replay_of(store, first, second)
    assert (replay.state, replay.after_id, replay.owner) == (REPLAY_RUNNING, first - 1, "p1")

    step = ReplayStep(second, 2, 2, {"segment": {"replayed": 1, "rejected": 1}},
                      [(first, "m1", NewDelivery("segment")),
                       (second, "m2", NewDelivery("segment", REJECTED, "bad", [{"path": "x", "message": "y"}]))])
    assert store.replay_step(replay.id, "p1", replay.after_id, step, T0 + 5)
    [saved] = store.replays(replay_id=replay.id)
    assert (saved.after_id, saved.events, saved.counts, saved.updated_at) == (second, 2, step.counts, T0 + 5)
    new = store.list("segment", limit=10, after_id=max(d for a in accepted for d, _, _ in a.accepted.deliveries))
    assert [(r.event_id, r.message_id, r.state, r.next_at) for r in new] == [(first, "m1", QUEUED, T0 + 5),
                                                                          (second, "m2", REJECTED, None)]
    assert new[1].errors == [{"path": "x", "message": "y"}]
    assert [item.event["messageId"] for item in store.lease("segment", 10, "w", T0 + 5, 60)] == ["m1", "m2", "m1"]


def test_a_step_from_a_stale_position_or_another_owner_writes_nothing(store):
    [accepted] = [r.accepted for r in intake(store).accept([track("m1")])]
    replay = replay_of(store, accepted.event_id, accepted.event_id)
    step = ReplayStep(accepted.event_id, 1, 1, {}, [(accepted.event_id, "m1", NewDelivery("segment"))])
    before = store.counts(T0)

    assert not store.replay_step(replay.id, "p1", replay.after_id + 1, step, T0)   # not where it is
    assert not store.replay_step(replay.id, "p2", replay.after_id, step, T0)       # not its owner
    assert store.take_replay(replay.id, "p2", T0 + 1).owner == "p2"                # a resume elsewhere
    assert not store.replay_step(replay.id, "p1", replay.after_id, step, T0)       # the old owner is refused
    assert store.counts(T0) == before
    assert store.replay_step(replay.id, "p2", replay.after_id, step, T0)
    assert not store.replay_step(replay.id, "p2", replay.after_id, step, T0)       # the same step twice: once


def test_replay_states_done_and_abandoned_are_final(store):
    [accepted] = [r.accepted for r in intake(store).accept([track("m1")])]
    first = replay_of(store, accepted.event_id, accepted.event_id)
    assert store.end_replay(first.id, "p1", REPLAY_STOPPED, T0)
    assert store.take_replay(first.id, "p2", T0).state == REPLAY_RUNNING   # stopped: resumable
    assert not store.end_replay(first.id, "p1", REPLAY_DONE, T0)           # no longer p1's
    assert store.end_replay(first.id, "p2", REPLAY_DONE, T0)
    assert store.take_replay(first.id, "p3", T0) is None
    second = replay_of(store, accepted.event_id, accepted.event_id)
    assert store.end_replay(second.id, None, REPLAY_ABANDONED, T0)
    assert store.take_replay(second.id, "p3", T0) is None
    assert not store.end_replay(second.id, None, REPLAY_STOPPED, T0)
    assert [(r.id, r.state) for r in store.replays()] == [(second.id, REPLAY_ABANDONED), (first.id, REPLAY_DONE)]


# --------------------------------------------------------------------------- events kept before the archive

def quoted(text: str | None) -> str:
    return "NULL" if text is None else "'" + text.replace("'", "''") + "'"


@pytest.mark.parametrize("rejected_destination", [INTAKE, "source:gladly"])
def test_upgrading_archives_the_accepted_events_already_kept(backend, rejected_destination):
    """Events from before the archive's migration (7): accepted ones become replayable; those rejected at intake,
    webhook payloads and duplicates do not."""
    for number, script in migrations(backend.name):
        if number > 6:
            break
        for statement in (s.strip() for s in script.split(";")):
            if statement:
                backend.execute(statement)
    backend.execute("INSERT INTO schema_version(version) VALUES (6)")
    for id_, message_id, destination, state, reason in (
            (1, "ok", "segment", "delivered", None),
            (2, "bad", rejected_destination, "rejected" if rejected_destination == INTAKE else "queued", None),
            (3, "ok", "segment", "skipped", "duplicate: messageId 'ok' was already accepted")):
        backend.execute(f"INSERT INTO events(id, message_id, received_at, body) OVERRIDING SYSTEM VALUE VALUES "
                        f"({id_}, '{message_id}', {T0}, '{json.dumps(track(message_id))}')"
                        if backend.name == "postgres" else
                        f"INSERT INTO events(id, message_id, received_at, body) VALUES "
                        f"({id_}, '{message_id}', {T0}, '{json.dumps(track(message_id))}')")
        backend.execute(f"INSERT INTO deliveries(event_id, destination, message_id, state, created_at, updated_at,"
                        f" first_at, reason) VALUES ({id_}, '{destination}', '{message_id}', '{state}', {T0}, {T0},"
                        f" {T0}, {quoted(reason)})")
    with backend.open(upgrade=True) as upgraded:
        assert [a.id for a in upgraded.archived(0, 10, T0, T0 + 1, None, 10)] == [1]
