"""Expressions real vendors need: request methods from templates, batch requests that read their
items, and actions chosen by event name. Each renders through a real destination file."""
from __future__ import annotations

import json

import pytest
from conftest import REPO, write_mappings
from test_language import HEAD

from engine import Engine
from engine.problems import ConfigError
from engine.render.endpoint import METHODS

TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1",
         "properties": {"verb": "put", "order_id": "o-1"}}


def engine_with(tmp_path, actions: str, more: str = "") -> Engine:
    return Engine(write_mappings(tmp_path, {"lang.yaml": HEAD + more + "actions:\n" + actions}))


# --------------------------------------------------------------------------- method from a template

def test_the_schemas_methods_are_the_ones_a_template_is_checked_against():
    schema = json.loads((REPO / "schemas" / "mapping.schema.json").read_text(encoding="utf-8"))
    assert schema["$defs"]["request"]["properties"]["method"]["anyOf"][0]["enum"] == list(METHODS)


@pytest.mark.parametrize(("method", "settings", "want"), [
    ("{{ event.properties.verb }}", {}, "PUT"),                  # from the event, case-insensitively
    ("{{ settings.region }}", {"region": "patch"}, "PATCH"),  # from a setting, fixed per route
    ("{{ settings.region }}", {"region": "get"}, "GET"),      # GET sends no body
])
def test_a_request_method_may_come_from_the_event_or_a_setting(tmp_path, method, settings, want):
    engine = engine_with(tmp_path, f"""\
  track:
    request: {{url: "https://lang.test/orders/{{{{ event.properties.order_id }}}}", method: "{method}"}}
    body: {{id: {{"@path": event.properties.order_id}}}}
""")
    outcome = engine.render(TRACK, "lang", {"secret": "s", **settings})
    assert outcome.status == "send", outcome.to_dict()
    request = outcome.requests[0]
    assert request.method == want and request.url == "https://lang.test/orders/o-1"
    assert (request.body is None) == (want == "GET")
    assert ("Content-Type" in request.headers) == (want != "GET")


@pytest.mark.parametrize(("method", "settings", "event"), [
    ("{{ event.properties.verb }}", {}, {**TRACK, "properties": {"verb": "FETCH"}}),
    ("{{ event.properties.verb }}", {}, {**TRACK, "properties": {}}),
    ("{{ settings.region }}", {"region": "teleport"}, TRACK),
])
def test_a_method_outside_the_allowed_ones_rejects_the_event_and_says_which(tmp_path, method, settings, event):
    engine = engine_with(tmp_path, f"""\
  track:
    request: {{url: "https://lang.test/t", method: "{method}"}}
    body: {{a: 1}}
""")
    outcome = engine.render(event, "lang", {"secret": "s", **settings})
    assert outcome.status == "rejected"
    [error] = outcome.errors
    assert error.path == "actions.track.request.method"
    assert "the request method rendered to" in error.message and "not one of GET, POST, PUT, PATCH, DELETE" in error.message


def test_a_method_that_is_neither_a_method_nor_a_template_is_a_load_error(tmp_path):
    with pytest.raises(ConfigError, match=r"lang.yaml:\d+: actions.track.request.method"):
        engine_with(tmp_path, """\
  track:
    request: {url: "https://lang.test/t", method: FETCH}
    body: {a: 1}
""")


# --------------------------------------------------------------------------- batch requests read their items

def test_batch_urls_and_headers_read_the_batchs_items(tmp_path):
    engine = engine_with(tmp_path, """\
  track:
    request: {url: "https://lang.test/one"}
    body: {user: {"@path": event.userId}, order: {"@path": event.properties.order_id}}
""", more="""\
batch:
  max_events: 10
  request:
    url: "https://lang.test/batch/{{ items[0].user | url_segment }}"
    headers:
      X-Count: "{{ items | length }}"
      X-Orders: "{{ items | map(attribute='order') | join(',') }}"
      X-Last: {"@path": "items[-1].order"}
""")
    route = engine.route("lang", {"secret": "s"})
    events = [{**TRACK, "userId": f"u/{i}", "messageId": f"m{i}", "properties": {"order_id": f"o{i}"}} for i in range(3)]
    [request] = engine.batch(route, [engine.render(event, route) for event in events])
    assert request.url == "https://lang.test/batch/u%2F0"
    assert request.headers["X-Count"] == "3" and request.headers["X-Orders"] == "o0,o1,o2"
    assert request.headers["X-Last"] == "o2"
    assert request.body == [{"user": f"u/{i}", "order": f"o{i}"} for i in range(3)]


