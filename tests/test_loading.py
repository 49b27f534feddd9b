"""Bad mapping files: every problem is a ConfigError naming file, line, path and a plain message."""
from __future__ import annotations

import pytest

from engine import ConfigError, Engine

from conftest import write_mappings

FILE = "mappings/destinations/x.yaml"

# A valid file; tests add or change lines. Line numbers matter: keep this stable.
GOOD = """\
name: X
settings:
  type: object
  required: [token]
  properties:
    token: {type: string, secret: true}
    region: {type: string, default: eu}
actions:
  identify:
    request:
      url: "https://x.test/{{ settings.region }}"
    body:
      id: {"@path": event.userId}
"""


@pytest.fixture
def load_errors(tmp_path, monkeypatch):
    """Write files, load an Engine from tmp_path (so paths read mappings/destinations/...), return str(problems)."""
    monkeypatch.chdir(tmp_path)

    def run(files: dict[str, str]) -> list[str]:
        root = write_mappings(tmp_path, files)
        with pytest.raises(ConfigError) as info:
            Engine(root)
        assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
        return [str(p) for p in info.value.problems]

    return run


def with_body(*lines: str) -> str:
    """GOOD with more body fields; the first added line is line 14."""
    return GOOD + "".join(f"      {line}\n" for line in lines)


def test_the_base_file_loads(tmp_path):
    eng = Engine(write_mappings(tmp_path, {"x.yaml": GOOD}))
    assert sorted(eng.destinations) == ["x"]
    assert eng.destination("X").call_types == ["identify"]


# --------------------------------------------------------------------------- YAML and schema

def test_yaml_syntax_error_names_the_line(load_errors):
    assert load_errors({"x.yaml": with_body("a: [1, 2}")}) == [
        f"{FILE}:14: invalid YAML: while parsing a flow sequence expected ',' or ']', but got '}}'"]


def test_duplicate_key(load_errors):
    assert load_errors({"x.yaml": with_body("id: 2")}) == [
        f"{FILE}:14: actions.identify.body.id: duplicate key 'id' (first on line 13)"]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(load_errors, text):
    assert load_errors({"x.yaml": text}) == [f"{FILE}:1: the file is empty"]


def test_file_that_is_not_an_object(load_errors):
    assert load_errors({"x.yaml": "- a\n- b\n"}) == [f"{FILE}:1: expected an object, got a list"]


def test_unknown_top_level_key(load_errors):
    text = GOOD.replace("name: X\n", "name: X\nnmae: Y\n")
    assert load_errors({"x.yaml": text}) == [
        f"{FILE}:2: nmae: unknown key 'nmae' (expected one of: actions, batch, defaults, description, docs, "
        "envelope, integrations, limits, name, settings)"]


def test_unknown_call_type_names_its_own_line_and_path(load_errors):
    text = GOOD + "  tarck:\n    body: {}\n"
    assert load_errors({"x.yaml": text}) == [
        f"{FILE}:14: actions.tarck: 'tarck' is not a call type (identify, track, page, screen, group, alias); "
        "a named action also needs 'type' and 'events' or 'when'"]


def test_missing_body(load_errors):
    text = GOOD + "  track:\n    request: {url: 'https://x.test/t'}\n"
    assert load_errors({"x.yaml": text}) == [f"{FILE}:14: actions.track: an action needs 'body' (one request) or 'steps' (several)"]


def test_missing_url(load_errors):
    text = GOOD + "  track:\n    body: {}\n"
    assert load_errors({"x.yaml": text}) == [
        f"{FILE}:14: actions.track.request: 'url' is required (in the action's request or in defaults.request)"]


# --------------------------------------------------------------------------- the mapping language

def test_unknown_directive(load_errors):
    assert load_errors({"x.yaml": with_body('nick: {"@paht": traits.name}')}) == [
        f"{FILE}:14: actions.identify.body.nick.@paht: unknown directive '@paht'"]


