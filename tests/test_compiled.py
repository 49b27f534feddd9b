"""The language's behaviour through the compiled path, and the fast JSON and validation parts.

The generated Python is the language's one semantics. Each case below renders a
mapping and compares the whole outcome with a reviewed snapshot
(tests/snapshots/language/); the snapshots were first recorded from the old
tree-walking interpreter, so they say what each directive meant before it was
removed, and a changed snapshot is a changed language. json and jsonschema
define the behaviour of the fast JSON parts. Speed itself is measured by
bench/bench_render.py, never here.
"""
from __future__ import annotations

import ast
import copy
import io
import json
import math
import random
import re
import struct
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from conftest import write_mappings
from test_language import EVENT, HEAD, track_action
from test_snapshots import EVENT_FILES, SNAPSHOTS, dump, load_event

from engine import Engine, jsoncodec, register_filter, register_function
from engine.cli import Progress, main
from engine.validate import EventValidator

ROOT = Path(__file__).resolve().parents[1]


def outcome_data(outcome) -> dict:
    data = outcome.to_dict(show_secrets=True)
    data["items"] = outcome.items
    data["bodies"] = [r.encoded_body() for r in outcome.requests]
    return data


def test_the_compiled_path_is_the_default_and_is_really_used(monkeypatch):
    fast = Engine()
    route = fast.route("planhat", {"tenant_token": "t0k"}, environ={})
    event = load_event(ROOT / "fixtures" / "events" / "identify-full.json")

    def refuse(*args, **kwargs):
        raise AssertionError("the interpreter ran")
    monkeypatch.setattr(type(route.destination.actions["identify"]), "payload", refuse)
    assert fast.render(event, route).status == "send"


# --------------------------------------------------------------------------- the language, both ways

