"""The mapping language, through the public interface.

Each test writes a small destination file into a tmp mappings folder, loads it
with ``engine.Engine(dir)``, renders an event and checks the exact body.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import textwrap
import uuid

import pytest

import engine
from engine import Engine

from conftest import write_mappings

HEAD = """\
name: Lang
settings:
  type: object
  properties:
    secret: {type: string, secret: true}
    region: {type: string, default: eu}
"""

EVENT = {
    "type": "track",
    "event": "Cart Built",
    "userId": "u1",
    "messageId": "m1",
    "timestamp": "2024-01-02T03:04:05Z",
    "properties": {
        "total": 12.5,
        "count": 3,
        "empty": "",
        "zero": 0,
        "no": False,
        "nil": None,
        "tags": [],
        "currency": "EUR",
        "products": [
            {"sku": "A", "price": 1.5, "qty": 2},
            {"sku": "B", "price": 2, "qty": 1},
        ],
    },
    "context": {"traits": {"email": "Ann@Example.com"}},
}


def event(**changes) -> dict:
    data = copy.deepcopy(EVENT)
    data.update(changes)
    return data


def load(tmp_path, actions: str, extra: str = "") -> Engine:
    """A destination 'lang' with the given ``actions:`` block (and extra top-level YAML)."""
    text = HEAD + textwrap.dedent(extra) + "actions:\n" + textwrap.indent(textwrap.dedent(actions), "  ")
    return Engine(write_mappings(tmp_path, {"lang.yaml": text}))


def track_action(body: str, more: str = "") -> str:
    return ("track:\n  request: {url: 'https://lang.test/track'}\n" + textwrap.indent(textwrap.dedent(more), "  ")
            + "  body:\n" + textwrap.indent(textwrap.dedent(body), "    "))


def outcome_of(tmp_path, body: str, evt: dict | None = None, settings: dict | None = None, more: str = ""):
    return load(tmp_path, track_action(body, more)).render(evt or event(), "lang", settings or {})


def body_of(tmp_path, body: str, evt: dict | None = None, settings: dict | None = None, more: str = ""):
    outcome = outcome_of(tmp_path, body, evt, settings, more)
    assert outcome.status == "send", outcome.to_dict()
    assert len(outcome.requests) == 1
    return outcome.requests[0].body


# --------------------------------------------------------------------------- literals and templates

def test_literals_keep_their_type(tmp_path):
    assert body_of(tmp_path, """
        n: 5
        f: 1.25
        yes_: true
        no_: false
        s: plain text
        lst: [1, "two", false]
    """) == {"n": 5, "f": 1.25, "yes_": True, "no_": False, "s": "plain text", "lst": [1, "two", False]}


def test_plain_strings_are_literal_even_when_they_look_like_paths(tmp_path):
    assert body_of(tmp_path, """
        a: userId
        b: "$.userId"
        c: "@path"
        d: "{ event }"
        e: "properties.total"
    """) == {"a": "userId", "b": "$.userId", "c": "@path", "d": "{ event }", "e": "properties.total"}


def test_template_with_text_renders_a_string(tmp_path):
    assert body_of(tmp_path, """
        greeting: "Hi {{ event.event }}!"
        count: "n={{ event.properties.count }}"
        region: "{{ settings.region }}-{{ event.userId }}"
    """) == {"greeting": "Hi Cart Built!", "count": "n=3", "region": "eu-u1"}


def test_whole_expression_keeps_the_type(tmp_path):
    assert body_of(tmp_path, """
        total: "{{ event.properties.total }}"
        count: "  {{ event.properties.count }}  "
        falsy: "{{ event.properties.no }}"
        products: "{{ event.properties.products | length }}"
        doubled: "{{ event.properties.count * 2 }}"
        obj: "{{ event.context.traits }}"
    """) == {"total": 12.5, "count": 3, "falsy": False, "products": 2, "doubled": 6,
             "obj": {"email": "Ann@Example.com"}}


def test_missing_value_renders_empty_text_and_a_missing_whole_value_is_left_out(tmp_path):
    assert body_of(tmp_path, """
        in_text: "[{{ event.properties.nope }}]"
        deep_in_text: "[{{ event.properties.a.b.c }}]"
        null_in_text: "[{{ event.properties.nil }}]"
        whole_missing: "{{ event.properties.nope }}"
        whole_null: "{{ event.properties.nil }}"
        kept: 1
    """) == {"in_text": "[]", "deep_in_text": "[]", "null_in_text": "[]", "kept": 1}


# --------------------------------------------------------------------------- @path, @default, @filter

def test_path_reads_a_jmespath_expression(tmp_path):
    assert body_of(tmp_path, """
        sku: {"@path": "event.properties.products[0].sku"}
        cheap: {"@path": "event.properties.products[?price < `2`].sku"}
        n: {"@path": "length(event.properties.products)"}
        email: {"@path": event.context.traits.email}
        missing: {"@path": event.properties.nope.deeper}
    """) == {"sku": "A", "cheap": ["A"], "n": 2, "email": "Ann@Example.com"}


def test_path_fallbacks_take_the_first_non_empty(tmp_path):
    assert body_of(tmp_path, """
        skips_empty_and_null: {"@path": [event.properties.empty, event.properties.nil, event.properties.nope, event.properties.tags, event.properties.currency]}
        false_is_kept: {"@path": [event.properties.empty, event.properties.no, event.properties.currency]}
        zero_is_kept: {"@path": [event.properties.nil, event.properties.zero, event.properties.count]}
        first_wins: {"@path": [event.userId, event.properties.currency]}
        none_found: {"@path": [event.properties.empty, event.properties.nil]}
    """) == {"skips_empty_and_null": "EUR", "false_is_kept": False, "zero_is_kept": 0, "first_wins": "u1"}


def test_default_replaces_missing_and_empty_values_only(tmp_path):
    assert body_of(tmp_path, """
        missing: {"@path": event.properties.nope, "@default": fallback}
        empty: {"@path": event.properties.empty, "@default": fallback}
        zero: {"@path": event.properties.zero, "@default": 99}
        present: {"@path": event.properties.currency, "@default": USD}
        template_default: {"@path": event.properties.nope, "@default": "{{ event.event }} default"}
    """) == {"missing": "fallback", "empty": "fallback", "zero": 0, "present": "EUR",
             "template_default": "Cart Built default"}


def test_filter_single_list_and_with_arguments(tmp_path):
    email = "Ann@Example.com"
    expected_hmac = hmac.new(b"k3y", email.encode(), hashlib.sha256).hexdigest()
    assert body_of(tmp_path, """
        lower: {"@path": event.context.traits.email, "@filter": lower}
        chain: {"@path": event.context.traits.email, "@filter": [trim, lower, sha256]}
        signed: {"@path": event.context.traits.email, "@filter": {hmac_sha256: ["{{ settings.secret }}"]}}
        count_text: {"@path": event.properties.count, "@filter": string}
        missing_stays_missing: {"@path": event.properties.nope, "@filter": [lower, sha256]}
    """, settings={"secret": "k3y"}) == {
        "lower": "ann@example.com",
        "chain": hashlib.sha256(b"ann@example.com").hexdigest(),
        "signed": expected_hmac,
        "count_text": "3",
    }


def test_default_filter_in_filter_directive_replaces_a_missing_value(tmp_path):
    assert body_of(tmp_path, """
        in_template: "{{ event.properties.nope | default('d') }}"
        in_directive: {"@path": event.properties.nope, "@filter": {default: ["d"]}}
    """) == {"in_template": "d", "in_directive": "d"}


def test_filter_then_default(tmp_path):
    assert body_of(tmp_path, """
        a: {"@path": event.properties.empty, "@filter": upper, "@default": none}
        b: {"@path": event.properties.currency, "@filter": lower, "@default": none}
    """) == {"a": "none", "b": "eur"}


# --------------------------------------------------------------------------- @if

def test_if_then_else_with_a_jmespath_comparison(tmp_path):
    assert body_of(tmp_path, """
        kind: {"@if": "event.type == 'track'", "@then": "a track", "@else": "other"}
        other: {"@if": "event.type == 'page'", "@then": "a page", "@else": "not a page"}
        no_else: {"@if": "event.type == 'page'", "@then": "a page"}
        numeric: {"@if": "event.properties.count > `2`", "@then": {"@path": event.properties.count}, "@else": 0}
        truthy_empty: {"@if": event.properties.empty, "@then": set, "@else": unset}
        nested_then:
          "@if": event.properties.currency
          "@then": {code: {"@path": event.properties.currency, "@filter": lower}}
    """) == {"kind": "a track", "other": "not a page", "numeric": 3, "truthy_empty": "unset",
             "nested_then": {"code": "eur"}}


# --------------------------------------------------------------------------- @each

def test_each_maps_items_with_item_relative_paths_root_paths_and_item_in_templates(tmp_path):
    assert body_of(tmp_path, """
        lines:
          "@each": event.properties.products
          "@map":
            id: {"@path": item.sku}
            user: {"@path": "event.userId"}
            currency: {"@path": ["item.currency", "event.properties.currency"]}
            subtotal: "{{ item.price * item.qty }}"
            label: "{{ item.sku }} in {{ event.event }}"
            pricey: {"@if": "item.price > `1.9`", "@then": true, "@else": false}
    """) == {"lines": [
        {"id": "A", "user": "u1", "currency": "EUR", "subtotal": 3.0, "label": "A in Cart Built", "pricey": False},
        {"id": "B", "user": "u1", "currency": "EUR", "subtotal": 2, "label": "B in Cart Built", "pricey": True},
    ]}


def test_each_over_a_missing_or_empty_list_is_left_out(tmp_path):
    # @each reads its list with @path, and @path treats an empty list as absent
    assert body_of(tmp_path, """
        missing: {"@each": event.properties.nope, "@map": {"@path": item.sku}}
        empty: {"@each": event.properties.tags, "@map": {"@path": item.sku}}
        skus: {"@each": event.properties.products, "@map": {"@path": item.sku}}
        all_dropped: {"@each": event.properties.products, "@map": {"@path": item.nope}}
    """) == {"skus": ["A", "B"], "all_dropped": []}


# --------------------------------------------------------------------------- objects

def test_merge_with_omit_and_explicit_keys_winning(tmp_path):
    assert body_of(tmp_path, """
        info:
          "@merge": event.properties
          "@omit": [products, empty, tags]
          total: 99
          extra: {"@path": event.event}
    """) == {"info": {"count": 3, "zero": 0, "no": False, "currency": "EUR", "total": 99, "extra": "Cart Built"}}


def test_null_values_are_dropped_from_objects_and_lists(tmp_path):
    assert body_of(tmp_path, """
        a: null
        b: {"@path": event.properties.nope}
        c: {"@path": event.properties.nil}
        d: "{{ event.properties.nil }}"
        path_to_empty_text: {"@path": event.properties.empty}
        kept_empty_text: "{{ event.properties.empty }}"
        kept_false: {"@path": event.properties.no}
        lst: [1, null, {"@path": event.properties.nope}, 2]
    """) == {"kept_empty_text": "", "kept_false": False, "lst": [1, 2]}


def test_drop_empty_drops_empty_text_lists_and_objects_but_not_zero_or_false(tmp_path):
    assert body_of(tmp_path, """
        "@drop_empty": true
        e1: {"@path": event.properties.empty}
        e2: {"@path": event.properties.tags}
        e3: {inner: {"@path": event.properties.nope}}
        e4: ""
        zero: {"@path": event.properties.zero}
        falsy: {"@path": event.properties.no}
        keep: x
        not_inherited: {value: ""}
    """) == {"zero": 0, "falsy": False, "keep": "x", "not_inherited": {"value": ""}}


def test_nested_objects(tmp_path):
    assert body_of(tmp_path, """
        user:
          id: {"@path": event.userId}
          contact:
            email: {"@path": event.context.traits.email, "@filter": lower}
            missing: {"@path": event.context.traits.phone}
          empty_obj: {}
    """) == {"user": {"id": "u1", "contact": {"email": "ann@example.com"}, "empty_obj": {}}}


def test_literal_escapes_directives_and_templates(tmp_path):
    assert body_of(tmp_path, """
        raw: {"@literal": {"@path": userId, "t": "{{ event }}"}}
        text: {"@literal": "{{ not a template }}"}
        lst: {"@literal": [{"@if": x}]}
    """) == {"raw": {"@path": "userId", "t": "{{ event }}"}, "text": "{{ not a template }}", "lst": [{"@if": "x"}]}


# --------------------------------------------------------------------------- vars and required

def test_vars_feed_the_url_later_vars_and_the_body(tmp_path):
    eng = load(tmp_path, """
        track:
          vars:
            sku: {"@path": "event.properties.products[0].sku"}
            path: "orders/{{ vars.sku | lower }}"
          request: {url: "https://lang.test/{{ settings.region }}/{{ vars.path }}"}
          required: [vars.sku]
          body:
            sku: "{{ vars.sku }}"
    """)
    outcome = eng.render(event(), "lang", {})
    assert outcome.status == "send"
    # a var made from the event is one path segment, its '/' escaped too (docs/language.md, Values in URLs)
    assert outcome.requests[0].url == "https://lang.test/eu/orders%2Fa"
    assert outcome.requests[0].body == {"sku": "A"}


def test_required_var_missing_rejects_with_the_default_message(tmp_path):
    eng = load(tmp_path, """
        track:
          vars:
            v: {"@path": event.properties.nope}
          request: {url: "https://lang.test/x"}
          required: [vars.v]
          body: {a: 1}
    """)
    outcome = eng.render(event(), "lang", {})
    assert outcome.status == "rejected"
    assert outcome.requests == []
    assert [e.as_dict() for e in outcome.errors] == [
        {"path": "vars.v", "message": "Lang track: 'v' is required but missing or empty (from path event.properties.nope)"}]


def test_required_with_custom_and_default_messages(tmp_path):
    evt = event(anonymousId="a1")
    del evt["userId"]
    outcome = outcome_of(tmp_path, """
        id: {"@path": [event.userId, event.properties.nope], "@filter": lower}
        cur: {"@path": event.properties.nope}
        nested:
          deep: "{{ event.properties.nope }}"
        ok: {"@path": event.properties.currency}
    """, evt, more="""
        required:
          - path: cur
            message: a currency is required
          - id
          - nested.deep
          - ok
    """)
    assert outcome.status == "rejected"
    assert outcome.reason == "required fields are missing"
    assert [e.as_dict() for e in outcome.errors] == [
        {"path": "cur", "message": "a currency is required"},
        {"path": "id", "message": "Lang track: 'id' is required but missing or empty "
                                  "(mapped from path event.userId | else event.properties.nope | lower)"},
        {"path": "nested.deep", "message": "Lang track: 'deep' is required but missing or empty "
                                           "(mapped from template {{ event.properties.nope }})"},
    ]


def test_required_jmespath_or_is_satisfied_by_either_field(tmp_path):
    outcome = outcome_of(tmp_path, """
        email: {"@path": event.context.traits.email}
    """, more="""
        required: [externalId || email]
    """)
    assert outcome.status == "send"
    assert outcome.requests[0].body == {"email": "Ann@Example.com"}


# --------------------------------------------------------------------------- envelope and batch

ENVELOPE = """\
envelope:
  body:
    data: {"@path": items}
    count: "{{ items | length }}"
    region: "{{ settings.region }}"
