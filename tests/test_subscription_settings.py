"""A named action whose event names come from the user's settings, and whose `when` reads settings:
chosen per route, skipped with the setting named, refused at load when the setting cannot hold names,
and a condition that fails on one event's data rejects that event alone."""
from __future__ import annotations

import json

import pytest
from conftest import write_mappings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.problems import ConfigError

HEAD = """\
name: Lang
settings:
  type: object
  properties:
    secret: {type: string, secret: true}
    events: {type: array, items: {type: string}}
    region: {type: string, default: eu}
    send_pages: {type: boolean, default: false}
actions:
"""

CHOSEN = """\
  chosen:
    type: track
    events: {"@path": settings.events}
    request: {url: "https://lang.test/chosen"}
    body: {event: {"@path": event.event}}
"""

TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1"}


def engine_with(tmp_path, actions: str) -> Engine:
    return Engine(write_mappings(tmp_path, {"lang.yaml": HEAD + actions}))


def test_the_events_come_from_each_routes_own_setting(tmp_path):
    engine = engine_with(tmp_path, CHOSEN)
    orders = engine.route("lang", {"secret": "s", "events": ["Order Completed"]}, environ={})
    signups = engine.route("lang", {"secret": "s", "events": ["Signed Up", "Order Refunded"]}, environ={})
    for _ in range(2):   # interleaved: what one route worked out is never another route's
        for route, event, status in ((orders, "Order Completed", "send"), (signups, "Order Completed", "skipped"),
                                     (orders, "Signed Up", "skipped"), (signups, "Signed Up", "send")):
            outcome = engine.render({**TRACK, "event": event}, route)
            assert outcome.status == status, (route.settings["events"], event, outcome.to_dict())
    sent = engine.render(TRACK, orders)
    assert sent.action == "chosen" and sent.requests[0].body == {"event": "Order Completed"}


def test_an_event_not_named_is_skipped_with_the_setting_named(tmp_path):
    engine = engine_with(tmp_path, CHOSEN)
    outcome = engine.render({**TRACK, "event": "Signed Up"}, "lang", {"secret": "s", "events": ["Order Completed"]})
    assert outcome.status == "skipped"
    assert outcome.reason == "no action of Lang takes this track (chosen: events named in settings.events)"


def test_without_the_setting_the_action_takes_no_event_and_the_call_types_own_action_does(tmp_path):
    engine = engine_with(tmp_path, CHOSEN + '  track:\n    request: {url: "https://lang.test/t"}\n    body: {a: 1}\n')
    outcome = engine.render(TRACK, "lang", {"secret": "s"})
    assert outcome.status == "send" and outcome.action == "track"
    assert engine.render(TRACK, "lang", {"secret": "s", "events": ["Order Completed"]}).action == "chosen"


def test_page_names_come_from_the_setting_too(tmp_path):
    engine = engine_with(tmp_path, CHOSEN.replace("type: track", "type: page").replace("event.event", "event.name"))
    page = {"type": "page", "name": "Pricing", "userId": "u1", "messageId": "m1"}
    assert engine.render(page, "lang", {"secret": "s", "events": ["Pricing"]}).status == "send"
    assert engine.render(page, "lang", {"secret": "s", "events": ["Home"]}).status == "skipped"


def test_when_reads_settings(tmp_path):
    engine = engine_with(tmp_path, """\
  pages:
    type: page
    when: "settings.send_pages && event.name"
    request: {url: "https://lang.test/pages"}
    body: {name: {"@path": event.name}}
""")
    page = {"type": "page", "name": "Pricing", "userId": "u1", "messageId": "m1"}
    assert engine.render(page, "lang", {"secret": "s", "send_pages": True}).status == "send"
    off = engine.render(page, "lang", {"secret": "s"})
    assert off.status == "skipped" and off.reason == "no action of Lang takes this page (pages: when settings.send_pages && event.name)"