LANGUAGE_CASES = {
    "paths and fallbacks": """
        a: {"@path": event.properties.total}
        b: {"@path": [event.properties.empty, event.properties.nil, event.properties.tags, event.properties.currency]}
        c: {"@path": [event.properties.empty, event.properties.nil]}
        whole: {"@path": "event", "@filter": {pick: [[event, userId]]}}
        root: {"@path": "event.userId"}
        deep: {"@path": "event.properties.products[0].sku"}
        proj: {"@path": "event.properties.products[*].sku"}
        missing: {"@path": event.no.such.key}
    """,
    "literals, lists and nulls": """
        n: 5
        f: 1.25
        nil: null
        lst: [1, null, {"@path": event.properties.nil}, {"@path": event.properties.count}, [], {}]
        lit: {"@literal": {"@path": kept}}
    """,
    "templates": """
        text: "Hi {{ event.event }} / {{ event.properties.missing }} / {{ event.properties.nil }} / {{ event.properties.no }}"
        whole: "{{ event.properties.total }}"
        spaced: "  {{ event.properties.count }}  "
        typed: "{{ event.properties.count * 2 }}"
        none: "{{ event.properties.nothing }}"
        filters: "{{ event.context.traits.email | lower | sha256 }}"
        args: "{{ event.properties.currency | default('USD') }}-{{ 'Ann Lee' | split_name('last') }}"
        concat: "{{ event.event ~ event.properties.nil ~ event.properties.missing ~ 3 }}"
        either: "{{ event.properties.empty or event.properties.missing or event.properties.currency }}"
        nested_or: "{{ (event.properties.nil or '') ~ '!' }}"
        jinja_builtins: "{{ event.properties.products | map(attribute='sku') | join(',') }}"
        full_name: "{{ [event.properties.first or event.properties.currency, event.properties.missing, event.properties.nil, event.properties.count] | select | join(' ') }}"
        joined: "{{ [event.properties.missing, event.properties.nil, event.properties.total, 0, '', event.properties.currency] | join('-') }}"
        one_joined: "{{ [event.properties.currency] | join }}"
        none_kept: "{{ [event.properties.missing, event.properties.empty] | select | join(' ') }}"
        settings: "{{ settings.region }}-{{ settings.secret }}"
        settings_upper: "{{ settings.region | upper }}"
        statement: "{% if event.properties.count > 2 %}many{% else %}few{% endif %}"
        global_name: "{{ range(2) | list | length }}"
    """,
    "filters and defaults": """
        lower: {"@path": event.context.traits.email, "@filter": [trim, lower]}
        hmac: {"@path": event.userId, "@filter": {hmac_sha256: ["{{ settings.secret }}"]}}
        number: {"@path": event.properties.total, "@filter": number}
        default_empty: {"@path": event.properties.empty, "@default": fallback}
        default_template: {"@path": event.properties.nil, "@default": "{{ event.event }}"}
        filter_then_default: {"@path": event.properties.nil, "@filter": lower, "@default": x}
        default_filter: {"@path": event.properties.nil, "@filter": {default: [d]}}
        zero_kept: {"@path": event.properties.zero, "@default": 9}
        json: {"@path": event.properties.products, "@filter": {json: [true]}}
    """,
    "conditions": """
        "yes": {"@if": "event.properties.count > `2`", "@then": big, "@else": small}
        "no": {"@if": event.properties.empty, "@then": a, "@else": "{{ event.event }}"}
        no_else: {"@if": event.properties.nil, "@then": a}
        zero_is_true: {"@if": event.properties.zero, "@then": t, "@else": f}
        false_is_false: {"@if": event.properties.no, "@then": t, "@else": f}
    """,
    "each": """
        items:
          "@each": event.properties.products
          "@map":
            sku: {"@path": item.sku}
            cost: "{{ item.price * item.qty }}"
            user: {"@path": "event.userId"}
            label: "{{ item.sku }}-{{ event.event }}"
            tags:
              "@each": "event.properties.products"
              "@map": {"@path": item.sku}
        none: {"@each": event.properties.nil, "@map": {"@path": item.a}}
        empty: {"@each": event.properties.tags, "@map": {"@path": item.a}}
    """,
    "objects": """
        merged:
          "@merge": event.properties
          "@omit": [products, total]
          currency: {"@path": event.properties.currency, "@filter": lower}
        dropped:
          "@drop_empty": true
          empty: {"@path": event.properties.empty}
          zero: {"@path": event.properties.zero}
          "no": {"@path": event.properties.no}
          inner: {"@drop_empty": true, a: ""}
          list: []
        kept:
          empty_obj: {}
          inner: {a: {"@path": event.properties.nil}}
    """,
}

ERROR_CASES = {
    "filter on bad data": 'when: {"@path": event.properties.currency, "@filter": epoch_ms}',
    "filter type error": 'n: {"@path": event.properties.products, "@filter": number}',
    "template filter error": 'when: "{{ event.properties.currency | epoch_ms }}"',
    "template type error": 'x: "{{ event.properties.currency * event.properties.products }}"',
    "template text filter error": 'x: "at {{ event.properties.currency | iso8601 }}"',
    "each over non-list": 'x: {"@each": event.properties.currency, "@map": {"@path": item.a}}',
    "merge of non-object": 'x: {"@merge": event.properties.currency}',
    "second error wins nothing": 'a: {"@path": event.properties.currency, "@filter": date}\nb: {"@path": event.properties.total, "@filter": split_name}',
}


def load(tmp_path, body: str, more: str = "") -> Engine:
    if "request:" in more:  # the action brings its own request
        action = ("track:\n" + textwrap.indent(textwrap.dedent(more), "  ")
                  + "  body:\n" + textwrap.indent(textwrap.dedent(body), "    "))
    else:
        action = track_action(body, more)
    text = HEAD + "actions:\n" + textwrap.indent(action, "  ")
    return Engine(write_mappings(tmp_path, {"lang.yaml": text}))


