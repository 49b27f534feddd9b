"""Property: whatever mapping ``validate`` accepts renders every fixture without an exception.

Mappings are generated from the value grammar of ``schemas/mapping.schema.json``
(literals, templates with filters, @path with fallbacks, @filter, @default, @if,
@each, @merge/@omit/@drop_empty, @literal, nested objects and lists, vars, request
parts). Each is loaded the way ``eventmap validate`` loads it; when it loads, every
fixture event is rendered through the generated code and the interpreter, shown
(masking) and batched: each must end send, skipped or rejected, never raise.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.problems import ConfigError

EVENTS = [json.loads(path.read_text(encoding="utf-8")) for path in sorted((REPO / "fixtures" / "events").glob("*.json"))]
PATHS = ["event." + p for p in ("userId", "anonymousId", "event", "type", "timestamp", "traits.email", "traits.name",
                                 "context.ip", "context.traits.email", "properties.total", "properties.products",
                                 "properties.products[0].sku", "properties.products[*].price", "properties",
                                 "nope.missing")] + ["event"]
ITEM_PATHS = ["item.sku", "item.price", "item.name", "item.quantity", "item", "item.missing"]
WORDS = ["", "a", "Order", "k", "0", "{}", "é ü", "-", "line\nbreak"]
# (filter, argument lists it may get): right and wrong arguments alike, validate decides
FILTER_ARGS = {
    "lower": [[]], "upper": [[]], "trim": [[]], "snake_case": [[]], "epoch_ms": [[]], "epoch_s": [[]],
    "iso8601": [[]], "date": [[]], "base64": [[]], "base64_decode": [[]], "sha256": [[]], "uuid5": [[]],
    "string": [[]], "number": [[]], "boolean": [[]], "compact": [[]], "url_segment": [[]], "user_agent": [[]],
    "hmac_sha256": [["k"], []], "hmac_sha1": [["k"]], "hmac_sha512_base64": [["k"]], "json": [[True], [False], ["x"]],
    "e164": [[], ["GB"]], "flatten": [[], ["_"]], "default": [["d"], [0]], "omit": [["email"], [["a", "b"]]],
    "pick": [["email"]], "split_name": [["first"], ["last"], ["middle"]], "replace": [["a", "b"], ["", "x"]],
    "replace_i": [["ORDER", "o"]], "try": [["number"], ["epoch_ms"], ["nope"]],
}

paths = st.sampled_from(PATHS)
template_paths = st.sampled_from([p for p in PATHS if "[" not in p and p != "event"])
filter_calls = st.sampled_from(sorted(FILTER_ARGS)).flatmap(
    lambda name: st.sampled_from(FILTER_ARGS[name]).map(lambda args: (name, args)))


def template_filter(call) -> str:
    name, args = call
    return f" | {name}({', '.join(json.dumps(a) for a in args)})" if args else f" | {name}"


templates = st.one_of(
    st.builds(lambda p, fs: "{{ " + p + "".join(template_filter(f) for f in fs) + " }}", template_paths,
              st.lists(filter_calls, max_size=2)),
    st.builds(lambda w, p: f"{w} {{{{ {p} }}}} {w}", st.sampled_from(WORDS), template_paths),
    st.sampled_from(["{{ settings.api_key }}", "{{ settings.base_url }}/x", "{{ vars.v }}", "{{ event.properties.total * 2 }}",
                     "{{ event.userId ~ '-' ~ event.event }}", "{% if event.traits %}{{ event.traits.email }}{% else %}none{% endif %}",
                     "{{ event.properties.order_id\n     | lower }}", "{{ event.properties.products | length }}",
                     "{{ 'ab' * 3 }}", "{{ event.context.ip | default('none') }}", "{{ event.traits._id }}"]),
)
literals = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(WORDS))


def path_directive(path_strategy):
    return st.builds(
        lambda p, fs, default: {"@path": p, **({"@filter": [n if not a else {n: a} for n, a in fs]} if fs else {}),
                                **({"@default": default} if default is not None else {})},
        st.one_of(path_strategy, st.lists(path_strategy, min_size=2, max_size=3)),
        st.lists(filter_calls, max_size=2), st.one_of(st.none(), literals))


def values(path_strategy):
    leaves = st.one_of(literals, templates, path_directive(path_strategy),
                       st.builds(lambda v: {"@literal": v}, literals))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c", "email"]), inner, max_size=3),
        st.builds(lambda obj, merge, omit, drop: {**obj, "@merge": merge, **({"@omit": omit} if omit else {}),
                                                  **({"@drop_empty": drop} if drop is not None else {})},
                  st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2), paths,
                  st.sampled_from([[], ["email"]]), st.one_of(st.none(), st.booleans())),
        st.builds(lambda cond, then, other: {"@if": cond, "@then": then, "@else": other},
                  st.sampled_from(["event.type == 'track'", "event.properties.total > `10`", "event.traits", "event.nope"]), inner, inner),
        st.builds(lambda items, each: {"@each": items, "@map": each},
                  st.sampled_from(["event.properties.products", "event.traits", "event.nope"]), each_values()),
    ), max_leaves=6)


def each_values():
    return st.one_of(path_directive(st.sampled_from(ITEM_PATHS)),
                     st.dictionaries(st.sampled_from(["id", "n"]), path_directive(st.sampled_from(ITEM_PATHS)),
                                     min_size=1, max_size=2),
                     st.sampled_from(["{{ item.sku }}", "{{ item.price * item.quantity }}"]))


mappings = st.builds(
    lambda var, body, header, query, required, call_type: {
        "name": "Prop",
        "settings": {"type": "object", "required": ["api_key"], "properties": {
            "api_key": {"type": "string", "secret": True},
            "base_url": {"type": "string", "default": "https://prop.test"}}},
        "defaults": {"request": {"url": "{{ settings.base_url }}/v1/{{ event.type }}", "headers": {"X-H": header},
                                 "query": {"q": query}, "auth": {"bearer": "{{ settings.api_key }}"}}},
        "actions": {call_type: {
            "vars": {"v": var},
            "body": body,
            **({"required": required} if required else {}),
        }},
        "batch": {"max_events": 3},
    },
    values(paths), values(paths), st.one_of(literals, templates), st.one_of(literals, templates),
    st.sampled_from([[], ["a"], ["vars.v"], ["email || a"]]), st.sampled_from(["track", "identify", "page"]),
)


# PROP_N=1000 explores more, with fresh random examples; by default the examples are the same every run
@settings(max_examples=int(os.environ.get("PROP_N", "100")), deadline=None, derandomize="PROP_N" not in os.environ, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mappings)
def test_what_validate_accepts_renders_every_fixture(mapping):
    with tempfile.TemporaryDirectory() as folder:
        destinations = Path(folder) / "destinations"
        destinations.mkdir()
        (destinations / "prop.yaml").write_text(json.dumps(mapping, ensure_ascii=False), encoding="utf-8")
        try:
            engine = Engine(folder)
        except ConfigError:
            return  # validate refused it, with problems: that is an answer too
    route = engine.route("prop", {"api_key": "k"}, environ={})
    destination = route.destination
    for _ in range(1):  # the generated code is the one semantics (the interpreter is gone)
        outcomes = [destination.render(event, route.settings, route.secrets) for event in EVENTS]
        for outcome in outcomes:
            assert outcome.status in ("send", "skipped", "rejected")
            json.dumps(outcome.to_dict(), ensure_ascii=False)
            for request in outcome.requests:
                request.encoded_body()
        for request in engine.batch(route, outcomes):
            request.to_dict()
            request.encoded_body()
