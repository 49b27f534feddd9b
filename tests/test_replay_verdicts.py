"""What a replay decides for each archived event, through the library on a real SQLite store.

One bad event affects only itself: a ``--where`` that fails on an event skips that event, with the
reason, at every destination; an event today's schema refuses, or a route's own condition fails on, is
rejected with the reason; the replay goes on and every event it read has exactly one verdict per
destination. Hypothesis generates the events.
"""
from __future__ import annotations

import itertools

from conftest import write_mappings
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.replay import OTHER_REASONS, REASONS_KEPT, WHERE_FAILED, Replayer, Selection, Verdict, tally
from engine.route import CONDITION_FAILED
from engine.states import REJECTED, REPLAYED, SKIPPED
from engine.store import NewEvent, open_store

T0 = 1_700_000_000.0
WHERE = "length(properties.v) > `1`"   # length() of a number, a boolean or null fails

values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=4),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                  max_size=3), max_leaves=6)


def track(n: int, value, valid: bool) -> dict:
    event = {"type": "track", "event": "Tried", "messageId": f"m{n}", "properties": {"v": value}}
    return {**event, "userId": f"u{n}"} if valid else event   # neither userId nor anonymousId: refused today


def length_fails(value) -> bool:
    return not isinstance(value, (str, list, dict))


def test_every_event_gets_one_verdict_per_destination_whatever_fails_for_it(tmp_path):
    engine = Engine()
    routes = [engine.route("segment", {"write_key": "k"}),
              engine.route("planhat", {"tenant_token": "t"}, where="starts_with(properties.v, 'a')")]
    store = open_store(f"sqlite:///{tmp_path}/outbox.db")
    moments = itertools.count()

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(values, st.booleans()), min_size=1, max_size=12))
    def check(generated):
        now = T0 + next(moments) * 10
        store.accept([NewEvent(track(n, value, valid), f"m{n}", [], archive=True)
                      for n, (value, valid) in enumerate(generated)], now)
        replayer = Replayer(engine, routes, store, Selection(now, now + 1, where=WHERE), chunk=5)
        verdicts: dict[str, list[Verdict]] = {}
        replay = replayer.dry_run(replayer.new(replayer.bounds(), owner=None),
                                  lambda item, verdict: verdicts.setdefault(item.message_id, []).append(verdict))

        assert replay.events == len(generated)
        for n, (value, valid) in enumerate(generated):
            found = verdicts.get(f"m{n}")
            if not length_fails(value) and len(value) <= 1:
                assert found is None   # the condition is false: not part of the replay
                continue
            assert [v.destination for v in found] == ["segment", "planhat"]
            if length_fails(value):
                assert {(v.status, v.reason.split(":")[0]) for v in found} == {(SKIPPED, WHERE_FAILED)}
            elif not valid:
                assert {v.status for v in found} == {REJECTED}
                assert found[0].reason == "the event does not follow the Segment spec" and found[0].errors
            else:
                segment, planhat = found
                assert segment.status == REPLAYED and segment.outcome.requests
                if not isinstance(value, str):   # starts_with() of a list or an object fails: that route only
                    assert planhat.status == REJECTED and planhat.reason == CONDITION_FAILED
        assert replay.matched == len(verdicts)
        assert sum(per[s] for per in replay.counts.values() for s in (REPLAYED, SKIPPED, REJECTED)) == \
            2 * replay.matched

    try:
        check()
    finally:
        store.close()


def test_a_replay_counts_few_distinct_reasons_however_many_events_name_their_own():
    counts: dict = {}
    for n in range(REASONS_KEPT + 30):
        tally(counts, Verdict("segment", SKIPPED, f"not subscribed: 'Event {n}' is not in this route's events"))
    reasons = counts["segment"]["reasons"]
    assert len(reasons) == REASONS_KEPT + 1 and reasons[OTHER_REASONS] == 30
    assert counts["segment"][SKIPPED] == REASONS_KEPT + 30


def test_destinations_are_kept_by_file_name_however_given(tmp_path):
    """So that the same replay typed with a display name is recognised as the same (resumed, or refused when
    it overlaps an unfinished one)."""
    engine = Engine()
    routes = [engine.route("segment", {"write_key": "k"}), engine.route("planhat", {"tenant_token": "t"})]
    with open_store(f"sqlite:///{tmp_path}/outbox.db") as store:
        replayer = Replayer(engine, routes, store, Selection(T0, T0 + 1, destinations=("Segment", "segment")))
    assert replayer.selection.destinations == ("segment",)
    assert [route.destination.slug for route in replayer.routes] == ["segment"]


def test_an_event_the_mapping_cannot_build_today_is_rejected_with_its_errors(tmp_path):
    """Today's mapping requires a field some archived events lack: those are kept as rejected deliveries with
    the errors, the others queued, and the replay's record counts both."""
    mappings = write_mappings(tmp_path, {"standin.yaml": """\
        name: Stand-in
        settings: {type: object, properties: {base: {type: string}}}
        actions:
          track:
            request: {url: "{{ settings.base }}/track"}
            body:
              plan: {"@path": event.properties.plan}
            required: [plan]
        """})
    engine = Engine(mappings)
    routes = [engine.route("standin", {"base": "http://127.0.0.1:9"})]
    with open_store(f"sqlite:///{tmp_path}/outbox.db") as store:
        accepted = store.accept([NewEvent(track(n, None, True) | {"properties": props}, f"m{n}", [], archive=True)
                                 for n, props in enumerate([{"plan": "pro"}, {}])], T0)
        replayer = Replayer(engine, routes, store, Selection(T0, T0 + 1))
        first, last = replayer.bounds()
        replay = replayer.run(store.start_replay(replayer.new((first, last), owner="p1"), T0))
        rows = {r.message_id: r for r in store.list("standin", limit=10)}
    assert [a.event_id for a in accepted] == [first, last]
    assert (replay.counts["standin"][REPLAYED], replay.counts["standin"][REJECTED]) == (1, 1)
    assert rows["m0"].state == "queued" and rows["m1"].state == "rejected"
    assert rows["m1"].errors and "plan" in rows["m1"].errors[0]["path"] + rows["m1"].errors[0]["message"]
    [reason] = replay.counts["standin"]["reasons"]
    assert reason == rows["m1"].reason
