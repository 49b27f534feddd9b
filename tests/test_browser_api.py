"""What analytics.js needs from eventmap serve, asked over HTTP: the settings document, CORS answers,
``text/plain`` bodies with the key in the body or in Basic auth, and ``context.ip`` (with trusted proxies);
and the configuration keys behind them, checked with file:line errors."""
from __future__ import annotations

import base64
import json
import textwrap
import uuid

import pytest
import requests
from browser_harness import stored_events
from serve_harness import Server

from engine.problems import ConfigError
from engine.serve import load_serve_config

SHOP = "https://shop.example"
WEB_KEY, APP_KEY, BACKEND_KEY = "web-key-0b7e", "app-key-5d21", "backend-key-77c3"


def write(folder, text: str):
    path = folder / "eventmap.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    """Browsers reach it directly; only 10.0.0.0/8 are trusted proxies (not the tests' 127.0.0.1)."""
    folder = tmp_path_factory.mktemp("direct")
    write(folder, f"""\
        storage: sqlite:///events.db
        sources:
          web: {{write_key: {WEB_KEY}, allowed_origins: ["{SHOP}", "HTTP://Staging.Shop.Example:8080/"]}}
          backend: {{write_key: {BACKEND_KEY}, allowed_origins: []}}
        destinations:
          planhat: {{settings: {{tenant_token: t, base_url: "http://127.0.0.1:9"}}}}
        server: {{trusted_proxies: [10.0.0.0/8]}}
        """)
    with Server(folder, "--config", "eventmap.yaml", "--intake-only", "--workers", "1") as server:
        yield server


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """Behind a proxy on this machine, published as https://collector.example/segment; one source elsewhere."""
    folder = tmp_path_factory.mktemp("proxied")
    write(folder, f"""\
        storage: sqlite:///events.db
        sources:
          web: {{write_key: {WEB_KEY}}}
          app: {{write_key: {APP_KEY}, public_url: "https://app-events.example"}}
        destinations:
          planhat: {{settings: {{tenant_token: t, base_url: "http://127.0.0.1:9"}}}}
        server: {{trusted_proxies: [127.0.0.1, "::1"], public_url: "https://collector.example/segment/"}}
        """)
    with Server(folder, "--config", "eventmap.yaml", "--intake-only", "--workers", "1") as server:
        yield server


def settings(server, key: str, **headers) -> requests.Response:
    return requests.get(f"{server.url}/v1/projects/{key}/settings", headers=headers, timeout=5)


def send(server, path: str, body: dict, *, key: str | None = None, **headers) -> requests.Response:
    """As analytics.js sends: text/plain JSON, the key in the body and/or as the Basic user."""
    if key is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return requests.post(server.url + path, data=json.dumps(body), timeout=5,
                         headers={"Content-Type": "text/plain", **headers})


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def event_of(server, user_id: str) -> dict:
    found = [e for e in stored_events(server.folder) if e.get("userId") == user_id]
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- the settings document

def test_settings_point_analytics_js_at_the_host_it_reached(direct):
    answer = settings(direct, WEB_KEY, Origin=SHOP)
    assert answer.status_code == 200
    document = answer.json()
    host = direct.url.removeprefix("http://")
    segment = document["integrations"]["Segment.io"]
    assert (segment["apiKey"], segment["apiHost"], segment["protocol"]) == (WEB_KEY, f"{host}/v1", "http")
    assert list(document["integrations"]) == ["Segment.io"]      # no vendor script is loaded in the page
    assert document["remotePlugins"] == [] and document["enabledMiddleware"] == {}
    assert document["metrics"] == {"sampleRate": 0, "host": f"{host}/v1"}   # the SDK's telemetry: off, not to Segment
    assert answer.headers["Access-Control-Allow-Origin"] == SHOP
    assert "max-age" in answer.headers["Cache-Control"]


def test_an_untrusted_peer_cannot_move_the_api_host(direct):
    answer = settings(direct, WEB_KEY, **{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
    assert answer.json()["integrations"]["Segment.io"]["apiHost"] == direct.url.removeprefix("http://") + "/v1"


def test_an_unknown_key_has_no_settings(direct):
    answer = settings(direct, "no-such-key", Origin=SHOP)
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found" and "no source has this write key" in answer.json()["message"]
    assert answer.headers["Access-Control-Allow-Origin"] == SHOP      # the page may read why
    assert "no-such-key" not in direct.output()                      # the path is logged with the key masked


def test_the_public_url_wins_and_a_source_may_have_its_own(proxied):
    web = settings(proxied, WEB_KEY).json()["integrations"]["Segment.io"]
    assert (web["apiHost"], web["protocol"]) == ("collector.example/segment/v1", "https")
    app = settings(proxied, APP_KEY).json()["integrations"]["Segment.io"]
    assert (app["apiHost"], app["protocol"]) == ("app-events.example/v1", "https")


def test_settings_and_preflights_of_the_demo_take_any_key_and_any_origin(tmp_path):
    with Server(tmp_path, "--intake-only", "--workers", "1") as demo:
        answer = settings(demo, "whatever-key", Origin="http://localhost:3000")
        assert answer.status_code == 200
        assert answer.json()["integrations"]["Segment.io"]["apiKey"] == "whatever-key"
        assert answer.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        preflight = requests.options(demo.url + "/v1/projects/whatever-key/settings", timeout=5,
                                     headers={"Origin": "https://any.example", "Access-Control-Request-Method": "GET"})
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://any.example"


def test_without_analytics_js_configured_its_paths_say_how_to_serve_it(direct):
    for path in (f"/analytics.js/v1/{WEB_KEY}/analytics.min.js", "/analytics-next/bundles/standalone.js"):
        answer = requests.get(direct.url + path, timeout=5)
        assert answer.status_code == 404 and "set server.analytics_js" in answer.json()["message"]


def test_only_the_files_of_the_analytics_js_folder_are_served(tmp_path):
    (tmp_path / "umd").mkdir()
    (tmp_path / "umd" / "standalone.js").write_text("/* analytics.js */", encoding="utf-8")
    (tmp_path / "umd" / "a1.bundle.js").write_text("/* a part */", encoding="utf-8")
    (tmp_path / "secret.js").write_text("/* not served */", encoding="utf-8")
    write(tmp_path, f"""\
        sources: {{web: {{write_key: {WEB_KEY}}}}}
        destinations: {{planhat: {{settings: {{tenant_token: t}}}}}}
        server: {{analytics_js: umd}}
        """)
    with Server(tmp_path, "--config", "eventmap.yaml", "--intake-only", "--workers", "1") as server:
        script = requests.get(f"{server.url}/analytics.js/v1/{WEB_KEY}/analytics.min.js", timeout=5)
        assert script.status_code == 200 and script.text == "/* analytics.js */"
        assert script.headers["Content-Type"].startswith("text/javascript")
        assert requests.get(f"{server.url}/analytics.js/v1/other-key/analytics.min.js", timeout=5).status_code == 404
        part = requests.get(f"{server.url}/analytics-next/bundles/a1.bundle.js", timeout=5)
        assert part.text == "/* a part */" and "immutable" in part.headers["Cache-Control"]
        for path in ("/analytics-next/bundles/..%2Fsecret.js", "/analytics-next/bundles/../secret.js",
                     "/analytics-next/bundles/eventmap.yaml"):
            assert requests.get(server.url + path, timeout=5).status_code == 404
        assert "other-key" not in server.output()


# --------------------------------------------------------------------------- CORS

@pytest.mark.parametrize("path", ["/v1/t", "/v1/track", "/v1/batch", "/v1/i", "/v1/p",
                                  f"/v1/projects/{WEB_KEY}/settings"])
def test_every_browser_path_answers_its_preflight(direct, path):
    answer = requests.options(direct.url + path, timeout=5, headers={
        "Origin": "http://staging.shop.example:8080", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization,x-retry-count"})
    assert answer.status_code == 204 and answer.content == b""
    assert answer.headers["Access-Control-Allow-Origin"] == "http://staging.shop.example:8080"
    allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "authorization", "x-retry-count"} <= allowed
    assert {"GET", "POST"} <= {m.strip() for m in answer.headers["Access-Control-Allow-Methods"].split(",")}
    assert answer.headers["Vary"] == "Origin" and int(answer.headers["Access-Control-Max-Age"]) >= 600


def test_an_origin_no_source_allows_gets_no_cors_headers(direct):
    answer = requests.options(direct.url + "/v1/t", timeout=5, headers={
        "Origin": "https://shop.example.evil.test", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in answer.headers and answer.headers["Vary"] == "Origin"


def test_a_call_from_an_origin_its_source_does_not_allow_is_refused_and_not_stored(direct):
    who = user()
    for key, in_body in ((BACKEND_KEY, False), (BACKEND_KEY, True), (WEB_KEY, True)):
        origin = SHOP if key == BACKEND_KEY else "https://elsewhere.example"
        body = {"userId": who, "event": "Sneaked In", **({"writeKey": key} if in_body else {})}
        answer = send(direct, "/v1/t", body, key=None if in_body else key, Origin=origin)
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in answer.headers
    assert [e for e in stored_events(direct.folder) if e.get("userId") == who] == []


def test_calls_without_an_origin_are_not_browser_calls_and_pass(direct):
    who = user()
    assert send(direct, "/v1/track", {"userId": who, "event": "From A Server"}, key=BACKEND_KEY).status_code == 200
    assert event_of(direct, who)["event"] == "From A Server"


def test_an_allowed_origin_reads_the_answer_and_retry_after(direct):
    answer = send(direct, "/v1/t", {"userId": user(), "event": "E"}, key=WEB_KEY, Origin=SHOP)
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Retry-After" in answer.headers["Access-Control-Expose-Headers"]


# --------------------------------------------------------------------------- text/plain, the key, context.ip

@pytest.mark.parametrize("where", ["body", "basic", "both"])
def test_text_plain_bodies_with_the_key_in_the_body_or_basic_auth_are_stored(direct, where):
    who = user()
    body = {"userId": who, "event": "Plain", **({"writeKey": WEB_KEY} if where != "basic" else {})}
    answer = send(direct, "/v1/t", body, key=WEB_KEY if where != "body" else None, Origin=SHOP)
    assert answer.status_code == 200, answer.text
    event = event_of(direct, who)
    assert event["type"] == "track" and "writeKey" not in event


def test_context_ip_is_the_peer_and_a_forwarded_for_from_an_untrusted_peer_is_ignored(direct):
    who = user()
    send(direct, "/v1/t", {"userId": who, "event": "E"}, key=WEB_KEY, **{"X-Forwarded-For": "198.51.100.7"})
    assert event_of(direct, who)["context"]["ip"] == "127.0.0.1"


def test_the_event_s_own_context_ip_is_kept(direct):
    who = user()
    send(direct, "/v1/t", {"userId": who, "event": "E", "context": {"ip": "192.0.2.1", "locale": "fr"}}, key=WEB_KEY)
    assert event_of(direct, who)["context"] == {"ip": "192.0.2.1", "locale": "fr"}


def test_behind_a_trusted_proxy_the_client_is_the_last_untrusted_forwarded_address(proxied):
    who, second = user(), user()
    # spoofed by the client, appended by an outer proxy, then by ours (trusted)
    chain = "203.0.113.66, 198.51.100.7, 127.0.0.1"
    send(proxied, "/v1/t", {"userId": who, "event": "E"}, key=WEB_KEY, **{"X-Forwarded-For": chain})
    assert event_of(proxied, who)["context"]["ip"] == "198.51.100.7"
    batch = {"batch": [{"type": "track", "userId": second, "event": "E"}], "writeKey": WEB_KEY}
    send(proxied, "/v1/batch", batch, **{"X-Forwarded-For": "not-an-address, 2001:db8::5"})
    assert event_of(proxied, second)["context"]["ip"] == "2001:db8::5"


# --------------------------------------------------------------------------- the configuration

def test_every_new_key_is_checked_with_file_and_line(tmp_path):
    path = write(tmp_path, """\
        sources:
          web:
            write_key: k1
            allowed_origins:
              - https://shop.example/cart
              - shop.example
          hook:
            webhook: gladly
            auth: {headers: {X-Token: t}}
            allowed_origins: [https://shop.example]
          app:
            write_key: k2
            public_url: ftp://collector.example
        destinations:
          planhat: {}
        server:
          public_url: https://collector.example?x=1
          trusted_proxies: [10.0.0.0/8, 10.0.0.300, proxy.internal]
          analytics_js: node_modules/@segment/analytics-next/dist/umd
        """)
    with pytest.raises(ConfigError) as raised:
        load_serve_config(path, {})
    text = str(raised.value)
    expected = [
        (5, "sources.web.allowed_origins[0]: an origin is scheme://host[:port] only"),
        (6, "sources.web.allowed_origins[1]: expected an origin such as https://shop.example, got 'shop.example'"),
        (10, "sources.hook.allowed_origins: 'allowed_origins' belongs to SDK sources (with write_key) only"),
        (13, "sources.app.public_url: expected an http:// or https:// URL"),
        (17, "server.public_url: expected scheme://host[:port][/path] with no query"),
        (18, "server.trusted_proxies[1]: expected an IP address or CIDR range such as 10.0.0.0/8, got '10.0.0.300'"),
        (18, "server.trusted_proxies[2]: expected an IP address or CIDR range"),
        (19, f"server.analytics_js: no such folder: {tmp_path}/node_modules/@segment/analytics-next/dist/umd"),
    ]
    for line, message in expected:
        assert f"eventmap.yaml:{line}: {message}" in text, text


def test_a_wrong_shape_is_caught_by_the_schema(tmp_path):
    path = write(tmp_path, """\
        sources:
          web: {write_key: k1, allowed_origins: https://shop.example}
        destinations:
          planhat: {}
        """)
    with pytest.raises(ConfigError) as raised:
        load_serve_config(path, {})
    assert "eventmap.yaml:2: sources.web.allowed_origins" in str(raised.value)