"""


def test_envelope_wraps_the_single_item(tmp_path):
    eng = load(tmp_path, track_action("n: {'@path': event.properties.count}"), extra=ENVELOPE)
    outcome = eng.render(event(), "lang", {})
    assert outcome.status == "send"
    assert outcome.requests[0].body == {"data": [{"n": 3}], "count": 1, "region": "eu"}


def numbered(i: int) -> dict:
    return {"type": "track", "event": "E", "userId": f"u{i}", "messageId": f"m{i}", "properties": {"n": i}}


def test_batch_groups_by_max_events_and_wraps_items_in_the_envelope(tmp_path):
    eng = load(tmp_path, track_action("n: {'@path': event.properties.n}"), extra=ENVELOPE + """\
batch:
  max_events: 2
  request: {url: "https://lang.test/bulk?c={{ items | length }}"}
""")
    route = eng.route("lang", {})
    outcomes = [eng.render(numbered(i), route) for i in range(5)]
    requests = eng.batch(route, outcomes)
    assert [(r.url, r.message_ids, r.body, r.action) for r in requests] == [
        ("https://lang.test/bulk?c=2", ("m0", "m1"), {"data": [{"n": 0}, {"n": 1}], "count": 2, "region": "eu"}, "batch"),
        ("https://lang.test/bulk?c=2", ("m2", "m3"), {"data": [{"n": 2}, {"n": 3}], "count": 2, "region": "eu"}, "batch"),
        ("https://lang.test/bulk?c=1", ("m4",), {"data": [{"n": 4}], "count": 1, "region": "eu"}, "batch"),
    ]


def test_batch_groups_by_max_bytes_and_skips_unsendable_outcomes(tmp_path):
    # each item encodes as {"n":0} = 7 bytes; 20 bytes fit two of them, not three
    eng = load(tmp_path, track_action("n: {'@path': event.properties.n}", "required: [n]\n"), extra="""\
