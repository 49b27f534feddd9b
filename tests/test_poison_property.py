"""One bad event never stops the rest: a property test over generated events, route conditions and mappings.

Hypothesis makes a destination mapping whose fields may fail on some events (a filter given the wrong
type, a JMESPath function given null, a header value HTTP cannot carry), a route ``where`` condition that
may fail the same way (``contains(properties.plan, 'pro')`` on an identify without properties), and a
batch of events, some of which trip them. Every path an event takes is run with the real parts: the
collector's WSGI app in both intake modes (``validate``; ``queue`` with the inbox processor), and the
delivery worker whose route changed after the events were accepted (so its condition fails in a turn),
each over a real SQLite store, delivering to a real HTTP stand-in on localhost.

It passes only when every good event arrives at the stand-in, and every event ends in a final state,
with a reason when it was not delivered. A good event is one that, on its own, passes the Segment check,
the route's condition and the mapping, and makes a request HTTP can carry: the property is that what the
other events of its batch, request, inbox turn or delivery turn do never changes that.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import random
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from serve_harness import WRITE_KEY
from vendor_server import VendorServer
from werkzeug.test import Client

from engine import Engine
from engine.deliver import DestinationWorker, HttpClient, RetryPolicy, drain
from engine.deliver.http import check_sendable
from engine.intake import Intake
from engine.outcome import SEND
from engine.serve import Collector
from engine.serve.config import load_serve_config
from engine.serve.inbox import InboxWorker
from engine.states import FINAL, PENDING
from engine.store import open_store
from engine.validate import storable

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
        "Content-Type": "application/json"}

# route conditions: the first fail (raise inside JMESPath) on some events and are true or false on others; the
# rest never fail
ATOMS = ["contains(properties.plan, 'pro')", "properties.n > `3`", "length(traits.name) > `2`",
         "abs(properties.n) >= `0`", "sort(properties.tags)[0] == 'a'", "to_number(properties.n) > `1`",
         "contains(traits.tags, 'a')",
         "starts_with(userId, 'u')", "type == 'identify'", "!properties.flag", "properties.plan == 'pro'",
         "userId != 'x9'", "traits.name != 'Bob'", "type == 'track' || traits.plan == 'pro'"]
CONDITIONS = st.one_of(st.none(), st.sampled_from(ATOMS),
                       st.tuples(st.sampled_from(ATOMS), st.sampled_from(["&&", "||"]), st.sampled_from(ATOMS))
                       .map(" ".join))

# mapping fields: each may fail on some events (MappingError, or an error the mapping does not wrap)
FIELDS = [
    '{"@path": "event.SCOPE.n", "@filter": number}',
    '{"@if": "contains(event.SCOPE.plan, \'pro\')", "@then": pro, "@else": other}',
    '"{{ (event.SCOPE.n or 0) + 1 }}"',
    '{"@path": "event.SCOPE.name", "@filter": upper}',
    '{"@each": "event.SCOPE.tags", "@map": {"@path": "item"}}',
    '{"@path": "length(event.SCOPE.tags)"}',
    '{"@if": "event.SCOPE.n > `3`", "@then": big}',
    '{"@path": "event.userId"}',
]
MAPPINGS = st.tuples(st.lists(st.sampled_from(FIELDS), max_size=2), st.booleans())

# values by field, mostly of the type the conditions and mappings expect, some not (and NaN, which no store holds)
NAN = float("nan")
FIELD_VALUES = st.fixed_dictionaries({}, optional={
    "plan": st.sampled_from(["pro", "free", "pro", "free", "pro plus", None, 5]),
    "n": st.sampled_from([1, 4, 7, 2, 9, "x", None, "5"]),
    "name": st.sampled_from(["Ann", "Bob", "Li", "Zoe", 5]),
    "tags": st.sampled_from([["a", "b"], ["a"], ["b", "a"], ["a", "c"], "x", [1, "a"]]),
    "ref": st.sampled_from(["ok-1", "ok-2", "ref", "ok-3", "雪-snow", "Łukasz", "José"]),
    "flag": st.sampled_from([False, False, True, "yes"]),
    "v": st.sampled_from([0, 1.5, 2, 3, 4, NAN]),
})
EVENTS = st.lists(st.tuples(st.sampled_from(["identify", "track"]),
                            st.one_of(st.none(), FIELD_VALUES, FIELD_VALUES, FIELD_VALUES),
                            st.sampled_from(["u-1", "user-2", "x9"])), min_size=1, max_size=14)


def destination_yaml(fields: list[str], header: bool) -> str:
    """A destination taking identify and track, each with the generated fields (reading traits or properties)."""
    lines = ["name: Probe", "settings:", "  type: object", "  required: [base]", "  properties:",
             "    base: {type: string}", "actions:"]
    for kind, scope in (("identify", "traits"), ("track", "properties")):
        lines += [f"  {kind}:", "    request:", f'      url: "{{{{ settings.base }}}}/{kind}"']
        if header:
            lines.append(f'      headers: {{X-Ref: "{{{{ event.{scope}.ref }}}}"}}')
        lines += ["    body:", '      messageId: {"@path": event.messageId}']
        lines += [f"      f{i}: {text.replace('SCOPE', scope)}" for i, text in enumerate(fields)]
    return "\n".join(lines) + "\n"


def make_events(drawn, run: str) -> list[dict]:
    events = []
    for n, (kind, values, user) in enumerate(drawn):
        event = {"type": kind, "userId": user, "messageId": f"{run}-{n}"}
        if kind == "track":
            event["event"] = "Probe"
        if values is not None:
            event["traits" if kind == "identify" else "properties"] = values
        events.append(event)
    return events


def arrives_alone(engine: Engine, route, event: dict) -> bool:
    """Whether this event, on its own, is delivered: storable, Segment-valid, subscribed, mapped, sendable."""
    if storable.problems(event) or engine.validate(event)[0]:
        return False
    try:
        if route.skip_reason(event) is not None:
            return False
        outcome = route.destination.render(event, route.settings, route.secrets)
        if outcome.status != SEND:
            return False
        for request in outcome.requests:
            check_sendable(request)
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def vendor():
    with VendorServer() as server:
        yield server


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """The server's configuration in both intake modes (its routes are the generated ones, given apart)."""
    folder = tmp_path_factory.mktemp("config")
    path = folder / "eventmap.yaml"
    path.write_text(f"sources: {{web: {{write_key: {WRITE_KEY}}}}}\ndestinations: {{segment: {{}}}}\n",
                    encoding="utf-8")   # not used: the routes are given to the collector
    validate = load_serve_config(path, {})
    queue = dataclasses.replace(validate, server=dataclasses.replace(validate.server, intake="queue"))
    return {"validate": validate, "queue": queue}


