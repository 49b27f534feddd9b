"""Which events a configured destination gets: its ``events:`` subscription for every named call
(track's ``event``, page's and screen's ``name``) and Segment's ``integrations`` object, where an
object of options for a destination turns it on, as ``true`` does.

Rendered through ``Engine`` with a small destination that has an action for every call type.
"""
from __future__ import annotations

import pytest
from conftest import write_mappings

from engine import Engine

EVERY_CALL = """\
name: Every Call
settings:
  type: object
  properties: {}
actions:
  track: {request: {url: "https://every.test/t"}, body: {name: {"@path": event.event}}}
  page: {request: {url: "https://every.test/p"}, body: {name: {"@path": event.name}}}
  screen: {request: {url: "https://every.test/s"}, body: {name: {"@path": event.name}}}
  identify: {request: {url: "https://every.test/i"}, body: {user: {"@path": event.userId}}}
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(write_mappings(tmp_path_factory.mktemp("route-rules"), {"every_call.yaml": EVERY_CALL}))


def call(kind: str, name: str | None = None, **more) -> dict:
    event = {"type": kind, "userId": "u-1", "messageId": f"{kind}-{name}", **more}
    if name is not None:
        event["event" if kind == "track" else "name"] = name
    return event


@pytest.mark.parametrize("kind", ["track", "page", "screen"])
def test_the_events_subscription_filters_every_named_call(engine, kind):
    route = engine.route("every_call", {}, events=["Pricing"])
    assert engine.render(call(kind, "Pricing"), route).status == "send"
    other = engine.render(call(kind, "Home"), route)
    assert (other.status, other.reason) == ("skipped", "not subscribed: 'Home' is not in this route's events")


def test_the_events_subscription_leaves_unnamed_calls_alone(engine):
    route = engine.route("every_call", {}, events=["Pricing"])
    assert engine.render(call("identify"), route).status == "send"


@pytest.mark.parametrize("integrations", [
    {"Every Call": {}},                                  # an (empty) object of options: on
    {"Every Call": {"session_id": 1}},
    {"All": False, "Every Call": {}},                    # its own key wins over All
    {"All": False, "Every Call": True},
    {"Other": False},
    {},
])
def test_an_integrations_object_turns_a_destination_on(engine, integrations):
    outcome = engine.render(call("track", "Signed Up", integrations=integrations), engine.route("every_call", {}))
    assert outcome.status == "send", outcome.reason


@pytest.mark.parametrize("integrations, reason", [
    ({"Every Call": False}, 'disabled in integrations ({"Every Call": false})'),
    ({"All": False}, "disabled in integrations ('All' is false and there is no 'Every Call' key)"),
    ({"All": False, "Other": {}}, "disabled in integrations ('All' is false and there is no 'Every Call' key)"),
])
def test_false_turns_a_destination_off(engine, integrations, reason):
    outcome = engine.render(call("track", "Signed Up", integrations=integrations), engine.route("every_call", {}))
    assert (outcome.status, outcome.reason) == ("skipped", reason)
