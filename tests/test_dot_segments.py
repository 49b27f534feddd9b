"""A dot segment in a URL template never reaches the vendor as one.

An id of '..' put into Crisp's ``.../people/events/{{ vars.people_id | url_segment }}``
would be sent as ``POST .../people/`` with Crisp's credentials: requests and
urllib3 remove dot segments, after turning ``%2E`` back into ``.``, so no
spelling of them survives. A real local server shows what the HTTP client
sends; the rendered URL is checked, and such an event is rejected with the reason.
"""
from __future__ import annotations

import re

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from engine import Engine
from engine.deliver.http import HttpClient
from engine.render.endpoint import dot_segment
from engine.render.request import Request


def raw_path(request) -> Response:
    """The vendor answers with the path exactly as it arrived (before any decoding)."""
    return Response(request.environ.get("RAW_URI") or request.environ["REQUEST_URI"], 200, content_type="text/plain")


@pytest.fixture(scope="module")
def vendor():
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request(re.compile(".*")).respond_with_handler(raw_path)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture(scope="module")
def engine():
    return Engine()


def crisp_track(engine, vendor, email: str, base: str = ""):
    settings = {"api_key": "crisp-id:crisp-key", "website_id": "site-1", "base_url": vendor.url_for(base).rstrip("/")}
    event = {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1",
             "context": {"traits": {"email": email}}}
    return engine.render(event, "crisp", settings)


@pytest.mark.parametrize("sent", ["/people/events/..", "/people/events/%2E%2E", "/people/events/.%2e/x",
                                  "/people/events/./x"])
def test_the_http_client_never_sends_a_dot_id_as_an_opaque_segment(vendor, sent):
    """Why the rendered URL is checked: what arrives has lost segments, or carries a raw dot segment
    that the vendor's server resolves (requests turns %2E%2E back into '..')."""
    request = Request("test", "track", "GET", vendor.url_for(sent), {}, {}, None, "json", ("m1",), frozenset())
    arrived = HttpClient(timeout=5).send(request).body
    assert arrived != sent
    assert arrived.count("/") < sent.count("/") or dot_segment("http://vendor" + arrived) is not None


@pytest.mark.parametrize("email", ["..", ".", " .. "])
def test_an_id_that_is_a_dot_segment_is_rejected_naming_the_url(engine, vendor, email):
    outcome = crisp_track(engine, vendor, email)
    assert outcome.status == "rejected" and outcome.requests == []
    [error] = outcome.errors
    assert error.path == "actions.track.steps.event.request.url"
    assert "'..'" in error.message or "'.'" in error.message
    assert "another path" in error.message
    assert "crisp-key" not in str(outcome.to_dict())


@pytest.mark.parametrize("base", ["/v1/%2E%2E", "/v1/%2e.", "/v1/."])
def test_a_percent_encoded_dot_segment_anywhere_in_the_path_is_rejected_too(engine, vendor, base):
    outcome = crisp_track(engine, vendor, "ann@example.com", base)
    assert outcome.status == "rejected" and outcome.errors[0].path == "actions.track.steps.event.request.url"


@pytest.mark.parametrize("email", ["...", "a..b", ".hidden", "ann@example.com"])
def test_ids_with_dots_that_are_not_dot_segments_arrive_exactly_as_rendered(engine, vendor, email):
    outcome = crisp_track(engine, vendor, email)
    assert outcome.status == "send", outcome.errors
    [request] = outcome.requests
    answer = HttpClient(timeout=5).send(request)
    assert answer.body.endswith("/people/events/" + request.url.rsplit("/", 1)[1])
    assert answer.body == request.url[len(vendor.url_for("").rstrip("/")):]


def test_dots_in_the_query_string_are_left_alone():
    assert dot_segment("https://api.example/v1/items?path=/../x#/./y") is None
    assert dot_segment("https://api.example") is None
