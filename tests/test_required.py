"""``required`` entries: messages are templates (as step reasons are), and keys such as ``$set`` are accepted.

Both ways an action runs are checked: its generated code bound to a route, and the node-by-node
interpreter a route falls back to when one of its settings-only values fails (here a header).
"""
from __future__ import annotations

import pytest
from conftest import write_mappings

from engine import ConfigError, Engine

DESTINATION = """\
name: Hub
settings:
  type: object
  properties:
    portal_id: {type: string}
    since: {type: string}
defaults:
  request:
    url: "https://hub.test/{{ settings.portal_id | url_segment }}"
    headers: {X-Since: "{{ settings.since | epoch_ms }}"}
actions:
  identify:
    vars:
      email: {"@path": event.traits.email}
    required:
      - path: properties.email
        message: "portal {{ settings.portal_id }}: the {{ event.type }} of {{ event.userId }} has no email"
      - path: vars.email
        message: a literal message
      - properties.$set
    body:
      properties:
        email: {"@path": vars.email}
        $set: {"@path": event.traits.plan}
  track:
    required: ["properties.$set || properties.$set_once", "properties.$set.a-b"]
    body:
      properties:
        $set_once: {"@path": event.properties.once}
        $set: {"@path": event.properties.set}
  page:
    required: ['properties."$email"']
    body:
      properties:
        $email: {"@path": event.properties.email}
  group:
    steps:
      write:
        requires:
          - path: event.traits.name
            message: "group {{ event.groupId }} in portal {{ settings.portal_id }} has no name"
        request: {url: "https://hub.test/groups"}
        body: {id: {"@path": event.groupId}}
        required:
          - path: id
            message: "{{ settings.portal_id }}: no id"
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(write_mappings(tmp_path_factory.mktemp("required"), {"hub.yaml": DESTINATION}))


# a good route runs the generated code; a route whose X-Since header fails runs the interpreter
ROUTES = {"compiled": {"portal_id": "p-77", "since": "2024-01-01T00:00:00Z"},
          "interpreted": {"portal_id": "p-77", "since": "not a date"}}


@pytest.mark.parametrize("way", ROUTES)
def test_a_required_message_is_a_template(engine, way):
    outcome = engine.render({"type": "identify", "userId": "u1", "messageId": "m1", "traits": {}},
                            engine.route("hub", ROUTES[way]))
    assert outcome.status == "rejected"
    assert [e.as_dict() for e in outcome.errors] == [
        {"path": "properties.email", "message": "portal p-77: the identify of u1 has no email"},
        {"path": "vars.email", "message": "a literal message"},
        {"path": "properties.$set",
         "message": "Hub identify: '$set' is required but missing or empty (mapped from path event.traits.plan)"}]


@pytest.mark.parametrize("way", ROUTES)
def test_a_key_with_a_dollar_is_a_field_path(engine, way):
    route = engine.route("hub", ROUTES[way])
    ok = engine.render({"type": "track", "event": "E", "userId": "u1", "messageId": "m1",
                        "properties": {"once": {"a-b": 1}, "set": {"a-b": 2}}}, route)
    if way == "compiled":
        assert ok.status == "send" and ok.requests[0].body == {"properties": {"$set_once": {"a-b": 1},
                                                                              "$set": {"a-b": 2}}}
    else:
        assert ok.status == "rejected" and "X-Since" in ok.errors[0].path
    only_once = engine.render({"type": "track", "event": "E", "userId": "u1", "messageId": "m1",
                               "properties": {"once": {"x": 1}}}, route)
    assert only_once.status == "rejected"
    assert [e.path for e in only_once.errors] == ["properties.$set.a-b"]


def test_step_messages_are_templates_too(engine):
    route = engine.route("hub", ROUTES["compiled"])
    missing_input = engine.render({"type": "group", "groupId": "g1", "userId": "u1", "messageId": "m1"}, route)
    assert [e.as_dict() for e in missing_input.errors] == [
        {"path": "event.traits.name", "message": "group g1 in portal p-77 has no name"}]


def test_a_field_path_that_is_not_one_says_why(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = DESTINATION.replace("      - properties.$set\n", "      - properties.[x\n")
    with pytest.raises(ConfigError) as refused:
        Engine(write_mappings(tmp_path, {"hub.yaml": text}))
    [problem] = refused.value.problems
    assert str(problem).startswith("mappings/destinations/hub.yaml:20: actions.identify.required[2]: "
                                   "'properties.[x' is not a valid field path: ")


def test_a_quoted_key_names_the_field_as_the_plain_one_does(engine):
    outcome = engine.render({"type": "page", "userId": "u1", "messageId": "m1", "properties": {}},
                            engine.route("hub", ROUTES["compiled"]))
    assert [e.as_dict() for e in outcome.errors] == [
        {"path": 'properties."$email"',
         "message": "Hub page: '$email' is required but missing or empty (mapped from path event.properties.email)"}]


def test_a_negated_scope_in_required_is_refused_with_the_spelling_to_use(tmp_path):
    """Issue 22 item 1: `!` before a name negates that name alone, in required as everywhere else."""
    from engine.load.destination import load_destination
    path = tmp_path / "neg.yaml"
    path.write_text(
        "name: Neg\n"
        "settings: {type: object, properties: {base_url: {type: string}}}\n"
        "actions:\n"
        "  track:\n"
        "    request: {url: 'https://x.example/t'}\n"
        "    body: {a: {'@path': event.event}}\n"
        "    required: ['!a.b']\n", encoding="utf-8")
    destination, problems = load_destination(path)
    assert destination is None
    assert any("write '!(a.b)'" in str(p) and ":7:" in str(p) for p in problems), [str(p) for p in problems]


def test_one_of_several_vars_is_accepted_and_checked(tmp_path):
    """'vars.a || vars.b' was refused at load as naming an unknown variable ('a || vars')."""
    from engine import Engine
    folder = tmp_path / "destinations"
    folder.mkdir()
    (folder / "t.yaml").write_text(
        "name: T\n"
        "settings: {type: object, properties: {base_url: {type: string}}}\n"
        "actions:\n"
        "  track:\n"
        "    vars: {a: {'@path': event.properties.a}, b: {'@path': event.properties.b}}\n"
        "    required: ['vars.a || vars.b']\n"
        "    request: {url: 'https://x.example/t'}\n"
        "    body: {x: 1}\n", encoding="utf-8")
    engine = Engine(tmp_path)
    route = engine.route("t", {})
    event = {"type": "track", "event": "e", "userId": "u", "messageId": "m", "timestamp": "2024-01-01T00:00:00Z"}
    assert engine.render({**event, "properties": {"b": "x"}}, route).status == "send"
    outcome = engine.render({**event, "properties": {"a": ""}}, route)
    assert outcome.status == "rejected" and "vars.a || vars.b" in outcome.errors[0].path


def test_an_entry_mixing_vars_and_body_fields_is_refused_at_load(tmp_path):
    from engine.load.destination import load_destination
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: T\n"
        "settings: {type: object, properties: {base_url: {type: string}}}\n"
        "actions:\n"
        "  track:\n"
        "    vars: {a: {'@path': event.userId}}\n"
        "    required: ['vars.a || x']\n"
        "    request: {url: 'https://x.example/t'}\n"
        "    body: {x: 1}\n", encoding="utf-8")
    destination, problems = load_destination(path)
    assert destination is None and any("mixes vars and fields" in str(p) and ":6:" in str(p) for p in problems)
