"""Issue 22: a mapping means what it says. Each test here failed before its fix.

``!`` before a scope, template ``or``/``and``/``not`` over comparisons and data, Jinja2
values leaking into requests, missing data in text, the migrator's verdict.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, write_mappings
from test_language import HEAD, body_of, event, load, outcome_of, track_action

from engine import Engine
from engine.map.migrate import main as migrate
from engine.map.migrate import migrate_text
from engine.problems import ConfigError


def load_error(tmp_path, actions: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, actions)
    return str(caught.value)


# --------------------------------------------------------------------------- 1. ! before a scope

@pytest.mark.parametrize("where, yaml_value, fixed", [
    ("body.x.@if", '{"@if": "!event.userId", "@then": a, "@else": b}', "!(event.userId)"),
    ("body.x.@path", '{"@path": "!event.properties.a && event.userId"}', "!(event.properties.a) && event.userId"),
    ("body.x.@path", '{"@path": "event.properties.products[?!item.sku.id]"}', "event.properties.products[?!(item.sku.id)]"),
    ("body.x.@if", '{"@if": "!settings.region.x", "@then": a}', "!(settings.region.x)"),
    ("body.x.@if", '{"@if": "!vars.a.b", "@then": a}', "!(vars.a.b)"),
])
def test_a_negated_scope_read_further_is_refused_at_load_with_the_spelling_to_use(tmp_path, where, yaml_value, fixed):
    message = load_error(tmp_path, track_action(f"x: {yaml_value}", more="vars: {a: 1}\n"))
    assert f"actions.track.{where}" in message and "lang.yaml:" in message
    assert f"write {fixed!r}" in message


def test_a_named_actions_when_is_checked_the_same_way(tmp_path):
    message = load_error(tmp_path, """
        paid:
          type: track
          when: "!event.properties.free"
          request: {url: 'https://lang.test/paid'}
          body: {a: 1}
    """)
    assert "actions.paid.when: when '!event.properties.free'" in message
    assert "write '!(event.properties.free)'" in message


@pytest.mark.parametrize("condition, with_user, without_user", [
    ("!(event.userId)", "b", "a"),
    ("!event", "b", "b"),                      # the negation of the whole event: never empty
    ("!(event.userId) || event.properties.x", "b", "a"),
])
def test_the_spelling_the_message_gives_means_what_it_says(tmp_path, condition, with_user, without_user):
    engine = load(tmp_path, track_action(f'x: {{"@if": "{condition}", "@then": a, "@else": b}}'))
    assert engine.render(event(), "lang", {}).requests[0].body == {"x": with_user}
    anonymous = event(userId=None, anonymousId="anon")
    del anonymous["userId"]
    assert engine.render(anonymous, "lang", {}).requests[0].body == {"x": without_user}


def test_a_routes_where_condition_is_checked_the_same_way(tmp_path):
    from engine.load.config import load_config
    path = tmp_path / "eventmap.yaml"
    path.write_text(textwrap.dedent("""\
        destinations:
          webhook:
            settings: {url: "https://example.test/hook"}
            where: "!properties.plan.name"
        """), encoding="utf-8")
    _, problems = load_config(path)
    assert [p.path for p in problems] == ["destinations.webhook.where"]
    assert "write '!(properties.plan.name)'" in problems[0].message and problems[0].file == str(path)


def test_the_migrator_keeps_a_negated_field_negated(tmp_path):
    old = 'actions:\n  track:\n    body:\n      anon: {"@if": "!userId", "@then": true, "@else": false}\n'
    new, notes = migrate_text(old)
    assert '"!(event.userId)"' in new and notes == []
    engine = Engine(write_mappings(tmp_path, {"lang.yaml": HEAD + new.replace(
        "track:\n", "track:\n    request: {url: 'https://lang.test/t'}\n")}))
    anonymous = {k: v for k, v in event().items() if k != "userId"} | {"anonymousId": "a"}
    assert engine.render(anonymous, "lang", {}).requests[0].body == {"anon": True}
    assert engine.render(event(), "lang", {}).requests[0].body == {"anon": False}


# --------------------------------------------------------------------------- 7. the migrator's verdict

def test_the_migrator_exits_non_zero_listing_what_remains_once_each(tmp_path, capsys):
    path = tmp_path / "acme.yaml"
    path.write_text(textwrap.dedent("""\
        actions:
          track:
            request: {url: "https://x.test"}
            body:
              a: &text |
                {{ traits.name }}
              b: *text
              c: *text
              d: {"@if": "!properties.x.y", "@then": 1}
        """), encoding="utf-8")
    assert migrate([str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("a block scalar") == 1
    assert err.count("negates only the name right after it") == 1
    assert "2 things left to do by hand" in err


# --------------------------------------------------------------------------- 2. or, and, not

def test_or_between_comparisons_is_boolean_logic_at_run_time_as_when_folded(tmp_path):
    assert body_of(tmp_path, """
        event_time: "{{ (event.properties.count > 5) or (event.properties.total > 2) }}"
        folded: "{{ (1 > 2) or (3 > 2) }}"
        both: "{{ (event.properties.count > 5) and (event.properties.total > 2) }}"
        negated: "{{ not (event.properties.count > 5) }}"
        text: "{{ event.properties.count > 5 or event.properties.total > 2 }}!"
    """) == {"event_time": True, "folded": True, "both": False, "negated": True, "text": "true!"}


def test_or_after_a_data_value_is_the_fallback_that_keeps_false_and_zero(tmp_path):
    assert body_of(tmp_path, """
        zero: "{{ event.properties.zero or 1 }}"
        "no": "{{ event.properties.no or true }}"
        empty: "{{ event.properties.empty or 'x' }}"
        missing: "{{ event.properties.nope or 'y' }}"
        tags: "{{ event.properties.tags or ['z'] }}"
    """) == {"zero": 0, "no": False, "empty": "x", "missing": "y", "tags": ["z"]}


def test_conditions_in_templates_follow_the_truthy_rule_of_at_if(tmp_path):
    assert body_of(tmp_path, """
        if_zero: "{% if event.properties.zero %}t{% else %}f{% endif %}"
        if_false: "{% if event.properties.no %}t{% else %}f{% endif %}"
        if_false_or_true: "{% if event.properties.no or event.properties.count %}t{% else %}f{% endif %}"
        not_zero: "{{ not event.properties.zero }}"
        not_empty: "{{ not event.properties.empty }}"
        ternary: "{{ 'has' if event.properties.zero else 'none' }}"
        and_value: "{{ event.properties.zero and 'z' }}"
        and_missing: "{{ event.properties.nope and 'z' }}"
    """) == {"if_zero": "t", "if_false": "f", "if_false_or_true": "t", "not_zero": False, "not_empty": True,
             "ternary": "has", "and_value": "z"}


# --------------------------------------------------------------------------- 4. no Jinja value in a request

def test_missing_items_of_a_built_list_are_null_not_undefined(tmp_path):
    evt = event()
    evt["properties"]["products"] = [{"id": "a"}, {"sku": "b"}]
    assert body_of(tmp_path, """
        ids: "{{ event.properties.products | map(attribute='id') | list }}"
        pairs: "{{ {'a': event.properties.nope, 'b': [event.properties.nope]} }}"
        text: "ids {{ event.properties.products | map(attribute='id') | list }}"
    """, evt) == {"ids": ["a", None], "pairs": {"a": None, "b": [None]}, "text": 'ids ["a",null]'}


@pytest.mark.parametrize("template, made", [
    ("{{ event.properties.products | map(attribute='sku') }}", "generator"),
    ("{{ range(3) }}", "range"),
    ("{{ event.properties | items }}", "generator"),
    ("{{ {1: 'one'} }}", "the key 1"),
    ("{{ 'nan' | float }}", "nan"),
])
def test_a_template_that_makes_something_other_than_json_rejects_the_event_with_a_reason(tmp_path, template, made):
    outcome = outcome_of(tmp_path, f'x: "{template}"')
    assert outcome.status == "rejected", outcome.to_dict()
    assert made in outcome.errors[0].message and outcome.errors[0].path == "actions.track.body.x"


def test_render_prints_json_for_the_issues_own_example(tmp_path):
    root = write_mappings(tmp_path, {"lang.yaml": HEAD + "actions:\n" + textwrap.indent(
        track_action("ids: \"{{ event.properties.products | map(attribute='id') | list }}\"\n"), "  ")})
    evt = event()
    evt["properties"]["products"] = [{"id": "a"}, {}]
    (tmp_path / "event.json").write_text(json.dumps(evt), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "engine", "render", "lang", str(tmp_path / "event.json"),
                           "--mappings", str(root)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["requests"][0]["body"] == {"ids": ["a", None]}


# --------------------------------------------------------------------------- 8. missing data is nothing in text

def test_null_and_missing_data_are_nothing_in_text_concatenation_and_join(tmp_path):
    assert body_of(tmp_path, """
        concat: "{{ event.event ~ event.properties.nil ~ event.properties.nope ~ 3 }}"
        joined: "{{ [event.properties.nope, event.properties.nil, event.properties.total, 0, '', event.properties.currency] | join('-') }}"
        address: "{{ ['Main St', event.properties.nil, 'Oslo'] | join(', ') }}"
        text: "[{{ event.properties.nil }}|{{ event.properties.no }}|{{ event.properties.tags }}]"
        yaml_join: {"@path": "event.properties.products[*].sku", "@filter": {join: ["+"]}}
    """) == {"concat": "Cart Built3", "joined": "12.5-0--EUR", "address": "Main St, Oslo",
             "text": "[|false|[]]", "yaml_join": "A+B"}


def test_a_gladly_payload_without_an_id_is_rejected_rather_than_given_a_shared_message_id():
    engine = Engine()
    source = engine.source("gladly", {"org": "acme", "agent_email": "a@acme.test", "api_token": "t"})
    payload = json.loads((REPO / "fixtures" / "gladly" / "payloads" / "conversation-created.json").read_text())
    payload.pop("id")
    result = source.process(payload, lookups={})
    assert result.status == "rejected"
    assert "no delivery id" in result.errors[0].message


# --------------------------------------------------------------------------- 5. explain shows what render sends

def _reassembled(fields) -> dict:
    """The body made back from explain's fields: each value at its path; a field with no value is left out."""
    body: dict = {}
    for field in fields:
        if field.path.startswith(("vars.", "steps.")) or field.value is None:
            continue
        if field.path == "(body)":  # the body is one value, not an object of fields
            return field.value
        *parents, last = field.path.split(".")
        target = body
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = field.value
    return body


