"""Edges found using the catalogue: each a one-line answer, never a traceback or a repeated line."""
from __future__ import annotations

from engine import Engine
from engine.load.destination import load_destination


def write(folder, name: str, text: str):
    (folder / "destinations").mkdir(exist_ok=True)
    path = folder / "destinations" / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_each_missing_top_level_key_is_named_once(tmp_path):
    path = write(tmp_path, "u", "name: U\n")
    _, problems = load_destination(path)
    assert [p.message for p in problems] == ["'settings' is required", "'actions' is required"]


def test_a_bare_on_as_a_key_says_how_to_write_it(tmp_path):
    path = write(tmp_path, "u", "on: 1\nname: U\nsettings: {type: object}\nactions: {}\n")
    _, problems = load_destination(path)
    assert any("a key YAML reads as true" in str(p) and "quote it" in str(p) for p in problems), problems


def test_a_step_condition_that_cannot_be_evaluated_rejects_the_event_alone(tmp_path):
    write(tmp_path, "t", "name: T\n"
                         "settings: {type: object, properties: {base_url: {type: string}}}\n"
                         "actions:\n"
                         "  track:\n"
                         "    steps:\n"
                         "      one:\n"
                         "        when: \"contains(event.properties.plan, 'pro')\"\n"
                         "        request: {url: 'https://x.example/t'}\n"
                         "        body: {x: 1}\n")
    engine = Engine(tmp_path)
    route = engine.route("t", {})
    event = {"type": "track", "event": "e", "userId": "u", "messageId": "m"}
    outcome = engine.render(event, route)
    assert outcome.status == "rejected"
    assert outcome.errors[0].path == "steps.one.when" and "cannot be evaluated" in outcome.errors[0].message
    assert engine.render({**event, "properties": {"plan": "pro"}}, route).status == "send"