def test_explain_names_the_setting(tmp_path, capsys):
    from engine.cli import main
    root = tmp_path / "m"
    engine_with(root, CHOSEN)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(TRACK), encoding="utf-8")
    code = main(["explain", "lang", str(event), "--mappings", str(root / "mappings"),
                 "--settings", '{"secret": "s", "events": ["Order Completed"]}'])
    assert code == 0
    assert capsys.readouterr().out.startswith("action chosen (events named in settings.events)\n")


@pytest.mark.parametrize(("events", "message"), [
    ('{"@path": settings.region}', "actions.chosen.events: events reads settings.region, which must be declared "
                                   "as a list of event names (type: array, items: {type: string})"),
    ('{"@path": settings.nope}', "actions.chosen.events.@path: unknown setting 'settings.nope'"),
    ('{"@path": event.properties.names}', "actions.chosen.events: events {'@path': 'event.properties.names'}: a named "
                                          "action's events are a list of names, or one setting that holds them"),
    ('{"@path": "settings.events[0]"}', "a named action's events are a list of names, or one setting that holds them"),
    ('"{{ settings.events }}"', 'actions.chosen.events: expected a list of event names, or {"@path": settings.NAME}, '
                                "not '{{ settings.events }}'"),
    ('{"@path": settings.events, "@filter": lower}', "actions.chosen.events: expected a list of event names"),
])
def test_events_that_cannot_name_events_are_refused_at_load(tmp_path, events, message):
    with pytest.raises(ConfigError) as error:
        engine_with(tmp_path, CHOSEN.replace('{"@path": settings.events}', events))
    assert message in str(error.value) and "lang.yaml:" in str(error.value)
    assert len(error.value.problems) == 1, error.value.problems


def test_a_subscription_may_not_read_vars(tmp_path):
    with pytest.raises(ConfigError, match=r"lang.yaml:\d+: actions.chosen.when: when 'vars.x': a subscription reads "
                                          r"the event and settings only"):
        engine_with(tmp_path, CHOSEN.replace('events: {"@path": settings.events}', 'when: "vars.x"'))


# --------------------------------------------------------------------------- one bad event affects only itself

TAGGED = """\
  tagged:
    type: track
    when: "contains(event.properties.tags, 'vip')"
    request: {url: "https://lang.test/vip"}
    body: {a: 1}
  track:
    request: {url: "https://lang.test/t"}
    body: {a: 2}
"""

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tags=JSON)
def test_a_condition_that_fails_on_one_events_data_rejects_that_event_alone(tmp_path_factory, tags):
    engine = _tagged_engine(tmp_path_factory)
    routes = [engine.route("lang", {"secret": "s"}, environ={}), engine.route("plain", {"secret": "s"}, environ={})]
    good = {**TRACK, "properties": {"tags": ["vip"]}}
    bad = {**TRACK, "messageId": "m2", "properties": {"tags": tags}}
    lang, plain = engine.render_all(bad, routes)
    assert plain.status == "send"    # the other destination is untouched
    if isinstance(tags, (list, str)):
        assert lang.status == "send" and lang.action == ("tagged" if "vip" in tags else "track")
    else:
        assert lang.status == "rejected" and lang.action == "tagged"
        (problem,) = lang.errors
        assert problem.path == "actions.tagged.when"
        assert problem.message.startswith("Lang tagged: when contains(event.properties.tags, 'vip'): cannot be "
                                          "evaluated on this event: JMESPathTypeError")
    assert [o.status for o in engine.render_all(good, routes)] == ["send", "send"]   # the next event goes on


_ENGINES: dict = {}


def _tagged_engine(tmp_path_factory) -> Engine:
    if "engine" not in _ENGINES:
        root = write_mappings(tmp_path_factory.mktemp("tagged"), {
            "lang.yaml": HEAD + TAGGED,
            "plain.yaml": HEAD.replace("name: Lang", "name: Plain") + '  track:\n    request: {url: "https://p.test"}\n'
                                                                      '    body: {a: 1}\n'})
        _ENGINES["engine"] = Engine(root)
    return _ENGINES["engine"]