def _without_empty_objects(value):
    if isinstance(value, dict):
        return {k: _without_empty_objects(v) for k, v in value.items() if v != {}}
    return value


def test_explain_shows_the_readme_tutorials_merge_without_the_omitted_key(tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    acme = readme.split("`mappings/destinations/acme.yaml`:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    engine = Engine(write_mappings(tmp_path, {"acme.yaml": acme}))
    from engine.explain import explain
    order = json.loads((REPO / "fixtures" / "events" / "track-order-completed.json").read_text(encoding="utf-8"))
    route = engine.route("acme", {"api_key": "k"}, environ={})
    fields = {f.path: f for f in explain(engine, route, order).fields}
    assert "data.email" not in fields and not any(f.path == "data" for f in fields.values())
    assert fields["data.checkout_id"].value == order["properties"]["checkout_id"]
    assert fields["data.checkout_id"].expression == "from @merge path event.properties"
    assert _reassembled(fields.values()) == engine.render(order, route).items[0]


def _drop(body: dict, path: str) -> None:
    *parents, last = path.split(".")
    for key in parents:
        body = body.get(key, {})
    body.pop(last, None)


def test_explain_shows_exactly_what_render_maps_for_every_shipped_destination_and_fixture():
    import copy

    from test_snapshots import EVENT_FILES, SLUGS, fixture_settings, load_event

    from engine.explain import explain
    engine = Engine()
    compared = 0
    for slug in SLUGS:
        route = engine.route(slug, fixture_settings(engine, slug), environ={})
        for path in EVENT_FILES:
            evt = load_event(path)
            explained = explain(engine, route, evt)
            if explained.outcome.status != "send" or not explained.outcome.items:
                continue  # rejected, skipped, or a multi-step action (its plan is shown instead)
            sent = copy.deepcopy(engine.render(evt, route).items[0])
            masked = [f for f in explained.fields if "***" in json.dumps(f.value)]  # built from a secret
            for field in masked:
                _drop(sent, field.path)
            shown = [f for f in explained.fields if f not in masked]
            assert _without_empty_objects(_reassembled(shown)) == _without_empty_objects(sent), (slug, path.name)
            compared += 1
    assert compared > 20


# --------------------------------------------------------------------------- gaps: regex_replace, @merge

def test_a_regex_replace_pattern_re2_refuses_or_that_is_not_written_out_is_a_load_error(tmp_path):
    message = load_error(tmp_path, track_action("""
        a: "{{ event.event | regex_replace('(a', '_') }}"
        b: {"@path": event.event, "@filter": {regex_replace: ["{{ event.userId }}", ""]}}
        c: "{{ event.event | regex_replace(event.userId, '') }}"
        d: "{{ event.event | regex_replace('(?<=a)b', '') }}"  # a look-behind: Python's re has it, RE2 does not
    """))
    assert "body.a: template \"{{ event.event | regex_replace('(a', '_') }}\": the pattern '(a' is not a regular " \
           "expression RE2 accepts: missing ): (a" in message
    assert "body.b.@filter: regex_replace needs its pattern written in the mapping as text" in message
    assert "body.c: template" in message and message.count("needs its pattern written") == 2
    assert "invalid perl operator: (?<" in message
    assert message.count("lang.yaml:") >= 4


def test_regex_replace_in_templates_and_filters(tmp_path):
    assert body_of(tmp_path, """
        name: '{{ event.event | regex_replace("[\\\\s.]+", "_") | lower }}'  # Jinja2 text: \\s
        yaml: {"@path": event.event, "@filter": [{regex_replace: ["(?i)^cart ", ""]}]}
    """) == {"name": "cart_built", "yaml": "Built"}


def test_merge_all_merges_sources_in_order_and_omit_applies_to_the_result(tmp_path):
    evt = event()
    evt["properties"] = {"name": "Shirt", "price": 10, "color": None, "product": {"price": 8, "sku": "s1", "color": "red"}}
    assert body_of(tmp_path, """
        item:
          "@merge_all": [event.properties, {"@path": event.properties.product}, {extra: 1, price: 7}]
          "@omit": [product, sku]
          name: "{{ event.properties.name | upper }}"
    """, evt) == {"item": {"price": 7, "color": "red", "extra": 1, "name": "SHIRT"}}


def test_merge_takes_a_template_or_a_directive_and_a_list_stays_path_fallbacks(tmp_path):
    evt = event()
    evt["traits"] = {}
    evt["context"] = {"traits": {"plan": "pro"}}
    assert body_of(tmp_path, """
        template: {"@merge": "{{ event.context.traits }}"}
        directive: {"@merge": {"@if": event.userId, "@then": {"@path": event.context.traits}}}
        fallbacks: {"@merge": [event.traits, event.context.traits]}
    """, evt) == {"template": {"plan": "pro"}, "directive": {"plan": "pro"}, "fallbacks": {"plan": "pro"}}


@pytest.mark.parametrize("body, message", [
    ('x: {"@merge": event.traits, "@merge_all": [event.traits], a: 1}', "use @merge for one source or @merge_all for several"),
    ('x: {"@merge_all": event.traits, a: 1}', "@merge_all expects a list of sources"),
])
def test_merge_all_is_checked_at_load(tmp_path, body, message):
    assert message in load_error(tmp_path, track_action(body))


def test_merge_all_says_which_source_is_not_an_object(tmp_path):
    outcome = outcome_of(tmp_path, 'x: {"@merge_all": [event.properties, event.properties.currency]}')
    assert outcome.status == "rejected"
    assert outcome.errors[0].path == "actions.track.body.x.@merge_all.1"
    assert "@merge_all expected an object, got a string" in outcome.errors[0].message


def test_a_body_key_yaml_reads_as_a_boolean_is_refused_with_the_quoted_spelling(tmp_path):
    message = load_error(tmp_path, track_action('no: 1\n"yes": 2\n'))
    assert "actions.track.body[False]: a key YAML reads as false (a bare no, yes, on, off, y, n or ~): quote it" \
           in message and "lang.yaml:" in message
    assert body_of(tmp_path / "quoted", '"no": 1\n"on": {"@path": event.userId}\n') == {"no": 1, "on": "u1"}


def test_a_settings_only_template_with_or_and_tilde_is_still_made_once_per_route(tmp_path):
    engine = load(tmp_path, track_action("""
        api: "{{ settings.region or 'x' ~ settings.secret }}"
        user: {"@path": event.userId}
    """))
    action = engine.destination("lang").actions["track"]
    source = action.compiled(None, "lang track").source()
    assert "api" in source and "K[0]" in source and "settings.get" not in source, source
    assert engine.render(event(), "lang", {"secret": "s"}).requests[0].body == {"api": "eu", "user": "u1"}


def test_a_steps_when_is_checked_the_same_way(tmp_path):
    message = load_error(tmp_path, """
        track:
          steps:
            find:
              request: {method: GET, url: 'https://lang.test/find'}
            create:
              when: "!steps.find.body.id"
              request: {url: 'https://lang.test/create'}
              body: {a: 1}
    """)
    assert "actions.track.steps.create.when" in message and "write '!(steps.find.body.id)'" in message