def test_directive_companion_without_its_source(load_errors):
    assert load_errors({"x.yaml": with_body('nick: {"@default": x}')}) == [
        f"{FILE}:14: actions.identify.body.nick.@default: unknown directive '@default' "
        "(a value directive needs one of @path, @literal, @if, @each, @map_values, @function)"]


def test_unknown_directive_in_vars_gets_the_plain_message(load_errors):
    # regression: the schema's "is not valid under any of the given schemas" used to win here
    text = GOOD.replace("    request:\n", "    vars:\n      v: {\"@paht\": userId}\n    request:\n")
    assert load_errors({"x.yaml": text}) == [
        f"{FILE}:11: actions.identify.vars.v.@paht: unknown directive '@paht'"]


def test_directive_with_a_plain_key_next_to_it(load_errors):
    assert load_errors({"x.yaml": with_body('nick: {"@path": event.traits.name, other: 1}')}) == [
        f"{FILE}:14: actions.identify.body.nick.other: 'other' does not go with @path; allowed here: "
        "@default, @filter, @path (a directive's keys all start with @; put plain keys in a nested object)"]


def test_two_sources_in_one_directive(load_errors):
    assert load_errors({"x.yaml": with_body('nick: {"@path": event.a, "@literal": b}')}) == [
        f"{FILE}:14: actions.identify.body.nick: use one of @path, @literal, @if, @each, @map_values, @function per value, "
        "found @path, @literal",
        f"{FILE}:14: actions.identify.body.nick.@literal: '@literal' does not go with @path; allowed here: "
        "@default, @filter, @path",
    ]


def test_bad_jmespath(load_errors):
    problems = load_errors({"x.yaml": with_body('nick: {"@path": "traits.[name"}')})
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{FILE}:14: actions.identify.body.nick.@path: @path 'traits.[name' is not a valid JMESPath expression: ")


def test_bad_jmespath_in_a_fallback_list_names_the_entry(load_errors):
    problems = load_errors({"x.yaml": with_body('nick:', '  "@path": [event.traits.name, "event.traits.[x"]')})
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{FILE}:15: actions.identify.body.nick.@path[1]: @path 'event.traits.[x' is not a valid JMESPath expression: ")


def test_bad_jmespath_in_if(load_errors):
    problems = load_errors({"x.yaml": with_body('''k: {"@if": "type ==", "@then": 1}''')})
    assert len(problems) == 1
    assert problems[0].startswith(f"{FILE}:14: actions.identify.body.k.@if: @if 'type ==' is not a valid JMESPath")


def test_jinja_syntax_error(load_errors):
    assert load_errors({"x.yaml": with_body('nick: "{{ traits.name "')}) == [
        f"{FILE}:14: actions.identify.body.nick: template '{{{{ traits.name ' does not compile: "
        "unexpected end of template, expected 'end of print statement'."]


def test_unknown_jinja_filter_in_a_template_is_reported(load_errors):
    problems = load_errors({"x.yaml": with_body('nickname: "{{ event.traits.name | snakecase }}"')})
    assert len(problems) == 1
    assert problems[0].startswith(f"{FILE}:14: actions.identify.body.nickname: ")
    assert "'snakecase'" in problems[0]


def test_unknown_jinja_filter_in_a_template_lists_known_filters(load_errors):
    problems = load_errors({"x.yaml": with_body('nickname: "{{ event.traits.name | snakecase }}"')})
    assert problems[0].startswith(f"{FILE}:14: actions.identify.body.nickname: unknown filter 'snakecase' "
                                  "in template '{{ event.traits.name | snakecase }}' (known: base64, ")
    assert ", snake_case, " in problems[0]