def render(tmp_path, body: str, event: dict, settings: dict | None = None, more: str = "") -> dict:
    engine = load(tmp_path, body, more)
    data = outcome_data(engine.render(copy.deepcopy(event), "lang", dict(settings or {"secret": "k3y"})))
    data["bodies"] = [b.decode("utf-8") if isinstance(b, bytes) else b for b in data["bodies"]]
    return data


def matches(snapshot, name: str, outcomes) -> None:
    """The outcomes equal the reviewed snapshot tests/snapshots/language/<name>.json."""
    snapshot.snapshot_dir = SNAPSHOTS / "language"
    snapshot.assert_match(dump(outcomes), re.sub(r"[^a-z0-9]+", "-", name) + ".json")


@pytest.mark.parametrize("name", list(LANGUAGE_CASES) + list(ERROR_CASES))
def test_each_language_feature_gives_its_reviewed_result(tmp_path, snapshot, name):
    body = {**LANGUAGE_CASES, **ERROR_CASES}[name]
    got = render(tmp_path, body, EVENT)
    matches(snapshot, "case " + name, got)
    if body in ERROR_CASES.values():
        assert got["status"] == "rejected" and got["errors"][0]["path"].startswith("actions.track.body")


@pytest.mark.parametrize("case", ["paths and fallbacks", "templates", "objects", "each", "conditions"])
def test_events_with_odd_shapes_give_their_reviewed_result(tmp_path, snapshot, case):
    body = LANGUAGE_CASES[case]
    odd = [
        {**EVENT, "properties": {"total": "12", "products": "none", "currency": None, "items": [1]}},
        {**EVENT, "properties": {}},
        {**EVENT, "context": {"traits": {"email": None}}, "properties": {"products": [None, 3, {"sku": None}], "total": [1]}},
    ]
    matches(snapshot, "odd " + case, [render(tmp_path / str(i), body, event) for i, event in enumerate(odd)])


def test_event_keys_named_like_dict_methods_read_the_data(tmp_path):
    event = {**EVENT, "properties": {"items": [1, 2], "keys": "k", "values": None}}
    got = render(tmp_path, 'a: "{{ event.properties.items }}|{{ event.properties.keys }}"\nb: "{{ event.properties.items }}"', event)
    assert got["items"][0] == {"a": "[1,2]|k", "b": [1, 2]}  # a list in text is JSON (filters.text_of)


def test_vars_and_required(tmp_path, snapshot):
    more = """
        vars:
          who: {"@path": [event.context.traits.email, event.properties.email], "@filter": lower}
          tag: "{{ vars.who }}:{{ event.event }}"
        required:
          - vars.who
          - path: "email || user"
            message: need one
          - a.b
    """
    body = 'email: "{{ vars.who }}"\nuser: {"@path": event.userId}\na: {b: "{{ vars.tag }}"}\n'
    ok = render(tmp_path / "ok", body, EVENT, more=more)
    assert ok["status"] == "send"
    bare = {**EVENT, "context": {}, "userId": None, "anonymousId": "x"}
    missing = render(tmp_path / "missing", body, bare, more=more)
    assert missing["status"] == "rejected"
    assert [e["path"] for e in missing["errors"]] == ["vars.who", "email || user"]
    matches(snapshot, "vars and required", [ok, missing])