batch:
  max_events: 100
  max_bytes: 20
  request: {url: "https://lang.test/bulk"}
""")
    route = eng.route("lang", {})
    events = [numbered(i) for i in range(5)]
    del events[2]["properties"]  # rejected: n is required
    outcomes = [eng.render(e, route) for e in events]
    assert [o.status for o in outcomes] == ["send", "send", "rejected", "send", "send"]
    requests = eng.batch(route, outcomes)
    assert [(r.message_ids, r.body) for r in requests] == [
        (("m0", "m1"), [{"n": 0}, {"n": 1}]),
        (("m3", "m4"), [{"n": 3}, {"n": 4}]),
    ]


def test_batch_body_never_exceeds_max_bytes(tmp_path):
    # regression: the sizes of single-event bodies used to be summed, so '[', ',' and ']' pushed a batch over
    eng = load(tmp_path, track_action("n: {'@path': event.properties.n}"), extra="""\
batch:
  max_events: 100
  max_bytes: 14
  request: {url: "https://lang.test/bulk"}
""")
    route = eng.route("lang", {})
    requests = eng.batch(route, [eng.render(numbered(i), route) for i in range(4)])
    assert [len(r.encoded_body()) for r in requests] == [9, 9, 9, 9]  # [{"n":0}] alone is 9 bytes


def test_batch_max_bytes_counts_the_envelope(tmp_path):
    # a batch of k items is {"data":[...],"count":k,"region":"eu"}: 34 + 8k bytes, so 2 fit in 50
    eng = load(tmp_path, track_action("n: {'@path': event.properties.n}"), extra=ENVELOPE + """\
