"""hmac_sha1/sha512, replace and replace_i, user_agent and try: in @filter lists and in templates."""
from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import re

import pytest
from conftest import REPO, write_mappings

from engine import Engine
from engine.map.filters import FILTERS, FilterError

EXAMPLE = re.compile(r"^\s*Example: (?P<value>.+?) \| (?P<name>\w+)\((?P<args>.*?)\) -> (?P<result>.+)$", re.M)
NEW = ["hmac_sha1", "hmac_sha1_base64", "hmac_sha512", "hmac_sha512_base64", "replace", "replace_i", "user_agent", "try"]
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.4 Mobile/15E148 Safari/604.1")
CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/124.0.0.0 Safari/537.36")


@pytest.mark.parametrize("name", NEW)
def test_each_new_filter_documents_an_example_that_holds(name):
    """The convention the language reference is built from: one Example line, and it is true."""
    examples = list(EXAMPLE.finditer(inspect.getdoc(FILTERS[name]) or ""))
    assert len(examples) == 1 and examples[0]["name"] == name
    example = examples[0]
    args = json.loads(f"[{example['args']}]")
    assert FILTERS[name](json.loads(example["value"]), *args) == json.loads(example["result"])


@pytest.mark.parametrize("name, digest, encode", [
    ("hmac_sha1", hashlib.sha1, lambda d: d.hex()),
    ("hmac_sha1_base64", hashlib.sha1, lambda d: base64.b64encode(d).decode()),
    ("hmac_sha512", hashlib.sha512, lambda d: d.hex()),
    ("hmac_sha512_base64", hashlib.sha512, lambda d: base64.b64encode(d).decode()),
])
def test_hmac_variants_sign_like_the_standard_library(name, digest, encode):
    body = '{"event":"Order Completed","é":1}'
    assert FILTERS[name](body, "s3cret") == encode(hmac.new(b"s3cret", body.encode(), digest).digest())
    assert FILTERS[name](None, "s3cret") is None
    with pytest.raises(FilterError, match="needs a key"):
        FILTERS[name]("x", None)
    with pytest.raises(FilterError, match="expects text"):
        FILTERS[name]({"a": 1}, "k")


def test_replace_and_replace_i():
    assert FILTERS["replace"]("a.b.c", ".", "_") == "a_b_c"
    assert FILTERS["replace"]("Aa", "a", "x") == "Ax"
    assert FILTERS["replace_i"]("Aa", "a", "x") == "xx"
    assert FILTERS["replace_i"]("Order COMPLETED order completed", "order completed", "purchase") == "purchase purchase"
    assert FILTERS["replace_i"]("a+b (c)", "+B (C", r"\1") == r"a\1)"  # no regex in old or new
    assert FILTERS["replace"](1234, "23", "") == "14"
    assert FILTERS["replace"]("ab", "b") == "a"
    assert FILTERS["replace_i"](None, "a", "b") is None
    with pytest.raises(FilterError, match="old text must be non-empty"):
        FILTERS["replace"]("ab", "", "x")
    with pytest.raises(FilterError, match="expects text"):
        FILTERS["replace_i"](["a"], "a", "b")
    with pytest.raises(FilterError, match="at most 10,000,000"):
        FILTERS["replace"]("a" * 1_000_000, "a", "x" * 20)


def test_user_agent_parses_browser_os_and_device():
    assert FILTERS["user_agent"](IPHONE) == {"browser": "Mobile Safari", "browser_version": "17.4", "os": "iOS",
                                             "os_version": "17.4", "device": "iPhone", "device_brand": "Apple",
                                             "device_model": "iPhone", "device_type": "mobile"}
    assert FILTERS["user_agent"](CHROME_WINDOWS) == {"browser": "Chrome", "browser_version": "124.0.0", "os": "Windows",
                                                     "os_version": "10", "device_type": "desktop"}
    assert FILTERS["user_agent"]("no agent here") == {}
    assert FILTERS["user_agent"](None) is None
    with pytest.raises(FilterError, match="expects text"):
        FILTERS["user_agent"](42)


def test_try_keeps_what_a_filter_cannot_convert():
    assert FILTERS["try"]("2024-01-01T00:00:00Z", "epoch_ms") == 1704067200000
    assert FILTERS["try"]("soon", "epoch_ms") == "soon"
    assert FILTERS["try"]("12.5", "number") == 12.5
    assert FILTERS["try"]("n/a", "number") == "n/a"
    assert FILTERS["try"](None, "number") is None
    assert FILTERS["try"]("x", "hmac_sha1", None) == "x"  # the inner filter's error is what try forgives
    with pytest.raises(FilterError, match="name of a built-in filter"):
        FILTERS["try"]("x", "no_such_filter")