def test_request_parts_including_auth_query_and_bad_urls(tmp_path, snapshot):
    per_event = """
              headers: {X-Event: "{{ event.event }}", X-Empty: "{{ event.properties.empty }}", X-Static: "{{ settings.region }}"}
              query: {q: "{{ event.properties.count }}", r: "{{ settings.region }}"}
              auth: {basic: {username: "{{ settings.secret }}", password: "{{ event.event }}"}}"""
    # only the URL varies (Segment's /v1/{type}): headers and credentials are made once per route
    per_route = """
              headers: {X-Static: "{{ settings.region }}"}
              query: {r: "{{ settings.region }}"}
              auth: {basic: {username: "{{ settings.secret }}", password: "x"}}"""
    # a header naming its own Content-Type keeps it; GET drops the body; form bodies say so
    own_type = """
              headers: {Content-Type: "application/vnd.x+json", X-Static: "{{ settings.region }}"}"""
    seen = {}
    for rest_name, rest in (("event", per_event), ("route", per_route), ("type", own_type)):
        for i, url in enumerate(["https://x.test/{{ event.event | url_segment }}", "{{ '' }}{{ event.properties.currency }}",
                                 "https://x.test/{{ settings.region }}", "{{ settings.region }}"]):
            for method, encoding in (("POST", "json"), ("GET", "json"), ("PUT", "form")):
                more = f"""
            request:
              url: "{url}"
              method: {method}
              format: {encoding}""" + rest + "\n"
                for settings in ({"secret": "k3y"}, {"secret": ""}):
                    name = f"{rest_name}{i}{method}{bool(settings['secret'])}"
                    got = seen[name] = render(tmp_path / name, "a: 1", EVENT, settings, more)
                    if got["status"] == "send":
                        request = got["requests"][0]
                        assert request["method"] == method and (request["body"] is None) == (method == "GET")
    matches(snapshot, "request parts", seen)


def test_a_route_whose_settings_break_a_constant_is_rejected(tmp_path, snapshot):
    body = 'region: "{{ settings.region | epoch_ms }}"\nname: {"@path": event}'
    got = render(tmp_path, body, EVENT, {"secret": "k", "region": "not a date"})
    assert got["status"] == "rejected"
    matches(snapshot, "broken route constant", got)


def test_user_functions_and_filters_run_in_compiled_code(tmp_path):
    calls = Counter()

    @register_filter("compiled_test_count")
    def count(value):
        calls["filter"] += 1
        return f"{value}#{calls['filter']}"

    @register_function("compiled_test_fail")
    def fail(x=None):
        raise RuntimeError(f"boom {x}")

    body = 'a: "{{ settings.region | compiled_test_count }}"\nb: {"@path": event.event, "@filter": compiled_test_count}'
    got = render(tmp_path / "ok", body, EVENT)
    assert got["status"] == "send"
    assert got["items"][0]["a"].startswith("eu#")  # a user's filter on settings is not folded into a constant
    got = render(tmp_path / "fail", 'x: {"@function": compiled_test_fail, "@args": {x: {"@path": event.event}}}', EVENT)
    assert got["status"] == "rejected" and "boom Cart Built" in got["errors"][0]["message"]
    assert got["errors"][0]["path"] == "actions.track.body.x"


# --------------------------------------------------------------------------- JSON and validation

def _reference_dumps(value, sort_keys=False) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)


def _floats(value):
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _floats(item)


def _spelt_like_javascript(value) -> bool:
    """The two documented differences from json.dumps: NaN/Infinity, and floats below 1e-4."""
    return any(math.isnan(f) or math.isinf(f) or 0 < abs(f) < 1e-4 for f in _floats(value))


