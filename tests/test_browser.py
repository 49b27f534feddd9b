"""analytics.js (the real ``@segment/analytics-next`` bundle) in headless Chromium, with eventmap as its CDN
and API host: the page is served from another origin, loads its settings from eventmap and its calls arrive
cross-origin, with ``context.ip`` filled in. A page on an origin the source does not allow gets nothing in.
"""
from __future__ import annotations

import json
import textwrap
import time
import uuid

import pytest
import requests
from browser_harness import CHROMIUM_ARGS, UMD, PageServer, require_chromium, stored_events
from serve_harness import Server, environment

WEB_KEY = "browser-web-key-4c1d"
BACKEND_KEY = "browser-backend-key-8e2a"


def snippet_page(write_key: str, cdn: str, user_id: str, script: str = "/standalone.js", options: str = "") -> str:
    """Segment's analytics.js snippet (5.2.1), as its docs show it, with two changes: the script's address
    (``script``: self-hosted, or eventmap's ``/analytics.js/v1/KEY/analytics.min.js``), and ``analytics._cdn``
    naming eventmap (needed on http://; over https:// analytics.js finds its CDN from the script's address)."""
    return textwrap.dedent(f"""\
    <!doctype html>
    <html><head><title>Shop</title>
    <script>
      !function(){{var i="analytics",analytics=window[i]=window[i]||[];if(!analytics.initialize)if(analytics.invoked)window.console&&console.error&&console.error("Segment snippet included twice.");else{{analytics.invoked=!0;analytics.methods=["trackSubmit","trackClick","trackLink","trackForm","pageview","identify","reset","group","track","ready","alias","debug","page","screen","once","off","on","addSourceMiddleware","addIntegrationMiddleware","setAnonymousId","addDestinationMiddleware","register"];analytics.factory=function(e){{return function(){{if(window[i].initialized)return window[i][e].apply(window[i],arguments);var n=Array.prototype.slice.call(arguments);if(["track","screen","alias","group","page","identify"].indexOf(e)>-1){{var c=document.querySelector("link[rel='canonical']");n.push({{__t:"bpc",c:c&&c.getAttribute("href")||void 0,p:location.pathname,u:location.href,s:location.search,t:document.title,r:document.referrer}})}}n.unshift(e);analytics.push(n);return analytics}}}};for(var n=0;n<analytics.methods.length;n++){{var key=analytics.methods[n];analytics[key]=analytics.factory(key)}}analytics.load=function(key,n){{var t=document.createElement("script");t.type="text/javascript";t.async=!0;t.setAttribute("data-global-segment-analytics-key",i);t.src="{script}";var r=document.getElementsByTagName("script")[0];r.parentNode.insertBefore(t,r);analytics._loadOptions=n}};analytics._writeKey="{write_key}";analytics._cdn="{cdn}";analytics.SNIPPET_VERSION="5.2.1";
      analytics.load("{write_key}"{", " + options if options else ""});
      analytics.identify("{user_id}", {{email: "{user_id}@example.com", name: "Ada Lovelace"}});
      analytics.track("Order Completed", {{order_id: "o-1", revenue: 42.5}});
      analytics.page("Shop", "Home");
      analytics.ready(function () {{ window.analyticsReady = true; }});
      }}}}();
    </script>
    </head><body>shop</body></html>
    """)


@pytest.fixture(scope="module")
def chromium():
    path = require_chromium()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS, timeout=30_000)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def allowed_page():
    """The shop's page: its origin (another port) is the only one the web source allows."""
    with PageServer("") as page:
        yield page


@pytest.fixture(scope="module")
def eventmap(tmp_path_factory, allowed_page):
    """The server under test. It serves analytics.js from tests/js when the SDKs are installed; the tests
    that load it take ``chromium`` first, which skips them (or fails them under .ci/run) when they are not,
    so the preflight test still runs from a fresh clone where `npm ci` has not been run."""
    folder = tmp_path_factory.mktemp("browser")
    script = f"server:\n  analytics_js: {UMD}\n" if UMD.is_dir() else ""
    (folder / "eventmap.yaml").write_text(textwrap.dedent(f"""\
        storage: sqlite:///events.db
        sources:
          web:
            write_key: {WEB_KEY}
            allowed_origins: [{allowed_page.origin}]
          backend:
            write_key: {BACKEND_KEY}
            allowed_origins: []
        destinations:
          planhat:
            settings: {{tenant_token: planhat-token, base_url: http://127.0.0.1:9/planhat}}
        """) + script, encoding="utf-8")
    with Server(folder, "--config", "eventmap.yaml", "--intake-only", "--workers", "1", "--threads", "4",
                env=environment()) as server:
        yield server