class World:
    """One generated example: an engine with the generated mapping, a route with the generated condition,
    a fresh store, and the worker that delivers to the stand-in."""

    def __init__(self, folder: Path, mapping: str, where: str | None, vendor: VendorServer):
        (folder / "mappings" / "destinations").mkdir(parents=True)
        (folder / "mappings" / "destinations" / "probe.yaml").write_text(mapping, encoding="utf-8")
        self.engine = Engine(folder / "mappings")
        self.route = self.engine.route("probe", {"base": vendor.url}, where=where)
        self.store = open_store(f"sqlite:///{folder / 'outbox.db'}")
        self.now = time.time()

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def deliver(self, route=None) -> None:
        worker = DestinationWorker(route or self.route, self.store, HttpClient(timeout=5), owner="prop",
                                   clock=self.clock, policy=RetryPolicy(retry_for=60, backoff=1, max_backoff=2),
                                   rng=random.Random(0))
        drain([worker], self.store, self.clock, self.advance)

    def records(self) -> list:
        return self.store.list(limit=10_000)


def check(world: World, events: list[dict], vendor: VendorServer) -> None:
    good = [e["messageId"] for e in events if arrives_alone(world.engine, world.route, e)]
    event("good and bad events together" if 0 < len(good) < len(events) else
          "only good events" if good else "only bad events")   # shown by --hypothesis-show-statistics
    arrived = set(vendor.delivered_ids())
    assert [m for m in good if m not in arrived] == [], "good events that did not arrive"
    records = world.records()
    assert {r.message_id for r in records} >= {e["messageId"] for e in events}, "events the store does not have"
    for record in records:
        assert record.state in FINAL and record.state not in PENDING, record
        if record.state not in ("delivered",):
            assert record.reason, record


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])


@SETTINGS
@given(drawn=EVENTS, mapping=MAPPINGS, where=CONDITIONS, chunks=st.integers(1, 4), data=st.data())
def test_every_good_event_arrives_through_the_collector_in_either_intake_mode(vendor, configs, drawn, mapping,
                                                                             where, chunks, data):
    mode = data.draw(st.sampled_from(["validate", "queue"]), label="intake")
    with tempfile.TemporaryDirectory() as folder:
        world = World(Path(folder), destination_yaml(*mapping), where, vendor)
        events = make_events(drawn, f"c-{uuid.uuid4().hex[:8]}")
        collector = Client(Collector(configs[mode], world.engine, [world.route], lambda: world.store,
                                     clock=world.clock))
        size = -(-len(events) // chunks)
        for start in range(0, len(events), size):   # the batch in a few requests: one inbox turn takes several
            body = json.dumps({"batch": events[start:start + size]}).encode()
            answer = collector.post("/v1/batch", data=body, headers=AUTH)
            assert answer.status_code in (200, 400), answer.get_data(as_text=True)
        if mode == "queue":
            inbox = InboxWorker(Intake(world.engine, [world.route], world.store, clock=world.clock), world.store,
                                requests_per_turn=data.draw(st.integers(1, 4), label="per turn"), clock=world.clock)
            for _ in range(20):
                if not inbox.run_once():
                    break
            assert world.store.waiting_requests() == 0
        world.deliver()
        check(world, events, vendor)
        world.store.close()


@SETTINGS
@given(drawn=EVENTS, mapping=MAPPINGS, where=CONDITIONS)
def test_every_good_event_arrives_when_the_delivery_worker_meets_the_bad_ones(vendor, drawn, mapping, where):
    """Accepted under a route without a condition, delivered under one with it (the configuration changed):
    the condition and the mapping fail inside the worker's turns."""
    with tempfile.TemporaryDirectory() as folder:
        world = World(Path(folder), destination_yaml(*mapping), where, vendor)
        events = make_events(drawn, f"w-{uuid.uuid4().hex[:8]}")
        accepting = world.engine.route("probe", {"base": vendor.url})
        Intake(world.engine, [accepting], world.store, clock=world.clock).accept(events)
        world.deliver(world.route)
        check(world, events, vendor)
        world.store.close()