MAPPING = """\
name: Filters
settings:
  type: object
  required: [secret]
  properties:
    secret: {type: string, secret: true}
actions:
  track:
    request:
      url: https://filters.test/t
      headers:
        X-Signature: {"@path": event.event, "@filter": [{hmac_sha1: ["{{ settings.secret }}"]}]}
    body:
      sig512: "{{ event.event | hmac_sha512(settings.secret) }}"
      action: {"@path": event.event, "@filter": [{replace_i: ["order completed", "purchase"]}]}
      dashed: "{{ event.properties.order_id | replace('-', '_') }}"
      agent: {"@path": event.context.userAgent, "@filter": user_agent}
      os: "{{ (event.context.userAgent | user_agent).os }}"
      revenue: {"@path": event.properties.revenue_text, "@filter": [{try: [number]}]}
      when: "{{ event.properties.when | try('epoch_ms') }}"
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(write_mappings(tmp_path_factory.mktemp("filters"), {"filters.yaml": MAPPING}))


@pytest.mark.parametrize("revenue, when, expected_revenue, expected_when", [
    ("57.5", "2024-05-14T12:30:45.123Z", 57.5, 1715689845123),
    ("about 50", "yesterday", "about 50", "yesterday"),
])
def test_the_new_filters_in_a_mapping(engine, revenue, when, expected_revenue, expected_when):
    event = json.loads((REPO / "fixtures" / "events" / "track-order-completed.json").read_text(encoding="utf-8"))
    event["properties"].update(revenue_text=revenue, when=when)
    event["context"]["userAgent"] = IPHONE
    route = engine.route("filters", {"secret": "k"}, environ={})
    outcome = route.destination.render(event, route.settings, route.secrets)
    assert outcome.status == "send", outcome.errors
    request = outcome.requests[0]
    body = request.body
    assert request.headers["X-Signature"] == hmac.new(b"k", b"Order Completed", hashlib.sha1).hexdigest()
    assert body["sig512"] == hmac.new(b"k", b"Order Completed", hashlib.sha512).hexdigest()
    assert body["action"] == "purchase" and body["dashed"] == "ORD_50314"
    assert body["agent"]["device_brand"] == "Apple" and body["os"] == "iOS"
    assert body["revenue"] == expected_revenue and body["when"] == expected_when
    shown = request.to_dict()  # signed with the secret: masked whole; the rest as it is
    assert shown["headers"]["X-Signature"] == "***" and shown["body"]["sig512"] == "***"
    assert shown["body"]["action"] == "purchase"


@pytest.mark.parametrize("agent, kind", [
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot"),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) "
     "Chrome/116.0.1938.76 Safari/537.36", "bot"),
    ("Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 "
     "Mobile/15E148 Safari/604.1", "tablet"),
    ("Mozilla/5.0 (Linux; Android 12; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.0.0 "
     "Safari/537.36", "tablet"),
    ("Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/98.4.1 like "
     "Chrome/98.0.4758.136 Safari/537.36", "tablet"),
    ("Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Mobile "
     "Safari/537.36", "mobile"),
    ("Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.14977", "mobile"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
     "Safari/605.1.15", "desktop"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "desktop"),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
     "Safari/537.36", "desktop"),
    ("curl/8.4.0", None),
    # a device ua-parser names, on a desktop OS: not a computer, and not said what else
    ("Mozilla/5.0 (X11; U; Linux i686; en-US) AppleWebKit/533.4 (KHTML, like Gecko) Chrome/5.0.375.127 Large Screen "
     "Safari/533.4 GoogleTV/ 162671", None),
    ("Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/538.1 (KHTML, like Gecko) Version/6.0 TV Safari/538.1",
     None),
])
def test_user_agent_says_the_device_type_or_leaves_it_out(agent, kind):
    assert FILTERS["user_agent"](agent).get("device_type") == kind


def test_regex_replace_runs_re2_with_groups_and_bounds():
    assert FILTERS["regex_replace"]("Order Completed.v2", r"[\s.]+", "_") == "Order_Completed_v2"
    assert FILTERS["regex_replace"]("ann@example", r"(\w+)@(\w+)", r"\2 at \1") == "example at ann"
    assert FILTERS["regex_replace"]("ABC abc", "(?i)abc", "x") == "x x"
    assert FILTERS["regex_replace"](2024, "0", "") == "224"
    assert FILTERS["regex_replace"](None, "a", "b") is None
    # a pattern that backtracks exponentially in Python's re is linear in RE2
    assert FILTERS["regex_replace"]("a" * 5000 + "!", "(a+)+$", "x") == "a" * 5000 + "!"
    with pytest.raises(FilterError, match="not a regular expression RE2 accepts: missing \\)"):
        FILTERS["regex_replace"]("x", "(a", "")
    with pytest.raises(FilterError, match="does not fit the pattern"):
        FILTERS["regex_replace"]("x", "(x)", r"\3")
    with pytest.raises(FilterError, match="at most 10,000,000"):
        FILTERS["regex_replace"]("a" * 1_000_000, "a", "x" * 20)