class Visit:
    """One page load in a fresh browser context, with what the page requested and what it logged."""

    def __init__(self, chromium, url: str):
        self.context = chromium.new_context()
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.answers: dict[str, int] = {}
        self.console: list[str] = []
        self.page.on("request", lambda r: self.requests.append(f"{r.method} {r.url}"))
        self.page.on("response", lambda r: self.answers.__setitem__(f"{r.request.method} {r.url}", r.status))
        self.page.on("requestfailed", lambda r: self.answers.__setitem__(f"{r.method} {r.url}", r.failure))
        self.page.on("console", lambda m: self.console.append(m.text))
        self.page.goto(url, wait_until="load", timeout=20_000)

    def wait_for(self, check, deadline: float, what: str):
        """Like serve_harness.wait_for, but lets Playwright deliver the page's events while it waits."""
        end = time.monotonic() + deadline
        while not (value := check()):
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}; page console: {self.console}; "
                                     f"requests: {self.requests}; answers: {self.answers}")
            self.page.wait_for_timeout(50)
        return value

    def close(self):
        self.context.close()


def _of_user(folder, user_id: str) -> list[dict]:
    return [e for e in stored_events(folder) if e.get("userId") == user_id]


def test_analytics_js_loads_its_settings_from_eventmap_and_its_calls_arrive_cross_origin(chromium, eventmap,
                                                                                       allowed_page):
    who = f"web-{uuid.uuid4().hex[:8]}"
    allowed_page.html = snippet_page(WEB_KEY, eventmap.url, who)
    visit = Visit(chromium, allowed_page.origin + "/")
    try:
        events = visit.wait_for(lambda: (found := _of_user(eventmap.folder, who)) and len(found) >= 3 and found,
                                deadline=20, what=f"identify, track and page of {who} in the store")
        assert visit.page.evaluate("window.analyticsReady === true")
    finally:
        visit.close()

    assert sorted(e["type"] for e in events) == ["identify", "page", "track"]
    for event in events:
        assert event["context"]["library"]["name"] == "analytics.js"
        assert event["context"]["ip"] == "127.0.0.1"           # filled from the browser's address
        assert event["context"]["page"]["url"] == allowed_page.origin + "/"
        assert "writeKey" not in event and "receivedAt" in event
    by_type = {e["type"]: e for e in events}
    assert by_type["identify"]["traits"]["email"] == f"{who}@example.com"
    assert by_type["track"]["event"] == "Order Completed" and by_type["track"]["properties"]["revenue"] == 42.5
    assert by_type["page"]["name"] == "Home" and by_type["page"]["category"] == "Shop"

    # what the page fetched: its own origin and eventmap, nothing from Segment
    settings = f"GET {eventmap.url}/v1/projects/{WEB_KEY}/settings"
    assert visit.answers.get(settings) == 200, visit.answers
    assert all(r.split(" ", 1)[1].startswith((allowed_page.origin, eventmap.url)) for r in visit.requests), \
        visit.requests
    posted = [r for r in visit.requests if r.startswith(f"POST {eventmap.url}/v1/")]
    assert {r.rsplit("/", 1)[1] for r in posted} >= {"i", "t", "p"}
    assert all(visit.answers.get(r) == 200 for r in posted), visit.answers


def npm_page(write_key: str, cdn: str, user_id: str) -> str:
    """The npm way (``AnalyticsBrowser.load({writeKey, cdnURL})``), from the package's UMD build, no bundler."""
    return textwrap.dedent(f"""\
    <!doctype html>
    <html><head><title>App</title><script src="/index.js"></script>
    <script>
      const analytics = AnalyticsNext.AnalyticsBrowser.load({{writeKey: "{write_key}", cdnURL: "{cdn}"}});
      window.sent = Promise.all([
        analytics.identify("{user_id}", {{plan: "pro"}}),
        analytics.track("Signed Up", {{via: "npm"}}),
        analytics.page(),
      ]).then((contexts) => contexts.map((ctx) => ctx.event.messageId));
    </script>
    </head><body>app</body></html>
    """)


def test_analytics_browser_from_npm_with_eventmap_as_cdn_url_delivers(chromium, eventmap, allowed_page):
    who = f"npm-{uuid.uuid4().hex[:8]}"
    allowed_page.html = npm_page(WEB_KEY, eventmap.url, who)
    visit = Visit(chromium, allowed_page.origin + "/")
    try:
        message_ids = visit.page.evaluate("window.sent")     # resolves once analytics.js has delivered each call
        events = visit.wait_for(lambda: (found := _of_user(eventmap.folder, who)) and len(found) >= 3 and found,
                                deadline=20, what=f"the calls of {who} in the store")
    finally:
        visit.close()
    assert sorted(e["messageId"] for e in events) == sorted(message_ids)
    assert {e["type"] for e in events} == {"identify", "track", "page"}
    assert all(e["context"]["ip"] == "127.0.0.1" for e in events)
    assert visit.answers[f"GET {eventmap.url}/v1/projects/{WEB_KEY}/settings"] == 200


