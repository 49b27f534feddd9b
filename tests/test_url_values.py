"""A value from an event or a vendor's answer is one URL segment (or one query value), whatever the template.

In ``{{ settings.base_url }}/users/{{ steps.lookup.body.id }}/events`` an id of ``x?admin=1#`` must
not end the path and start a query: values that are not the operator's (settings, vars made from
settings alone) are percent-encoded where the URL is compiled, for every destination, step and
source lookup. A real local server shows the path exactly as it arrives.
"""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from conftest import write_mappings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from werkzeug import Response

from engine import ConfigError, Engine
from engine.deliver.http import HttpClient

HOSTILE = ["x?admin=1#", "a/b", "..%2f..%2fadmin", "..;/admin", "..\\..\\admin", "a b", "%2f", "ü"]
ENCODED = {"x?admin=1#": "x%3Fadmin%3D1%23", "a/b": "a%2Fb", "..%2f..%2fadmin": "..%252f..%252fadmin",
           "..;/admin": "..%3B%2Fadmin", "..\\..\\admin": "..%5C..%5Cadmin", "a b": "a%20b", "%2f": "%252f",
           "ü": "%C3%BC"}


def raw_path(request) -> Response:
    """The vendor answers a lookup with a hostile id, and anything else with the path as it arrived."""
    uri = request.environ.get("RAW_URI") or request.environ["REQUEST_URI"]
    answer = {"id": request.args["id"]} if uri.startswith("/lookup/") else {"path": uri}
    return Response(json.dumps(answer), 200, content_type="application/json")


@pytest.fixture(scope="module")
def vendor():
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request(re.compile(".*")).respond_with_handler(raw_path)
    server.start()
    yield server
    server.clear()
    server.stop()


DESTINATION = """\
name: X
settings:
  type: object
  properties:
    base_url: {type: string}
    prefix: {type: string}
defaults:
  request: {headers: {Accept: application/json}}
actions:
  identify:
    vars:
      api: "{{ settings.base_url }}/api"      # the operator's: kept as written
      id: {"@path": event.userId}
    request:
      url: "{{ vars.api }}/users/{{ vars.id }}/x/{{ event.userId | url_segment }}/e?u={{ event.userId }}&k={{ settings.prefix }}"
    body: {}
  track:
    vars:
      id: {"@path": event.userId}
    steps:
      lookup:
        request: {method: GET, url: "{{ settings.base_url }}/lookup/?id={{ event.properties.id }}"}
      events:
        request: {url: "{{ settings.base_url }}/users/{{ steps.lookup.body.id }}/events"}
        body: {ok: true}
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(write_mappings(tmp_path_factory.mktemp("urls"), {"x.yaml": DESTINATION}))


@pytest.mark.parametrize("value", HOSTILE)
def test_an_event_value_is_one_segment_and_one_query_value(engine, vendor, value):
    route = engine.route("x", {"base_url": vendor.url_for("").rstrip("/"), "prefix": "a/b?"})
    outcome = engine.render({"type": "identify", "userId": value, "messageId": "m1"}, route)
    assert outcome.status == "send", outcome.errors
    [request] = outcome.requests
    # the operator's base URL and settings stay as written; the event's value is escaped once, also where
    # the template already says url_segment
    assert request.url == (f"{vendor.url_for('').rstrip('/')}/api/users/{ENCODED[value]}/x/{ENCODED[value]}/e"
                           f"?u={ENCODED[value]}&k=a/b?")
    arrived = HttpClient(timeout=5).send(request).body["path"]
    assert arrived == f"/api/users/{ENCODED[value]}/x/{ENCODED[value]}/e?u={ENCODED[value]}&k=a/b?"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(min_size=1, max_size=40).filter(lambda v: v not in (".", "..")))
def test_any_event_value_stays_one_segment_and_one_query_value(engine, value):
    """Whatever the id, the URL keeps its shape: the same segments, the id decoded back from each place."""
    outcome = engine.render({"type": "identify", "userId": value, "messageId": "m1"},
                            engine.route("x", {"base_url": "https://x.test", "prefix": "p"}))
    assert outcome.status == "send", outcome.errors
    url = urlsplit(outcome.requests[0].url)
    assert (url.scheme, url.netloc, url.fragment) == ("https", "x.test", "")
    segments = url.path.split("/")
    assert segments[:3] == ["", "api", "users"] and segments[4] == "x" and segments[6] == "e" and len(segments) == 7
    assert unquote(segments[3]) == unquote(segments[5]) == value
    assert parse_qs(url.query, keep_blank_values=True, errors="strict") == {"u": [value], "k": ["p"]}


@pytest.mark.parametrize("value", HOSTILE)
def test_an_answer_value_cannot_change_a_later_steps_url(engine, vendor, value):
    route = engine.route("x", {"base_url": vendor.url_for("").rstrip("/")})
    event = {"type": "track", "event": "E", "userId": "u1", "messageId": "m1", "properties": {"id": value}}
    outcome = engine.render(event, route, responses=HttpClient(timeout=5))
    assert outcome.status == "send", outcome.errors
    lookup, events = outcome.requests
    assert lookup.url.endswith(f"/lookup/?id={ENCODED[value]}")
    assert events.url.endswith(f"/users/{ENCODED[value]}/events")
    assert HttpClient(timeout=5).send(events).body["path"] == f"/users/{ENCODED[value]}/events"


@pytest.mark.parametrize("value", ["..", ".", "%2e%2E"])
def test_a_dot_segment_from_an_answer_is_still_refused(engine, vendor, value):
    route = engine.route("x", {"base_url": vendor.url_for("").rstrip("/")})
    event = {"type": "identify", "userId": value, "messageId": "m1"}
    outcome = engine.render(event, route)
    if value == "%2e%2E":   # escaped, it is the text "%2e%2E", not a dot segment
        assert outcome.status == "send" and "/users/%252e%252E/" in outcome.requests[0].url
        return
    assert outcome.status == "rejected"
    assert "the request URL's path has the segment" in outcome.errors[0].message


def test_a_source_lookup_escapes_payload_values_and_keeps_settings_vars(tmp_path, vendor):
    root = tmp_path / "mappings"
    (root / "sources").mkdir(parents=True)
    (root / "destinations").mkdir()
    (root / "sources" / "s.yaml").write_text("""\
