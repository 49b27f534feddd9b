"""The language has one definition: the directive registry and the filters' docstrings.

docs/language.md and the mapping schema are generated from it (and checked
here), every documented example runs through a real destination, and the one
emptiness rule holds in every place that decides "empty".
"""
from __future__ import annotations

import json

import pytest
import yaml
from conftest import write_mappings
from test_language import HEAD

from engine import Engine, register_function
from engine.map import reference
from engine.map.filters import BUILTIN_FILTERS, FILTERS
from engine.map.language import DIRECTIVES, MODIFIERS, OBJECT_OPTIONS, directive_keys
from engine.problems import ConfigError

TRACK = {"type": "track", "event": "Example", "userId": "u1", "messageId": "m1"}


@register_function("example_full_name")
def example_full_name(first=None, last=None):
    """The function @function's documented example calls."""
    return " ".join(part for part in (first, last) if part)


def render_value(tmp_path, value, event: dict, more: str = ""):
    """Map ``{"out": value}`` for a track event through a real destination file; the outcome."""
    body = yaml.safe_dump({"out": value}, default_flow_style=True, width=10_000)
    text = (HEAD + "actions:\n  track:\n    request: {url: 'https://lang.test/track'}\n" + more
            + f"    body: {body}")
    engine = Engine(write_mappings(tmp_path, {"lang.yaml": text}))
    return engine.render({**TRACK, **event}, "lang", {"secret": "s"})


def rendered(tmp_path, value, event: dict, more: str = ""):
    outcome = render_value(tmp_path, value, event, more)
    assert outcome.status == "send", outcome.to_dict()
    return outcome.items[0].get("out")


# --------------------------------------------------------------------------- generated from the registry

def test_the_language_reference_page_agrees_with_the_registry():
    text = reference.DOCS.read_text(encoding="utf-8")
    assert reference.with_docs(text) == text, "run: python -m engine.map.reference --write-docs"
    for key in directive_keys():
        assert f"`{key}`" in text


def test_the_mapping_schema_agrees_with_the_registry():
    text = reference.SCHEMA.read_text(encoding="utf-8")
    assert reference.with_schema(text) == text, "run: python -m engine.map.reference --write-schema"
    value = json.loads(text)["$defs"]["value"]
    assert set(value["anyOf"][1]["propertyNames"]["anyOf"][1]["enum"]) == directive_keys()


def test_the_reference_command_checks_and_rewrites(tmp_path, monkeypatch):
    assert reference.main([]) == 0
    stale = tmp_path / "language.md"
    stale.write_text(f"intro\n{reference.BEGIN}\nold text\n{reference.END}\nafter\n", encoding="utf-8")
    monkeypatch.setattr(reference, "DOCS", stale)
    assert reference.main([]) == 1
    assert reference.main(["--write-docs"]) == 0
    written = stale.read_text(encoding="utf-8")
    assert written.startswith("intro\n") and written.endswith("after\n") and "old text" not in written
    assert "- **`@map_values`**" in written and "- **`lower`**" in written


# --------------------------------------------------------------------------- every example runs

EXAMPLES = [(cls.key, cls.example) for cls in DIRECTIVES.values()] + \
           [(option.key, option.example) for option in (*MODIFIERS.values(), *OBJECT_OPTIONS.values())]


@pytest.mark.parametrize(("key", "example"), EXAMPLES, ids=[key for key, _ in EXAMPLES])
def test_each_directives_documented_example_gives_its_output(tmp_path, key, example):
    assert key in json.dumps(example["mapping"])
    assert rendered(tmp_path, example["mapping"], example["event"]) == example["output"]


@pytest.mark.parametrize("name", sorted(BUILTIN_FILTERS))
def test_each_built_in_filter_has_an_example_that_holds_in_yaml_and_in_templates(tmp_path, name):
    example = reference.filter_example(name)
    assert example is not None, f"filter {name!r}: add 'Example: <value> | {name}(<args>) -> <result>' to its docstring"
    assert reference.filter_summary(name) and not reference.filter_summary(name).startswith("Example:")
    assert FILTERS[name](example.value, *example.args) == example.result
    as_filter = {"@path": "event.properties.value", "@filter": {name: example.args} if example.args else name}
    assert rendered(tmp_path / "yaml", as_filter, {"properties": {"value": example.value}}) == example.result
    args = f"({', '.join(json.dumps(a) for a in example.args)})" if example.args else ""
    template = "{{ event.properties.value | " + name + args + " }}"
    got = rendered(tmp_path / "template", template, {"properties": {"value": example.value}})
    assert got == example.result


def test_a_filter_whose_example_names_another_filter_is_reported(monkeypatch):
    def shout(value):
        """Loud text.

        Example: "a" | upper() -> "A"
        """
        return value.upper()
    monkeypatch.setitem(FILTERS, "shout_example_test", shout)
    with pytest.raises(ValueError, match="calls 'upper'"):
        reference.filter_example("shout_example_test")


# --------------------------------------------------------------------------- one emptiness rule

EMPTY_CASES = {"null": None, "empty_text": "", "list": [], "object": {}}
VALUE_CASES = {"false": False, "zero": 0, "text": "x"}


