"""A request's headers may merge an object of headers (a webhook's custom headers from its settings), and a
destination may leave batching off until a route turns it on: through real destination files."""
from __future__ import annotations

import dataclasses

import pytest
from conftest import write_mappings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.deliver.http import RequestError, check_sendable
from engine.render.endpoint import FRAMING

HEAD = """\
name: Lang
settings:
  type: object
  properties:
    secret: {type: string, secret: true}
    token: {type: string, secret: true}
    headers: {type: object}
"""

ACTION = """\
actions:
  track:
    request:
      url: "https://lang.test/t"
      headers:
        X-Named: named
        "@merge": {"@path": settings.headers}
        X-Signature: "{{ body | hmac_sha1(settings.secret) }}"
      auth: {bearer: "{{ settings.token }}"}
    body: {event: {"@path": event.event}}
"""

TRACK = {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1"}


def engine_with(tmp_path, text: str = HEAD + ACTION) -> Engine:
    return Engine(write_mappings(tmp_path, {"lang.yaml": text}))


def render(engine, headers, event=TRACK):
    return engine.render(event, "lang", {"secret": "s", "token": "t0k", "headers": headers})


def test_merged_headers_come_under_the_named_ones_auth_and_the_signature(tmp_path):
    engine = engine_with(tmp_path)
    outcome = render(engine, {"X-Tenant": "acme", "x-named": "mine", "AUTHORIZATION": "Basic x",
                              "x-signature": "forged", "content-type": "application/cloudevents+json", "X-Count": 3,
                              "X-Flag": True, "X-Empty": "", "X-None": None})
    assert outcome.status == "send", outcome.to_dict()
    headers = outcome.requests[0].headers
    assert headers["X-Tenant"] == "acme" and headers["X-Count"] == "3" and headers["X-Flag"] == "true"
    assert headers["X-Named"] == "named" and headers["Authorization"] == "Bearer t0k"
    assert headers["Content-Type"] == "application/cloudevents+json"   # replaces the JSON default, one spelling
    # the mapping's own names win in any case: one header each, never two spellings
    assert sorted(name.lower() for name in headers) == sorted({name.lower() for name in headers})
    assert "x-named" not in headers and "x-signature" not in headers and "AUTHORIZATION" not in headers
    assert "X-Empty" not in headers and "X-None" not in headers
    import hashlib
    import hmac
    assert headers["X-Signature"] == hmac.new(b"s", outcome.requests[0].encoded_body(), hashlib.sha1).hexdigest()


def test_no_object_no_merged_headers(tmp_path):
    headers = render(engine_with(tmp_path), None).requests[0].headers
    assert set(headers) == {"X-Named", "Authorization", "Content-Type", "X-Signature"}


@pytest.mark.parametrize(("headers", "message"), [
    ({"X Tenant": "a"}, "'X Tenant' is not a header name"),
    ({"X-Tenant": {"a": 1}}, "the value of 'X-Tenant' is an object, not text"),
    ({"Host": "evil.test"}, "'Host' is set by the HTTP client"),
    ({"content-length": "5"}, "'content-length' is set by the HTTP client"),
])
def test_headers_a_request_cannot_carry_reject_the_event_saying_which(tmp_path, headers, message):
    outcome = render(engine_with(tmp_path), headers)
    assert outcome.status == "rejected"
    (problem,) = outcome.errors
    assert problem.path == "actions.track.request.headers.@merge" and message in problem.message


def test_a_merged_value_no_header_can_carry_is_refused_before_sending_naming_the_header(tmp_path):
    """Values are checked where every header's are (deliver.http.check_sendable): a line break never reaches
    the wire to start a header of its own."""
    (request,) = render(engine_with(tmp_path), {"X-Tenant": "a\r\nX-Injected: 1"}).requests
    with pytest.raises(RequestError, match=r"header 'X-Tenant': its value holds '\\r' \(U\+000D\)"):
        check_sendable(request)


def test_a_merge_that_is_not_an_object_rejects_the_event(tmp_path):
    text = HEAD.replace("headers: {type: object}", "headers: {type: string}") + ACTION
    outcome = render(engine_with(tmp_path, text), "X-Tenant: acme")
    assert outcome.status == "rejected" and "rendered to a string, not an object of header names" in outcome.errors[0].message


def test_merged_headers_may_read_the_event(tmp_path):
    text = HEAD + ACTION.replace('{"@path": settings.headers}', '{"@path": event.context.headers}')
    outcome = engine_with(tmp_path, text).render({**TRACK, "context": {"headers": {"X-Trace": "abc"}}}, "lang",
                                                 {"secret": "s", "token": "t"})
    assert outcome.requests[0].headers["X-Trace"] == "abc"


TOKEN = st.text(alphabet="!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1,
                max_size=12)
VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.lists(st.integers(), max_size=2))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=st.dictionaries(st.one_of(TOKEN, st.text(max_size=8)), VALUES, max_size=5))
def test_any_object_of_headers_is_sent_exactly_or_rejects_that_event_alone(tmp_path_factory, headers):
    engine = _engine(tmp_path_factory)
    outcome = render(engine, headers)
    if outcome.status == "rejected":
        (problem,) = outcome.errors
        assert problem.path == "actions.track.request.headers.@merge"
        return
    assert outcome.status == "send"
    sent = outcome.requests[0].headers
    for name, value in headers.items():
        if value is None or value == "" or name.lower() in {"x-named", "authorization", "x-signature"}:
            continue
        shown = "Content-Type" if name.lower() == "content-type" else name
        assert sent[shown] == ({True: "true", False: "false"}[value] if isinstance(value, bool) else str(value))
        assert name.lower() not in FRAMING
    try:   # what no header can carry is refused before sending, naming the header: never sent, never a crash
        check_sendable(outcome.requests[0])
    except RequestError as exc:
        assert exc.path.startswith("headers.")
        assert not all(v.isascii() and v.isprintable() for v in sent.values())
    assert render(engine, {"X-Ok": "1"}).status == "send"   # the next event goes on


_ENGINES: dict = {}


def _engine(tmp_path_factory) -> Engine:
    if "engine" not in _ENGINES:
        _ENGINES["engine"] = engine_with(tmp_path_factory.mktemp("merge"))
    return _ENGINES["engine"]


# --------------------------------------------------------------------------- batching off until a route asks

BATCHED = HEAD + """\
batch: {max_events: 10, request: {url: "https://lang.test/t"}}
limits: {batch: false}
actions:
  track:
    request: {url: "https://lang.test/t"}
    body: {event: {"@path": event.event}}
"""


def test_a_destination_may_leave_batching_off_until_a_route_turns_it_on(tmp_path):
    engine = engine_with(tmp_path, BATCHED)
    route = engine.route("lang", {"secret": "s"}, environ={})
    assert route.limits.batch is False
    outcomes = [engine.render({**TRACK, "messageId": f"m{i}"}, route) for i in range(3)]
    assert [r.body for r in engine.batch(route, outcomes)] == [{"event": "Signed Up"}] * 3
    on = dataclasses.replace(route, limits=dataclasses.replace(route.limits, batch=True))
    assert [r.body for r in engine.batch(on, outcomes)] == [[{"event": "Signed Up"}] * 3]


def test_a_routes_file_turns_batching_on(tmp_path):
    from engine.load.config import routes_from_config
    engine = engine_with(tmp_path, BATCHED)
    (route,) = routes_from_config(engine, {"destinations": {"lang": {"settings": {"secret": "s"},
                                                                      "limits": {"batch": True}}}})
    assert route.limits.batch is True