name: S
settings:
  type: object
  properties:
    base_url: {type: string}
vars:
  api: "{{ settings.base_url }}/api/v1"
webhook: {type: type, id: id}
lookups:
  thing:
    request: {method: GET, url: "{{ vars.api }}/things/{{ payload.thing }}"}
handlers:
  created:
    lookups: [thing]
    events:
      - {type: track, event: Thing, userId: u1, messageId: "{{ payload.id }}", properties: {"@path": lookups.thing}}
""", encoding="utf-8")
    source = Engine(root).source("s", {"base_url": vendor.url_for("").rstrip("/")})
    result = source.process({"type": "created", "id": "d1", "thing": "x?admin=1#"}, client=HttpClient(timeout=5))
    assert result.status == "events", result.errors
    assert result.events[0]["properties"] == {"path": "/api/v1/things/x%3Fadmin%3D1%23"}


@pytest.mark.parametrize("url, shown", [
    ("{{ event.properties.host }}/users", "{{ event.properties.host }}"),
    ("https://{{ event.userId }}.vendor.test/users", "{{ event.userId }}"),
    ("{{ settings.scheme }}://{{ vars.id }}/users", "{{ vars.id }}"),
])
def test_data_that_would_choose_the_host_is_refused_at_load(tmp_path, monkeypatch, url, shown):
    monkeypatch.chdir(tmp_path)
    text = f"""\
name: X
settings:
  type: object
  properties:
    scheme: {{type: string}}
actions:
  identify:
    vars:
      id: {{"@path": event.userId}}
    request: {{url: "{url}"}}
    body: {{}}
"""
    with pytest.raises(ConfigError) as refused:
        Engine(write_mappings(tmp_path, {"x.yaml": text}))
    [problem] = refused.value.problems
    assert str(problem).startswith("mappings/destinations/x.yaml:10: actions.identify.request.url: ")
    assert f"{shown} puts event or answer data in the URL's scheme or host" in problem.message


def test_a_value_after_the_question_mark_is_a_query_value_even_before_any_path(tmp_path):
    text = """\
name: X
settings: {type: object, properties: {}}
actions:
  identify:
    request: {url: "https://x.test?u={{ event.userId }}#{{ event.userId }}"}
    body: {}
"""
    engine = Engine(write_mappings(tmp_path, {"x.yaml": text}))
    outcome = engine.render({"type": "identify", "userId": "a/b&c=d#e", "messageId": "m1"}, engine.route("x", {}))
    assert outcome.requests[0].url == "https://x.test?u=a%2Fb%26c%3Dd%23e#a%2Fb%26c%3Dd%23e"


URL_PIECES = ["{{", "}}", "{%", "%}", "{#", "#}", " event.userId ", " settings.scheme ", " vars.id ", "https://", "x.test",
              "/", "?", "#", "=", "|", " url_segment ", "'", "(", ")", "a"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(URL_PIECES), min_size=1, max_size=8).map("".join),
       st.sampled_from(["url", "header", "body", "var"]))
def test_any_template_text_loads_or_is_refused_with_its_line(tmp_path, piece, where):
    """A URL, header, body value or var of any text, unclosed and mismatched template markers included:
    it loads, or each problem names its line; never an exception."""
    url = json.dumps(piece if where == "url" else "https://x.test/{{ vars.id }}")
    header = json.dumps(piece if where == "header" else "h")
    body = json.dumps(piece if where == "body" else "b")
    var = json.dumps(piece if where == "var" else "v")
    text = f"""\
name: X
settings:
  type: object
  properties:
    scheme: {{type: string}}
actions:
  identify:
    vars:
      id: {{"@path": event.userId}}
      other: {var}
    request: {{url: {url}, headers: {{X-Thing: {header}}}}}
    body: {{value: {body}}}
"""
    try:
        Engine(write_mappings(tmp_path / "fuzz", {"x.yaml": text}))
    except ConfigError as refused:
        assert all(p.line for p in refused.problems), refused.problems