def _strict(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def _nan_as_null(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _nan_as_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_as_null(v) for v in value]
    return value


def test_json_output_is_the_standard_librarys_for_every_fixture_and_valid_json_for_awkward_values():
    values = [load_event(path) for path in EVENT_FILES]
    values += [1e-05, 1e16, 1.5e300, -0.0, 0.0001, 2 ** 64, -2 ** 63 - 1, 10 ** 30, float("nan"), float("inf"),
               {"a": 1, 2: "int key"}, (1, 2), "line\nbreak \u2028 \x7f é 😀", {"n": None}, [5e-324]]
    rng = random.Random(6)
    values += [rng.choice([rng.uniform(-1e6, 1e6), 10 ** rng.uniform(-30, 30), rng.randint(-2 ** 70, 2 ** 70)])
               for _ in range(20000)]
    for value in values:
        for sort_keys in (False, True):
            try:
                want = _reference_dumps(value, sort_keys)
            except TypeError:
                continue  # mixed key types cannot be sorted by json either
            got = jsoncodec.dumps(value, sort_keys)
            assert jsoncodec.dumps_bytes(value, sort_keys) == got.encode("utf-8")
            if _spelt_like_javascript(value):
                assert _strict(got) == _strict(_reference_dumps(_nan_as_null(value), sort_keys))
            else:
                assert got == want


def test_json_output_spells_the_odd_floats_as_javascript_does():
    assert [jsoncodec.dumps(v) for v in (1e-05, 1e-7, 1.5e-300, float("nan"), float("-inf"))] == \
        ["0.00001", "1e-7", "1.5e-300", "null", "null"]
    assert jsoncodec.dumps({"n": [float("nan"), None]}) == '{"n":[null,null]}'
    with pytest.raises(ValueError):
        jsoncodec.dumps({"n": float("nan")}, allow_nan=False)
    assert jsoncodec.dumps({"n": None, "f": 1e-7}, allow_nan=False) == '{"n":null,"f":1e-7}'


def test_json_parsing_matches_the_standard_library():
    texts = [path.read_text(encoding="utf-8") for path in EVENT_FILES]
    texts += ["NaN", "[Infinity, -Infinity]", "12345678901234567890123", "-9256616000772621252", '"\\ud800"',
              '{"a": 1, "a": 2}', "1e400", "-0", "[1.5e-7, 0.1]",
              '{"id": "1234567890123456789012", "n": 123456789012345678}', "[18446744073709551615, 9223372036854775808]",
              '"\\ud83d\\ude00 \\u00e9 é"', '{"a": "\\u2028"}', "-9223372036854775809", "1e309", "-1e309",
              "1" + "0" * 400 + ".0", "0." + "0" * 400 + "1", "4.9e-324", "2.2250738585072011e-308", "-0.0",
              '{"\\ud800": 1}', "[" * 100 + "]" * 100, " {\"a\" : [1 , 2] } ", '"\\u0000\\/"']
    for text in texts:
        want = repr(json.loads(text))
        assert repr(jsoncodec.loads(text)) == want
        assert repr(jsoncodec.loads(text.encode("utf-8"))) == want  # JSON Lines read as bytes
    assert jsoncodec.loads('["\ud800"]') == ["\ud800"]  # a lone surrogate in a str: only json takes it
    for bad in ["{", "[1,]", "tru", "", '{"a": 1,}', "01", "1.", ".5", "+1", '"a\nb"', "\ufeff{}", '{"a": 1} x']:
        with pytest.raises(json.JSONDecodeError) as fast:
            jsoncodec.loads(bad)
        with pytest.raises(json.JSONDecodeError) as slow:
            json.loads(bad)
        assert str(fast.value) == str(slow.value)
    # valid JSON that json.loads will not read raises other errors there; here, JSONDecodeError for all
    for bad, message in [("1" * 5000, "an integer longer than Python reads (over 4300 digits)"),
                         ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper than eventmap reads"),
                         (b'{"a": "\xff"}', "not UTF-8 text (byte 7)")]:
        with pytest.raises(json.JSONDecodeError, match=re.escape(message)):
            jsoncodec.loads(bad)


def test_input_from_outside_may_nest_100_levels_and_no_more():
    for depth, readable in ((2, True), (100, True), (101, False), (900, False)):
        for text in ('{"a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}",  # each text nests ``depth`` levels
                     "[" * (depth - 1) + "{}" + "]" * (depth - 1),
                     '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)):
            for given in (text, text.encode("utf-8")):
                if readable:
                    assert jsoncodec.loads_bounded(given) == json.loads(given)
                else:
                    with pytest.raises(json.JSONDecodeError, match=r"nested deeper than eventmap reads \(over 100 levels\)"):
                        jsoncodec.loads_bounded(given)
    assert jsoncodec.loads_bounded('{"a": "' + "[" * 500 + '"}') == {"a": "[" * 500}  # brackets in a string


def test_json_parsing_matches_the_standard_library_for_random_floats():
    rng = random.Random(6)
    for _ in range(20_000):
        value = struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            for text in (repr(value), f"{value:.17g}", f"{value:.6e}", f"{value:.12g}"):
                assert jsoncodec.loads(text) == json.loads(text), text


class _AlwaysAsk:
    """Stands in for jsonschema-rs so the validator takes the jsonschema path for every event."""

    def is_valid(self, instance):
        return False


def mutations(event: dict):
    yield event
    for key in list(event) + ["userId", "anonymousId", "event", "timestamp", "messageId"]:
        for value in (None, "", 7, 1.5, True, [], {}, "2024-13-01T00:00:00Z", "2024-01-01", "x" * 101,
                      {"traits": []}, 2 ** 70, float("nan")):
            yield {**event, key: value}


def test_compiled_validator_accepts_and_rejects_exactly_like_jsonschema():
    fast = EventValidator()
    slow = EventValidator()
    slow._fast = {name: _AlwaysAsk() for name in slow._fast}
    checked = 0
    for path in EVENT_FILES:
        for event in mutations(load_event(path)):
            assert fast.check(event) == slow.check(event)
            checked += 1
    batch = {"batch": [load_event(path) for path in EVENT_FILES[:5]]}
    assert fast.check_batch(batch) == slow.check_batch(batch)
    assert checked > 1000


# --------------------------------------------------------------------------- command line

def test_explain_code_prints_the_generated_python(capsys):
    assert main(["explain", "--code", "richpanel", "track"]) == 0
    source = capsys.readouterr().out
    ast.parse(source)
    assert "def map_track(event, settings, K, given=None):" in source and "def wrap_items(" in source
    assert "event.get('properties')" in source  # plain paths are plain dict reads


def test_explain_code_for_a_call_type_the_destination_lacks_is_a_usage_error(capsys):
    assert main(["explain", "--code", "crisp", "alias"]) == 1
    assert "has no 'alias' action" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_shown_on_a_terminal_only():
    quiet = io.StringIO()
    progress = Progress(quiet, every=0)
    progress.update(10, Counter(send=3))
    progress.close()
    assert quiet.getvalue() == ""
    terminal = _Terminal()
    progress = Progress(terminal, every=0)
    progress.update(10, Counter(send=3))
    progress.close()
    assert "line 10: 3 send" in terminal.getvalue()


def test_progress_on_a_file_shows_a_bar_with_how_much_is_read(tmp_path):
    from engine.cli import JsonLines
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps({**EVENT, "messageId": f"m{i}", "pad": "x" * 200}) for i in range(2000)))
    lines = JsonLines(str(path))
    terminal = _Terminal()
    progress = Progress(terminal, every=0, done=lines.done)
    seen = []
    for number, _event in lines:
        progress.update(number, Counter(send=number))
        seen.append(lines.done())
    shown = terminal.getvalue()
    assert "[########################] 100% line 2,000" in shown and "2,000 send, 0 skipped, 0 rejected" in shown
    assert "[" + "." * 24 + "]" in shown or "[#" in shown.split("\r")[1]  # it started near empty
    assert seen == sorted(seen) and 0 < seen[0] < 0.5 and seen[-1] == 1.0
    progress.close()
    assert terminal.getvalue().endswith("\r\033[K")


def test_batch_reads_a_stream_lazily_and_outputs_one_line_per_event(tmp_path, capsys, monkeypatch):
    lines = [json.dumps({**EVENT, "messageId": f"m{i}"}) for i in range(300)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\nnot json\n"))
    monkeypatch.setenv("EVENTMAP_PLANHAT_TENANT_TOKEN", "tok")
    assert main(["batch", "-", "--destination", "planhat"]) == 0
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert len(rows) == 301 and rows[-1]["status"] == "rejected" and rows[0]["status"] == "send"
    assert "300 send" in out.err and "\r" not in out.err


def test_the_benchmark_runs_with_a_tiny_workload():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_render.py"), "--smoke"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "planhat" in result.stdout and "x baseline" in result.stdout