def test_unknown_filter_in_filter_directive(load_errors):
    problems = load_errors({"x.yaml": with_body('nickname: {"@path": event.traits.name, "@filter": [lower, snakecase]}')})
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{FILE}:14: actions.identify.body.nickname.@filter[1]: unknown filter 'snakecase' (known: base64, ")
    assert ", snake_case, " in problems[0]


def test_undeclared_setting_in_a_template(load_errors):
    assert load_errors({"x.yaml": with_body('k: "{{ settings.nope }}"')}) == [
        f"{FILE}:14: actions.identify.body.k: unknown setting 'settings.nope' (declared: region, token)"]


def test_undeclared_setting_in_the_url(load_errors):
    text = GOOD.replace("{{ settings.region }}", "{{ settings['regoin'] }}")
    assert load_errors({"x.yaml": text}) == [
        f"{FILE}:11: actions.identify.request.url: unknown setting 'settings.regoin' (declared: region, token)"]


def test_undeclared_var(load_errors):
    assert load_errors({"x.yaml": with_body('k: "{{ vars.nope }}"')}) == [
        f"{FILE}:14: actions.identify.body.k: unknown variable 'vars.nope' (defined before this point: none)"]


def test_var_used_before_it_is_defined(load_errors):
    text = GOOD.replace("    request:\n", '    vars:\n      a: "{{ vars.b }}"\n      b: 1\n    request:\n')
    assert load_errors({"x.yaml": text}) == [
        f"{FILE}:11: actions.identify.vars.a: unknown variable 'vars.b' (defined before this point: none)"]


def test_item_outside_each(load_errors):
    assert load_errors({"x.yaml": with_body('k: "{{ item.sku }}"')}) == [
        f"{FILE}:14: actions.identify.body.k: template '{{{{ item.sku }}}}': "
        "'item' is only defined inside @each/@map and @map_values/@map"]


def test_unknown_function(load_errors):
    problems = load_errors({"x.yaml": with_body('k: {"@function": nope_fn}')})
    assert len(problems) == 1
    assert problems[0].startswith(f"{FILE}:14: actions.identify.body.k.@function: unknown function 'nope_fn' (known: ")


def test_required_naming_an_undefined_var(load_errors):
    text = GOOD + "    required: [id, vars.zz]\n"
    assert load_errors({"x.yaml": text}) == [
        f"{FILE}:14: actions.identify.required[1]: 'vars.zz' names a variable this action does not define"]


def test_required_setting_not_declared(load_errors):
    text = GOOD.replace("required: [token]", "required: [token, api_key]")
    assert load_errors({"x.yaml": text}) == [
        f"{FILE}:4: settings.required[1]: required setting 'api_key' is not declared in settings.properties"]


def test_two_files_with_the_same_display_name(load_errors):
    assert load_errors({"a.yaml": GOOD, "b.yaml": GOOD}) == [
        "mappings/destinations/b.yaml:1: name: 'X' is already the name of mappings/destinations/a.yaml"]


def test_all_problems_of_all_files_are_reported_at_once(load_errors):
    problems = load_errors({
        "a.yaml": with_body('k: "{{ settings.nope }}"', 'j: {"@paht": x}', 'l: "{{ vars.v }}"'),
        "b.yaml": "",
        "c.yaml": GOOD.replace("name: X", "name: C") + "    required: [vars.q]\n",
        "d.yaml": GOOD.replace("name: X", "name: D"),  # fine: loads, reports nothing
        "e.yaml": with_body("a: [1").replace("name: X", "name: E"),
    })
    assert problems == [
        "mappings/destinations/a.yaml:14: actions.identify.body.k: unknown setting 'settings.nope' "
        "(declared: region, token)",
        "mappings/destinations/a.yaml:15: actions.identify.body.j.@paht: unknown directive '@paht'",
        "mappings/destinations/a.yaml:16: actions.identify.body.l: unknown variable 'vars.v' "
        "(defined before this point: none)",
        "mappings/destinations/b.yaml:1: the file is empty",
        "mappings/destinations/c.yaml:14: actions.identify.required[0]: 'vars.q' names a variable "
        "this action does not define",
        "mappings/destinations/e.yaml:15: invalid YAML: while parsing a flow sequence expected ',' or ']', "
        "but got '<stream end>'",
    ]


def test_missing_destinations_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as info:
        Engine(tmp_path / "empty")
    assert [str(p) for p in info.value.problems] == ["empty: no destinations folder at empty/destinations"]


# --------------------------------------------------------------------------- settings resolution

@pytest.fixture
def engine_x(tmp_path):
    return Engine(write_mappings(tmp_path, {"x.yaml": GOOD, "my-dest.yaml": GOOD.replace("name: X", "name: My Dest")}))


def test_missing_required_setting_names_the_environment_variable(engine_x):
    with pytest.raises(ConfigError) as info:
        engine_x.route("x", {}, environ={})
    assert [str(p) for p in info.value.problems] == [
        "settings.token: x: 'token' is required: pass it in the settings or set EVENTMAP_X_TOKEN"]


def test_every_missing_required_setting_is_named_once(tmp_path):
    text = GOOD.replace("required: [token]", "required: [token, region2]").replace(
        "    region: {type: string, default: eu}\n", "    region: {type: string, default: eu}\n    region2: {type: string}\n")
    eng = Engine(write_mappings(tmp_path, {"x.yaml": text}))
    with pytest.raises(ConfigError) as info:
        eng.route("x", {}, environ={})
    assert [str(p) for p in info.value.problems] == [
        "settings.token: x: 'token' is required: pass it in the settings or set EVENTMAP_X_TOKEN",
        "settings.region2: x: 'region2' is required: pass it in the settings or set EVENTMAP_X_REGION2"]


def test_environment_variable_name_uses_the_file_name_with_underscores(engine_x):
    with pytest.raises(ConfigError) as info:
        engine_x.route("My Dest", None, environ={})
    assert [str(p) for p in info.value.problems] == [
        "settings.token: my-dest: 'token' is required: pass it in the settings or set EVENTMAP_MY_DEST_TOKEN"]
    route = engine_x.route("my-dest", None, environ={"EVENTMAP_MY_DEST_TOKEN": "t0k"})
    assert route.settings == {"token": "t0k", "region": "eu"}


def test_environment_supplies_a_setting_and_defaults_apply(engine_x, monkeypatch):
    monkeypatch.setenv("EVENTMAP_X_TOKEN", "from-env")
    route = engine_x.route("x")
    assert route.settings == {"token": "from-env", "region": "eu"}
    assert route.secrets == frozenset({"from-env"})


def test_given_settings_win_over_environment_and_defaults(engine_x):
    route = engine_x.route("x", {"token": "given", "region": "us"}, environ={"EVENTMAP_X_TOKEN": "env"})
    assert route.settings == {"token": "given", "region": "us"}


def test_unknown_setting_key_is_reported(engine_x):
    with pytest.raises(ConfigError) as info:
        engine_x.route("x", {"token": "t", "tokn": "t"}, environ={})
    assert [str(p) for p in info.value.problems] == [
        "settings.tokn: x: unknown setting (declared: region, token)"]


def test_a_setting_of_the_wrong_type_is_reported_and_a_secret_is_not_shown(engine_x):
    """jsonschema-rs says yes to good settings; jsonschema explains the others, with the same words as before."""
    with pytest.raises(ConfigError) as info:
        engine_x.route("x", {"token": 12345, "region": 7}, environ={})
    assert sorted(str(p) for p in info.value.problems) == [
        "settings.region: x: 7 is not valid: expected type string",
        "settings.token: x: *** is not valid: expected type string"]


def test_unknown_destination(engine_x):
    with pytest.raises(ConfigError) as info:
        engine_x.route("nope", {})
    assert [str(p) for p in info.value.problems] == ["destination: unknown destination 'nope' (known: my-dest, x)"]


# --------------------------------------------------------------------------- schema and compiler problems in one run

def test_schema_and_compiler_problems_of_one_action_come_in_one_run(load_errors):
    """Issue 22: a misspelt key used to hide the unknown filter and the undeclared setting until the next run."""
    text = GOOD.replace("{{ settings.region }}", "{{ settings.base }}") + (
        '      name: {"@path": event.event, "@filter": snakecase}\n'
        "    requird: [id]\n")
    problems = load_errors({"x.yaml": text})
    assert problems[0] == (f"{FILE}:15: actions.identify.requird: unknown key 'requird' (expected one of: batch, "
                           "body, description, envelope, events, request, required, steps, type, vars, when)")
    assert problems[1].startswith(f"{FILE}:14: actions.identify.body.name.@filter: unknown filter 'snakecase' "
                                  "(known: ")
    assert problems[2] == f"{FILE}:11: actions.identify.request.url: unknown setting 'settings.base' (declared: region, token)"
    assert len(problems) == 3


NAMED = """\
  purchase:
    type: trak
    events: [Order Completed]
    request: {url: "https://x.test/p"}
    body: {id: {"@path": event.userId}}
"""


@pytest.mark.parametrize(("change", "expected"), [
    # a wrong value for a key the compiler needs: not also "the named action needs 'type'"
    (lambda text: text + NAMED,
     [f'{FILE}:15: actions.purchase.type: "trak" is not one of: "identify", "track", "page", "screen", "group", '
      '"alias"']),
    # vars that are not an object: the action is left out whole, so its reads of vars.a are not blamed
    (lambda text: text.replace("    body:\n", "    vars: [a]\n    body:\n").replace("event.userId", "vars.a"),
     [f"{FILE}:12: actions.identify.vars: expected an object, got a list"]),
    # a setting declared wrongly stays declared: the URL that reads it is not blamed
    (lambda text: text.replace("region: {type: string, default: eu}", "region: eu"),
     [f"{FILE}:7: settings.properties.region: expected an object, got a string"]),
    # a step that is not an object: the next step's read of steps.first is not blamed
    (lambda text: text.replace("""    request:
      url: "https://x.test/{{ settings.region }}"
    body:
      id: {"@path": event.userId}
""", """    steps:
      first: 3
      second:
        request: {url: "https://x.test/{{ steps.first.body.id }}"}
        body: {}
"""), [f"{FILE}:11: actions.identify.steps.first: expected an object, got a number"]),
], ids=["wrong-type", "vars-not-an-object", "setting-declared-wrongly", "step-not-an-object"])
def test_what_follows_from_a_refused_part_is_not_reported_again(load_errors, change, expected):
    assert load_errors({"x.yaml": change(GOOD)}) == expected


def test_a_list_item_the_schema_refuses_leaves_its_list_out_and_the_rest_is_compiled(load_errors):
    """Not the item alone: the items after it would move, and the compiler would name the wrong ones."""
    problems = load_errors({"x.yaml": with_body('n: {"@path": event.x, "@filter": snakecase}') + "    required: [id, 3]\n"})
    assert problems[0] == f"{FILE}:15: actions.identify.required[1]: does not match any allowed form"
    assert problems[1].startswith(f"{FILE}:14: actions.identify.body.n.@filter: unknown filter 'snakecase'")
    assert len(problems) == 2


def test_a_file_without_its_top_level_keys_is_not_compiled(load_errors):
    """Too little is left to compile (no name, or settings): the schema's problems alone."""
    assert load_errors({"x.yaml": with_body('n: {"@path": event.x, "@filter": snakecase}').replace("name: X\n", "")}) == [
        f"{FILE}:1: 'name' is required"]


def test_a_source_file_reports_its_schema_and_compiler_problems_in_one_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = write_mappings(tmp_path, {"x.yaml": GOOD})
    (root / "sources").mkdir()
    (root / "sources" / "hook.yaml").write_text("""\
name: Hook
settings: {type: object, properties: {}}
webhook: {type: kind, id: id, ignor: {PING: ping}}
handlers:
  created:
    events:
      - {type: track, userId: {"@path": payload.user}, event: {"@path": payload.kind, "@filter": snakecase}}
""", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        Engine(root)
    assert [str(p) for p in raised.value.problems] == [
        "mappings/sources/hook.yaml:3: webhook.ignor: unknown key 'ignor' (expected one of: id, ignore, type)",
        "mappings/sources/hook.yaml:7: handlers.created.events[0].event.@filter: unknown filter 'snakecase' (known: "
        + str(raised.value.problems[1]).split("(known: ")[1],
    ]