batch:
  max_events: 100
  max_bytes: 50
  request: {url: "https://lang.test/bulk"}
""")
    route = eng.route("lang", {})
    requests = eng.batch(route, [eng.render(numbered(i), route) for i in range(5)])
    assert [r.message_ids for r in requests] == [("m0", "m1"), ("m2", "m3"), ("m4",)]
    assert [len(r.encoded_body()) for r in requests] == [50, 50, 42]


# --------------------------------------------------------------------------- @function and filters

def test_function_registered_by_the_user(tmp_path):
    name = "sum_" + uuid.uuid4().hex[:8]

    @engine.register_function(name)
    def add(a, b=1):
        return {"sum": a + b}

    assert body_of(tmp_path, f"""
        fn: {{"@function": {name}, "@args": {{a: {{"@path": event.properties.count}}, b: 10}}}}
        fn_default: {{"@function": {name}, "@args": {{a: 1}}}}
    """) == {"fn": {"sum": 13}, "fn_default": {"sum": 2}}


def test_failing_function_rejects_the_event_with_a_message(tmp_path):
    name = "boom_" + uuid.uuid4().hex[:8]

    @engine.register_function(name)
    def boom():
        raise RuntimeError("no way")

    outcome = outcome_of(tmp_path, f'x: {{"@function": {name}}}')
    assert outcome.status == "rejected"
    assert [e.as_dict() for e in outcome.errors] == [
        {"path": "actions.track.body.x", "message": f"Lang track: function '{name}' failed: no way"}]


@pytest.mark.parametrize("body", [
    'when: {"@path": event.properties.bad, "@filter": epoch_ms}',
    'when: "{{ event.properties.bad | epoch_ms }}"',
    'when: "at {{ event.properties.bad | epoch_ms }}"',
])
def test_filter_failing_on_bad_data_rejects_with_message_and_path(tmp_path, body):
    outcome = outcome_of(tmp_path, body, event(properties={"bad": "2024-13-01"}))
    assert outcome.status == "rejected"
    assert outcome.reason == "the mapping could not be applied"
    assert outcome.requests == []
    assert [e.as_dict() for e in outcome.errors] == [
        {"path": "actions.track.body.when", "message": "Lang track: '2024-13-01' is not an ISO-8601 date-time"}]


def test_each_over_a_non_list_rejects(tmp_path):
    outcome = outcome_of(tmp_path, 'x: {"@each": event.properties.count, "@map": 1}')
    assert outcome.status == "rejected"
    assert [e.as_dict() for e in outcome.errors] == [
        {"path": "actions.track.body.x", "message": "Lang track: @each expected a list, got a number"}]


def test_user_filter_works_in_templates_and_in_filter_directive(tmp_path):
    name = "shout_" + uuid.uuid4().hex[:8]

    @engine.register_filter(name)
    def shout(value, suffix="!"):
        return str(value).upper() + suffix

    assert body_of(tmp_path, f"""
        in_template: "{{{{ event.event | {name} }}}}"
        with_arg: "{{{{ event.event | {name}('?') }}}}"
        directive: {{"@path": event.event, "@filter": {name}}}
        directive_arg: {{"@path": event.event, "@filter": {{{name}: ["?!"]}}}}
        chained: {{"@path": event.context.traits.email, "@filter": [lower, {name}]}}
    """) == {"in_template": "CART BUILT!", "with_arg": "CART BUILT?", "directive": "CART BUILT!",
             "directive_arg": "CART BUILT?!", "chained": "ANN@EXAMPLE.COM!"}


def test_event_keys_named_like_dict_methods_read_the_data(tmp_path):
    # regression: Jinja's attribute lookup used to return dict.items / dict.values (bound methods)
    body = body_of(tmp_path, """
        whole: "{{ event.properties.items }}"
        text: "n={{ event.properties.values }}"
    """, event(properties={"items": [1, 2], "values": "v"}))
    assert json.dumps(body) == '{"whole": [1, 2], "text": "n=v"}'
