"""What ``eventmap validate`` accepts renders without a crash, and templates stay within bounds."""
from __future__ import annotations

import json
import textwrap

import pytest
from conftest import REPO, write_mappings
from test_cli import no_traceback, run, write_event

from engine import Engine
from engine.problems import ConfigError

ORDER = json.loads((REPO / "fixtures" / "events" / "track-order-completed.json").read_text(encoding="utf-8"))


def one_field(value: str) -> str:
    """A destination whose track body is ``v: <value>`` (value is YAML, on line 8)."""
    return textwrap.dedent("""\
        name: T
        settings: {type: object, properties: {}}
        actions:
          track:
            request:
              url: https://t.test/x
            body:
              v: """) + value + "\n"


def render_field(tmp_path, value: str):
    engine = Engine(write_mappings(tmp_path, {"t.yaml": one_field(value)}))
    return engine.render(ORDER, engine.route("t", {}, environ={}))


def test_a_folded_template_with_a_deeper_continuation_line_validates_and_renders(tmp_path):
    """The generated code quotes the template in comments: a line break must not end the comment."""
    folded = ">\n        {{ event.properties.order_id\n             | lower }}\n        and {{ event.properties.currency }}"
    write_mappings(tmp_path, {"t.yaml": one_field(folded)})
    assert run("validate", cwd=tmp_path).returncode == 0
    name = write_event(tmp_path, ORDER)
    result = run("render", "t", name, cwd=tmp_path)
    no_traceback(result)
    assert json.loads(result.stdout)["requests"][0]["body"] == {"v": "ord-50314\nand EUR\n"}
    explained = run("explain", "--code", "t", "track", cwd=tmp_path)
    no_traceback(explained)
    assert "| lower" in explained.stdout


@pytest.mark.parametrize("template, why", [
    ("{{ ''.__class__ }}", "reads '__class__'"),
    ("{{ event.properties['__dict__'] }}", "reads '__dict__'"),
    ("x{{ traits.update({'a': 1}) }}", "calls '.update()'"),
    ("{{ event.properties.products.append(1) }}", "calls '.append()'"),
])
def test_templates_the_sandbox_refuses_are_reported_at_load_with_file_and_line(tmp_path, template, why):
    write_mappings(tmp_path, {"t.yaml": one_field(json.dumps(template))})
    result = run("validate", cwd=tmp_path)
    no_traceback(result)
    assert result.returncode != 0
    assert "t.yaml:8" in result.stdout + result.stderr and why in result.stdout + result.stderr


def test_an_event_key_starting_with_one_underscore_is_still_readable(tmp_path):
    event = {**ORDER, "properties": {"_id": "abc"}}
    engine = Engine(write_mappings(tmp_path, {"t.yaml": one_field('"{{ event.properties._id }}"')}))
    assert engine.render(event, engine.route("t", {}, environ={})).requests[0].body == {"v": "abc"}


@pytest.mark.parametrize("template", [
    "{{ 'a' * 300000000 }}",
    "x{{ [1] * 300000000 }}",
    "{{ 300000000 * 'ab' }}",
    "{{ 2 ** 10000000 }}",
    "{{ 'a' | center(300000000) }}",
    "{{ 'a'.ljust(300000000) }}",
    "{{ '%0300000000d' | format(1) }}",
    "{{ '{:>300000000}'.format(1) }}",
    "{{ range(100000) | join('x' * 1000) }}",
    "{{ ('a' * 9000000) | replace('a', 'bb') }}",
    "{% for i in range(100000) %}{% for j in range(1000) %}0123456789{% endfor %}{% endfor %}",
    "{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n else s | length }}{% endmacro %}{{ f('a', 40) }}",
])
def test_templates_cannot_build_text_or_lists_without_bound(tmp_path, template):
    outcome = render_field(tmp_path, json.dumps(template))
    assert outcome.status == "rejected"
    assert "a template may build at most" in outcome.errors[0].message


@pytest.mark.parametrize("template, expected", [
    ("{{ 'ab' * 3 }}", "ababab"),
    ("{{ [1, 2] + [3] }}", [1, 2, 3]),
    ("{{ event.properties.total ** 2 }}", 3306.25),
    ("{{ 'order %s' | format(event.properties.order_id) }}", "order ORD-50314"),
    ("{{ '{} {:>4}'.format('a', 'b') }}", "a    b"),
    ("{{ event.properties.products | map(attribute='sku') | join(',') }}", "45790-32,46493-32"),
])
def test_ordinary_uses_of_the_bounded_operations_still_work(tmp_path, template, expected):
    outcome = render_field(tmp_path, json.dumps(template))
    assert outcome.status == "send", outcome.errors
    assert outcome.requests[0].body == {"v": expected}


def test_namespace_is_not_available_to_carry_state_across_loops(tmp_path):
    with pytest.raises(ConfigError, match="'namespace' is not a scope"):  # refused at load, by file and line
        render_field(tmp_path, json.dumps("{% set ns = namespace(s='a') %}{{ ns.s }}"))


def test_loading_reports_instead_of_raising(tmp_path):
    with pytest.raises(ConfigError) as caught:
        Engine(write_mappings(tmp_path, {"t.yaml": one_field(json.dumps("{{ ''.__class__.__mro__ }}"))}))
    assert "t.yaml:8" in str(caught.value)


def test_a_batch_request_that_cannot_be_made_sends_the_events_one_by_one(tmp_path):
    """Found by the property test: a default header reading the event fails in the batch request (it sees items)."""
    engine = Engine(write_mappings(tmp_path, {"b.yaml": """\
        name: B
        settings: {type: object, properties: {}}
        defaults:
          request:
            url: https://b.test/one
            headers: {X-Total: "{{ event.properties.total * 2 }}"}
        actions:
          track:
            body: {id: {"@path": event.messageId}}
        batch:
          max_events: 10
          request: {url: https://b.test/batch}
        """}))
    route = engine.route("b", {}, environ={})
    events = [{**ORDER, "messageId": f"m{n}"} for n in range(3)]
    requests = engine.batch(route, [engine.render(event, route) for event in events])
    assert [(r.url, r.headers["X-Total"], r.body) for r in requests] == [
        ("https://b.test/one", "115.0", {"id": f"m{n}"}) for n in range(3)]