# --------------------------------------------------------------------------- actions chosen by event name

NAMED = """\
  purchase:
    type: track
    events: [Order Completed, Order Refunded]
    request: {url: "https://lang.test/purchase"}
    body: {order: {"@path": event.properties.order_id}}
  big_spender:
    type: track
    when: "event.properties.revenue > `100`"
    request: {url: "https://lang.test/vip"}
    body: {vip: {"@path": event.userId}}
  track:
    request: {url: "https://lang.test/track"}
    body: {event: {"@path": event.event}}
"""


@pytest.mark.parametrize(("event", "action", "url"), [
    ({"event": "Order Completed", "properties": {"order_id": "o-1", "revenue": 500}}, "purchase", "/purchase"),
    ({"event": "Order Refunded", "properties": {"order_id": "o-1"}}, "purchase", "/purchase"),
    ({"event": "Signed Up", "properties": {"revenue": 500}}, "big_spender", "/vip"),   # first match in file order
    ({"event": "Signed Up", "properties": {"revenue": 5}}, "track", "/track"),        # the call type's own action
])
def test_a_track_goes_to_the_first_named_action_that_takes_it_else_to_the_track_action(tmp_path, event, action, url):
    engine = engine_with(tmp_path, NAMED)
    outcome = engine.render({**TRACK, **event}, "lang", {"secret": "s"})
    assert outcome.status == "send", outcome.to_dict()
    assert outcome.action == action
    assert outcome.requests[0].url == "https://lang.test" + url and outcome.requests[0].action == action


def test_without_the_call_types_own_action_unmatched_events_are_skipped_with_the_subscriptions(tmp_path):
    engine = engine_with(tmp_path, NAMED.split("  track:")[0])
    outcome = engine.render({**TRACK, "event": "Signed Up"}, "lang", {"secret": "s"})
    assert outcome.status == "skipped"
    assert outcome.reason == ("no action of Lang takes this track (purchase: events 'Order Completed', "
                              "'Order Refunded'; big_spender: when event.properties.revenue > `100`)")
    identify = engine.render({"type": "identify", "userId": "u1", "messageId": "m2"}, "lang", {"secret": "s"})
    assert identify.status == "skipped" and "call type 'identify' is not accepted by Lang (accepts: track)" in identify.reason


def test_named_actions_batch_and_reject_under_their_own_name(tmp_path):
    engine = engine_with(tmp_path, NAMED.replace('body: {order: {"@path": event.properties.order_id}}',
                                                 'body: {order: {"@path": event.properties.order_id}}\n    required: [order]'))
    outcome = engine.render({**TRACK, "properties": {}}, "lang", {"secret": "s"})
    assert outcome.status == "rejected" and outcome.action == "purchase"
    assert outcome.errors[0].message == "Lang purchase: 'order' is required but missing or empty (mapped from path event.properties.order_id)"


@pytest.mark.parametrize(("actions", "message"), [
    ("  buy:\n    events: [A]\n    body: {a: 1}\n", "actions.buy: the named action 'buy' needs 'type'"),
    ("  buy:\n    type: track\n    body: {a: 1}\n", "actions.buy: the named action 'buy' needs 'events' (event names) or 'when'"),
    ("  track:\n    events: [A]\n    body: {a: 1}\n", "actions.track.events: 'events' chooses events for a named action"),
    ("  track:\n    type: page\n    body: {a: 1}\n", "actions.track.type: the 'track' action takes track calls"),
    ("  buy:\n    type: track\n    when: 'a ||'\n    body: {a: 1}\n", "actions.buy.when: when 'a ||' is not a valid JMESPath"),
    ("  Buy Now:\n    type: track\n    events: [A]\n    body: {a: 1}\n", "actions"),
])
def test_named_actions_are_checked_at_load(tmp_path, actions, message):
    with pytest.raises(ConfigError) as error:
        engine_with(tmp_path, actions.replace("    body:", "    request: {url: 'https://lang.test/x'}\n    body:"))
    assert message in str(error.value) and "lang.yaml:" in str(error.value)


def test_explain_names_the_chosen_action(tmp_path, capsys):
    from engine.cli import main
    root = tmp_path / "m"
    engine_with(root, NAMED)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({**TRACK, "properties": {"order_id": "o-9"}}), encoding="utf-8")
    code = main(["explain", "lang", str(event), "--mappings", str(root / "mappings"), "--settings", '{"secret": "s"}'])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("action purchase (events 'Order Completed', 'Order Refunded')\n")
    assert '= "o-9"' in out