def test_eventmap_can_be_the_whole_cdn_serving_analytics_js_and_the_parts_it_loads_on_demand(chromium, eventmap,
                                                                                              allowed_page):
    """The snippet's script from eventmap; a link with ajs_ parameters makes analytics.js load a part
    (queryString) from {cdn}/analytics-next/bundles/, which eventmap serves too."""
    who, clicked = f"cdn-{uuid.uuid4().hex[:8]}", f"mail-{uuid.uuid4().hex[:8]}"
    script = f"{eventmap.url}/analytics.js/v1/{WEB_KEY}/analytics.min.js"
    allowed_page.html = snippet_page(WEB_KEY, eventmap.url, who, script=script)
    visit = Visit(chromium, f"{allowed_page.origin}/?ajs_uid={clicked}&ajs_event=Email%20Opened")
    try:
        visit.wait_for(lambda: len(_of_user(eventmap.folder, who)) >= 3, deadline=20,
                       what=f"the page's calls of {who} in the store")
        from_link = visit.wait_for(lambda: (found := _of_user(eventmap.folder, clicked)) and len(found) >= 2 and found,
                                   deadline=20, what=f"the calls from the link's ajs_ parameters ({clicked})")
    finally:
        visit.close()
    assert {(e["type"], e.get("event")) for e in from_link} == {("identify", None), ("track", "Email Opened")}
    assert visit.answers[f"GET {script}"] == 200
    chunks = [r for r in visit.requests if r.startswith(f"GET {eventmap.url}/analytics-next/bundles/")]
    assert any("queryString" in r for r in chunks) and all(visit.answers[r] == 200 for r in chunks), visit.requests


def test_analytics_js_batching_delivery_posts_batches_that_are_stored(chromium, eventmap, allowed_page):
    who = f"batching-{uuid.uuid4().hex[:8]}"
    batching = '{integrations: {"Segment.io": {deliveryStrategy: {strategy: "batching", config: {size: 3, timeout: 300}}}}}'
    allowed_page.html = snippet_page(WEB_KEY, eventmap.url, who, options=batching)
    visit = Visit(chromium, allowed_page.origin + "/")
    try:
        events = visit.wait_for(lambda: (found := _of_user(eventmap.folder, who)) and len(found) >= 3 and found,
                                deadline=20, what=f"the batched calls of {who} in the store")
    finally:
        visit.close()
    assert sorted(e["type"] for e in events) == ["identify", "page", "track"]
    assert all(e["context"]["ip"] == "127.0.0.1" and "sentAt" in e for e in events)
    posted = [r for r in visit.requests if r.startswith(f"POST {eventmap.url}/v1/")]
    assert posted and all(r.endswith("/v1/b") and visit.answers[r] == 200 for r in posted), visit.answers


def test_a_page_on_an_origin_the_source_does_not_allow_gets_nothing_in(chromium, eventmap, allowed_page):
    who = f"stranger-{uuid.uuid4().hex[:8]}"
    with PageServer(snippet_page(WEB_KEY, eventmap.url, who)) as other:
        visit = Visit(chromium, other.origin + "/")
        try:
            # analytics.js may not read its settings (403 without Access-Control-Allow-Origin) and says so
            settings = f"GET {eventmap.url}/v1/projects/{WEB_KEY}/settings"
            visit.wait_for(lambda: settings in visit.answers, deadline=15, what="the settings request")
            assert visit.answers[settings] == "net::ERR_FAILED"
            visit.wait_for(lambda: any("blocked by CORS policy" in line for line in visit.console), deadline=5,
                           what="the browser's CORS message")
            assert not any(r.startswith(f"POST {eventmap.url}") for r in visit.requests)
            # a hand-written call with the key is refused too: the browser sees a CORS failure
            outcome = visit.page.evaluate("""async ([url, key, who]) => {
                try {
                    const answer = await fetch(url + "/v1/t", {method: "POST", headers: {"Content-Type": "text/plain"},
                        body: JSON.stringify({writeKey: key, userId: who, event: "Sneaked In"})});
                    return "answered " + answer.status;
                } catch (error) { return "blocked: " + error.name; }
            }""", [eventmap.url, WEB_KEY, who])
            assert outcome == "blocked: TypeError"
        finally:
            visit.close()
    assert _of_user(eventmap.folder, who) == []
    assert f"GET /v1/projects/***/settings: 403 the origin {other.origin}" in eventmap.output()
    assert f"the origin {other.origin} is not in allowed_origins of the source 'web'" in eventmap.output()


def test_the_preflight_names_allowed_origins_only(eventmap, allowed_page):
    """What the browser above relied on, asked directly."""
    def preflight(origin: str):
        return requests.options(eventmap.url + "/v1/t", timeout=5, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})

    allowed = preflight(allowed_page.origin)
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == allowed_page.origin
    assert "Origin" in allowed.headers["Vary"]
    assert {"authorization", "content-type"} <= {h.strip().lower() for h in
                                                 allowed.headers["Access-Control-Allow-Headers"].split(",")}
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert int(allowed.headers["Access-Control-Max-Age"]) > 0
    refused = preflight("https://elsewhere.example")
    assert "Access-Control-Allow-Origin" not in refused.headers
    # the backend source allows no browser at all, even with a page origin another source allows
    call = requests.post(eventmap.url + "/v1/track", data=json.dumps({"userId": "u", "event": "E"}), timeout=5,
                         auth=(BACKEND_KEY, ""), headers={"Origin": allowed_page.origin, "Content-Type": "text/plain"})
    assert call.status_code == 403 and call.json()["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in call.headers
