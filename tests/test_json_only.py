"""No Jinja2 value reaches a request (issue 22): whatever template or filter a mapping that loads uses, on
whatever event, every result is plain JSON data or the event's rejection with a reason, never an exception.

Templates are generated from Jinja2's own builtins that make non-JSON values (map without list, range,
items, batch, groupby, a dict with a missing value, select, first of nothing) and from every built-in
filter with right and wrong arguments, over generated events.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from conftest import write_mappings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.map.filters import BUILTIN_FILTERS
from engine.problems import ConfigError

HEAD = """\
name: Json
settings: {type: object, properties: {}}
batch: {max_events: 5, request: {url: 'https://json.test/batch'}}
actions:
  track:
    request: {url: 'https://json.test/t', headers: {X-A: "{{ event.properties.a }}"}}
    body:
"""

READS = ["event.properties.a", "event.properties.b", "event.properties.items", "event.properties.missing",
         "event.properties", "event.userId"]
MAKERS = [  # {} is one read
    "{} | map(attribute='id')", "{} | map(attribute='id') | list", "{} | select | list", "{} | select",
    "{} | reject", "range(3)", "{} | items", "{} | list", "{} | batch(2)", "{} | batch(2) | list",
    "{} | groupby('k')", "{} | first", "{} | last", "{} | dictsort", "{{'k': {}, 'n': [{}, 1]}}",
    "[{}, {}] | unique | list", "{} | tojson", "{} | sum", "{} | min", "{} | length", "{} ~ {}",
    "{} or {}", "{} and {}", "not {}", "{} | string", "{} | join(',')", "{} is defined", "{}[0]",
    "{} | attr('x')", "{} | default({})", "{} | float", "{} | int", "{} | round", "{} | abs", "{} | reverse",
    "({} if {} else {})", "{} | dict", "{} | wordcount", "{} | slice(2)",
]
ARGUMENTS = [[], ["k"], [0], [True], ["first"], ["a", "b"], ["[a-z]+", "_"], ["(a", ""]]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(["", "a", "id", "2024-01-02T03:04:05Z", "{{ x }}", "None"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["id", "k", "a", "x"]), inner, max_size=3)),
    max_leaves=8)


def maker(text: str, reads: list[str]) -> str:
    return text.format(*reads[:text.count("{}")]) if "{}" in text else text


templates = st.one_of(
    st.builds(lambda m, reads: "{{ " + maker(m, reads) + " }}", st.sampled_from(MAKERS),
              st.lists(st.sampled_from(READS), min_size=4, max_size=4)),
    st.builds(lambda m, reads: "text " + "{{ " + maker(m, reads) + " }}", st.sampled_from(MAKERS),
              st.lists(st.sampled_from(READS), min_size=4, max_size=4)),
    st.builds(lambda read, name, args: "{{ " + read + " | " + name + "(" + ", ".join(json.dumps(a) for a in args) + ") }}",
              st.sampled_from(READS), st.sampled_from(sorted(BUILTIN_FILTERS)), st.sampled_from(ARGUMENTS)),
)


def plain(value) -> bool:
    """JSON data only: the types json.loads gives, at any depth, and finite numbers."""
    if value is None or type(value) in (str, bool, int):
        return True
    if type(value) is float:
        return value == value and value not in (float("inf"), float("-inf"))
    if type(value) is list:
        return all(plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and plain(v) for k, v in value.items())
    return False


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(templates, min_size=1, max_size=4), st.lists(
    st.fixed_dictionaries({"a": json_values, "b": json_values, "items": json_values}), min_size=1, max_size=3))
def test_every_result_is_json_data_or_a_rejection_with_a_reason(fields, properties):
    body = "".join(f"      f{i}: {json.dumps(t)}\n" for i, t in enumerate(fields))
    with tempfile.TemporaryDirectory() as folder:
        try:
            engine = Engine(write_mappings(Path(folder), {"json.yaml": HEAD + body}))
        except ConfigError as exc:  # validate refuses it, with its problems: about the generated fields only
            assert all(p.path.startswith("actions.track.body.f") for p in exc.problems), str(exc)
            return
        route = engine.route("json", {}, environ={})
        events = [{"type": "track", "event": "E", "userId": "u", "messageId": f"m{i}", "properties": p}
                  for i, p in enumerate(properties)]
        outcomes = [engine.render(event, route) for event in events]
        for outcome in outcomes:
            assert outcome.status in ("send", "rejected"), outcome.to_dict()
            if outcome.status == "rejected":
                assert outcome.errors and all(e.message for e in outcome.errors)
                continue
            assert all(plain(item) for item in outcome.items), outcome.items
            for request in outcome.requests:
                assert plain(request.body) and all(type(v) is str for v in request.headers.values())
                json.loads(request.encoded_body())
            json.dumps(outcome.to_dict(), allow_nan=False)
        for request in engine.batch(route, outcomes):
            assert plain(request.body)
            json.loads(request.encoded_body())
