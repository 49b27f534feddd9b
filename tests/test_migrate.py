"""python -m engine.map.migrate rewrites mappings written before explicit scopes."""
from __future__ import annotations

import textwrap

from conftest import write_mappings
from test_language import HEAD

from engine import Engine
from engine.map.migrate import main, migrate_text

OLD = textwrap.dedent("""\
    actions:
      track:
        request: {url: "https://lang.test/{{ type }}?u={{ userId | url_segment }}"}
        vars:
          who: {"@path": [userId, "$.anonymousId"]}  # a comment stays
        required: [name]
        body:
          name: {"@path": event, "@filter": lower}
          all: {"@path": "@", "@filter": {pick: [[userId]]}}
          total: "{{ properties.total * 100 }}"
          cheap: {"@path": "properties.products[?price < `2`].sku"}
          n: {"@path": "length(properties.products)"}
          big: {"@if": "properties.total > `10`", "@then": big}
          items:
            "@each": properties.products
            "@map": {sku: {"@path": sku}, whole: {"@path": "@"}, user: {"@path": "$.userId"}, label: "{{ item.sku }}-{{ event }}"}
          lit: {"@literal": {"@path": kept}}
          who: "{{ vars.who }} in {{ settings.region }}"
    """)

NEW = textwrap.dedent("""\
    actions:
      track:
        request: {url: "https://lang.test/{{ event.type }}?u={{ event.userId | url_segment }}"}
        vars:
          who: {"@path": [event.userId, "event.anonymousId"]}  # a comment stays
        required: [name]
        body:
          name: {"@path": event.event, "@filter": lower}
          all: {"@path": "event", "@filter": {pick: [[userId]]}}
          total: "{{ event.properties.total * 100 }}"
          cheap: {"@path": "event.properties.products[?price < `2`].sku"}
          n: {"@path": "length(event.properties.products)"}
          big: {"@if": "event.properties.total > `10`", "@then": big}
          items:
            "@each": event.properties.products
            "@map": {sku: {"@path": item.sku}, whole: {"@path": "item"}, user: {"@path": "event.userId"}, label: "{{ item.sku }}-{{ event.event }}"}
          lit: {"@literal": {"@path": kept}}
          who: "{{ vars.who }} in {{ settings.region }}"
    """)

EVENT = {"type": "track", "event": "Cart Built", "userId": "u/1", "messageId": "m1",
         "properties": {"total": 12, "products": [{"sku": "a", "price": 1}, {"sku": "b", "price": 3}]}}


def test_old_forms_are_rewritten_in_place_and_the_result_loads_and_renders(tmp_path):
    new, skipped = migrate_text(OLD)
    assert new == NEW and skipped == []
    outcome = Engine(write_mappings(tmp_path, {"lang.yaml": HEAD + new})).render(EVENT, "lang", {"secret": "s"})
    assert outcome.status == "send", outcome.to_dict()
    assert outcome.requests[0].url == "https://lang.test/track?u=u%2F1"
    body = outcome.items[0]
    assert body["name"] == "cart built" and body["all"] == {"userId": "u/1"} and body["total"] == 1200
    assert body["cheap"] == ["a"] and body["n"] == 2 and body["big"] == "big"
    assert body["items"][1] == {"sku": "b", "whole": {"sku": "b", "price": 3}, "user": "u/1", "label": "b-Cart Built"}
    assert body["who"] == "u/1 in eu"


def test_the_old_forms_fail_to_load_and_say_what_to_write(tmp_path):
    try:
        Engine(write_mappings(tmp_path, {"lang.yaml": HEAD + OLD}))
    except Exception as exc:
        message = str(exc)
    assert "actions.track.body.cheap.@path: @path 'properties.products[?price < `2`].sku': 'properties' " \
           "is not a scope: write event.properties (scopes here: event, settings, vars)" in message
    assert "actions.track.vars.who.@path[1]: @path '$.anonymousId': '$.' is no longer the event; " \
           "write 'event.anonymousId'" in message
    assert "actions.track.body.all.@path: @path '@': '@' no longer means the whole event: write event" in message
    assert "actions.track.body.items.@map.sku.@path: @path 'sku': 'sku' is not a scope: write item.sku (the item) " \
           "or event.sku (the event)" in message
    assert "actions.track.body.total: template '{{ properties.total * 100 }}': 'properties' is not a scope: " \
           "write event.properties" in message
    assert "lang.yaml:" in message


def test_steps_is_reserved(tmp_path):
    try:
        Engine(write_mappings(tmp_path, {"lang.yaml": HEAD + NEW.replace("{{ vars.who }}", "{{ steps.find.id }}")}))
    except Exception as exc:
        message = str(exc)
    assert "'steps' reads the results of earlier steps, and this action has no steps" in message


def test_the_command_rewrites_files_and_check_lists_them(tmp_path, capsys):
    path = tmp_path / "acme.yaml"
    path.write_text(OLD, encoding="utf-8")
    assert main(["--check", str(path)]) == 1 and path.read_text(encoding="utf-8") == OLD
    assert main([str(path)]) == 0 and path.read_text(encoding="utf-8") == NEW
    assert capsys.readouterr().out == f"{path}\n{path}\n"


def test_python_files_have_the_yaml_in_their_strings_rewritten_and_the_rest_listed(tmp_path, capsys):
    path = tmp_path / "test_acme.py"
    path.write_text(
        'BODY = """\\\n    a: {"@path": traits.email}\n"""\n'
        "ONE = 'b: \"{{ properties.total }}\"\\nc: {\"@path\": \"$.userId\"}'\n"
        'BAD = "{{ unclosed"\n'
        'name = "x"\nF = f"k: {{{{ traits.name }}}} {name}"\n', encoding="utf-8")
    assert main(["--python", str(path)]) == 1  # rewritten, with work left for a person
    assert path.read_text(encoding="utf-8") == (
        'BODY = """\\\n    a: {"@path": event.traits.email}\n"""\n'
        "ONE = 'b: \"{{ event.properties.total }}\"\\nc: {\"@path\": \"event.userId\"}'\n"
        'BAD = "{{ unclosed"\n'
        'name = "x"\nF = f"k: {{{{ traits.name }}}} {name}"\n')
    notes = capsys.readouterr().err
    assert "line 5: not rewritten (TemplateSyntaxError" in notes and "line 7: an f-string: rewrite it by hand" in notes