@pytest.mark.parametrize("kind", list(EMPTY_CASES) + list(VALUE_CASES))
def test_every_fallback_follows_the_one_emptiness_rule(tmp_path, kind):
    value = {**EMPTY_CASES, **VALUE_CASES}[kind]
    want = "fallback" if kind in EMPTY_CASES else value
    event = {"properties": {"a": value, "b": "fallback"}}
    body = {
        "list": {"@path": ["event.properties.a", "event.properties.b"]},
        "or": {"@path": "event.properties.a || event.properties.b"},
        "default": {"@path": "event.properties.a", "@default": "fallback"},
        "filter": {"@path": "event.properties.a", "@filter": {"default": ["fallback"]}},
        "template_or": "{{ event.properties.a or event.properties.b }}",
        "template_default": "{{ event.properties.a | default('fallback') }}",
        "jinja_or": "{% if true %}{{ (event.properties.a or event.properties.b) | tojson }}{% endif %}",
    }
    got = rendered(tmp_path, body, event)
    assert {k: v for k, v in got.items() if k != "jinja_or"} == dict.fromkeys(
        ["list", "or", "default", "filter", "template_or", "template_default"], want)
    assert json.loads(got["jinja_or"]) == want  # Jinja2's own code path, not the translated subset


@pytest.mark.parametrize("kind", list(EMPTY_CASES) + list(VALUE_CASES))
def test_required_and_drop_empty_follow_the_same_rule(tmp_path, kind):
    value = {**EMPTY_CASES, **VALUE_CASES}[kind]
    empty = kind in EMPTY_CASES
    more = "    required: [a, 'a || none']\n"
    outcome = render_value(tmp_path, {"@path": "event.properties.a"}, {"properties": {"a": value}},
                           more=more.replace("[a,", "[out,").replace("'a ||", "'out ||"))
    assert outcome.status == ("rejected" if empty else "send"), outcome.to_dict()
    dropped = rendered(tmp_path / "drop", {"@drop_empty": True, "a": {"@path": "event.properties.a"}},
                       {"properties": {"a": value}})
    assert dropped == ({} if empty else {"a": value})


def test_an_or_inside_a_larger_path_is_refused_with_a_hint(tmp_path):
    with pytest.raises(ConfigError) as error:
        render_value(tmp_path, {"@path": "event.properties.list[?a || b]"}, {})
    message = str(error.value)
    assert "lang.yaml:" in message and "actions.track.body.out.@path" in message
    assert "'||' inside an expression would skip false; write the fallbacks as a list instead" in message


def test_an_or_inside_a_larger_required_path_is_refused_with_a_hint(tmp_path):
    with pytest.raises(ConfigError) as error:
        render_value(tmp_path, "x", {}, more="    required: ['out || (a || b).c']\n")
    assert "lang.yaml:10: actions.track.required[0]: 'out || (a || b).c': '||' inside an expression would skip false" \
        in str(error.value)


# --------------------------------------------------------------------------- @map_values

def test_map_values_maps_one_level_unless_deep(tmp_path):
    mapper = {"@if": "type(item) == 'number'", "@then": "{{ item * 10 }}", "@else": {"@path": "item"}}
    event = {"properties": {"n": 1, "inner": {"m": 2, "list": [3, {"k": 4}]}, "gone": None}}
    shallow = rendered(tmp_path / "shallow", {"@map_values": "event.properties", "@map": mapper}, event)
    assert shallow == {"n": 10, "inner": {"m": 2, "list": [3, {"k": 4}]}}  # null results are left out
    deep = rendered(tmp_path / "deep", {"@map_values": "event.properties", "@map": mapper, "@deep": True}, event)
    assert deep == {"n": 10, "inner": {"m": 20, "list": [30, {"k": 40}]}}


def test_map_values_turns_iso_dates_into_unix_time_at_any_depth(tmp_path):
    """Customer.io's attributes: every ISO date, however deep, becomes seconds since the epoch."""
    is_date = "type(item) == 'string' && length(item) == `20` && contains(item, 'T') && ends_with(item, 'Z')"
    mapper = {"@if": is_date, "@then": {"@path": "item", "@filter": "epoch_s"}, "@else": {"@path": "item"}}
    event = {"traits": {"created_at": "2024-01-02T03:04:05Z", "name": "Ann",
                        "plan": {"renews_at": "2024-01-02T03:04:06Z", "seats": 3}}}
    got = rendered(tmp_path, {"@map_values": "event.traits", "@deep": True, "@map": mapper}, event)
    assert got == {"created_at": 1704164645, "name": "Ann", "plan": {"renews_at": 1704164646, "seats": 3}}


def test_map_values_of_something_else_is_rejected_with_the_field_and_type(tmp_path):
    outcome = render_value(tmp_path, {"@map_values": "event.properties.a", "@map": {"@path": "item"}},
                           {"properties": {"a": [1]}})
    assert outcome.status == "rejected"
    assert [(e.path, e.message) for e in outcome.errors] == [
        ("actions.track.body.out", "Lang track: @map_values expected an object, got a list")]
    assert rendered(tmp_path / "none", {"@map_values": "event.properties.a", "@map": {"@path": "item"}}, {}) is None


def test_map_values_without_map_or_with_a_bad_deep_is_a_load_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        render_value(tmp_path, {"@map_values": "event.properties", "@deep": "yes"}, {})
    message = str(error.value)
    assert "actions.track.body.out: @map_values needs @map: how to map each value" in message
    assert "actions.track.body.out.@deep" in message
