"""The web console in a real browser: Debian's Chromium, driven by Playwright, against a real
``eventmap serve`` (console behind HTTP Basic), its SQLite store and a vendor stand-in.

Without /usr/bin/chromium these tests skip and say why, unless EVENTMAP_REQUIRE_BROWSER=1
(set by .ci/run), where they fail.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from console_harness import (
    CONSOLE_PASSWORD,
    CONSOLE_USER,
    REFUSED_MARK,
    chromium_or_skip,
    console_page,
    refuse_marked,
    settled,
    start,
)
from serve_harness import GLADLY_TOKEN, MOBILE_KEY, ROOT, WRITE_KEY, wait_for
from vendor_server import Answer, VendorServer

from engine.store import EventQuery, open_store

SECRETS = ("planhat-token", "crisp-key", CONSOLE_PASSWORD, MOBILE_KEY, GLADLY_TOKEN)


@pytest.fixture(scope="module")
def browser():
    with chromium_or_skip() as launched:
        yield launched


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One server for the module: tests tell their events apart by unique ids."""
    folder = tmp_path_factory.mktemp("console")
    with VendorServer() as vendor:
        refuse_marked(vendor)
        server = start(folder, vendor)
        try:
            yield server, vendor, folder
        finally:
            server.stop()
            server.kill()


@pytest.fixture
def page(browser, site):
    with console_page(browser, viewport={"width": 1280, "height": 900}) as opened:
        yield opened


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def store_state(folder, delivery_id: int) -> str:
    with open_store("sqlite:///events.db", base=folder) as store:
        return store.get(delivery_id).state


def no_secret_in(page) -> None:
    html = page.content()
    for secret in SECRETS:
        assert secret not in html


# --------------------------------------------------------------------------- overview

def test_the_overview_counts_match_the_store(site, page):
    server, _, folder = site
    user = unique("count")
    for i in range(3):
        assert server.post("/v1/track", {"userId": user, "event": "Signed Up", "messageId": f"{user}-t{i}"}).ok
    assert server.post("/v1/identify", {"userId": user, "traits": {"email": f"{REFUSED_MARK}@example.com"},
                                        "messageId": f"{user}-dead"}).ok
    assert server.post("/v1/batch", {"batch": [{"type": "track", "userId": user}]}).status_code == 400  # no event
    counts = settled(folder)

    page.goto(server.url + "/console/")
    for destination in ("planhat", "crisp"):
        row = page.locator(f'#destinations tr[data-destination="{destination}"]')
        per = counts[destination]
        shown = {state: int(row.locator(f'td[data-state="{state}"]').inner_text())
                 for state in ("accepted", "delivered", "skipped", "rejected", "retrying", "dead", "queue_depth")}
        assert shown == {"accepted": sum(per.values()), "delivered": per.get("delivered", 0),
                         "skipped": per.get("skipped", 0), "rejected": per.get("rejected", 0),
                         "retrying": per.get("retrying", 0), "dead": per.get("dead", 0), "queue_depth": 0}
    assert counts["crisp"]["dead"] >= 1 and counts["crisp"]["skipped"] >= 3
    crisp = page.locator('#destinations tr[data-destination="crisp"] .reasons').inner_text()
    assert "not subscribed: call type 'track' is not in this route's types (identify)" in crisp
    rejected = counts["(intake)"]["rejected"]
    assert page.locator("#intake-rejected").inner_text().startswith(
        f"{rejected} event{'' if rejected == 1 else 's'} did not follow")   # "1 event", never "1 events"
    assert "succeeded" in page.locator("figure.chart").first.inner_text()
    no_secret_in(page)


# --------------------------------------------------------------------------- events

def test_a_new_event_appears_within_two_seconds_with_its_outcome_per_destination(site, page):
    server, _, _ = site
    page.goto(server.url + "/console/events")
    page.wait_for_load_state("networkidle")
    message_id = unique("live")
    assert server.post("/v1/track", {"userId": "live-user", "event": "Live Event", "messageId": message_id}).ok
    posted = time.monotonic()
    row = page.locator(f'tr.event[data-message-id="{message_id}"]')
    row.wait_for(timeout=2000)
    assert time.monotonic() - posted < 2.5   # the wait above is the real bound; this catches a slow wait_for
    wait_for(lambda: "planhat: delivered" in row.inner_text(), 15, "the delivery to show up on the row")
    assert "crisp: skipped" in row.inner_text() and "not subscribed" in row.inner_text()


def test_events_are_filtered_by_user_type_name_and_message_id(site, page):
    server, _, _ = site
    user = unique("filter")
    assert server.post("/v1/track", {"userId": user, "event": "Order Completed", "messageId": f"{user}-1"}).ok
    assert server.post("/v1/page", {"userId": user, "name": "Pricing", "messageId": f"{user}-2"}).ok
    assert server.post("/v1/track", {"userId": "someone-else", "event": "Order Completed", "messageId": f"{user}-3"}).ok
    page.goto(server.url + "/console/events")
    page.fill('input[name="userId"]', user)
    page.click("form.filters button")
    rows = page.locator("tr.event")
    wait_for(lambda: rows.count() == 2, 10, "the two events of the user")
    assert {rows.nth(i).get_attribute("data-message-id") for i in range(2)} == {f"{user}-1", f"{user}-2"}
    page.select_option('select[name="type"]', "page")
    page.click("form.filters button")
    wait_for(lambda: rows.count() == 1 and rows.first.get_attribute("data-message-id") == f"{user}-2", 10, "page only")
    page.goto(server.url + f"/console/events?name=Order+Completed&messageId={user}-3")
    assert [rows.nth(i).get_attribute("data-message-id") for i in range(rows.count())] == [f"{user}-3"]
    page.wait_for_timeout(1500)   # a live refresh keeps the filters
    assert [rows.nth(i).get_attribute("data-message-id") for i in range(rows.count())] == [f"{user}-3"]


# --------------------------------------------------------------------------- a delivery and dead letters

def test_a_dead_letter_retried_from_the_page_after_confirming_reaches_the_vendor(site, page):
    server, vendor, folder = site
    email = f"retry-{uuid.uuid4().hex[:8]}@example.com"
    message_id = unique("dead")
    vendor.answer(Answer(400, {"error": "invalid email"}),
                  when=lambda r: r.path.startswith("/crisp") and email in str(r.body), times=1)
    assert server.post("/v1/identify", {"userId": "dead-user", "traits": {"email": email},
                                        "messageId": message_id}).ok
    with open_store("sqlite:///events.db", base=folder) as store:
        def dead_one():
            return [r for r in store.list("crisp", "dead", limit=1000) if r.message_id == message_id]
        [record] = wait_for(dead_one, 20, "the crisp delivery to go dead")

    page.goto(server.url + f"/console/deliveries/{record.id}")
    assert page.locator("#state").inner_text() == "dead"
    attempts = page.locator("table.attempts tbody").inner_text()
    assert "400" in attempts and "invalid email" in attempts   # status and response excerpt
    request = json.loads(page.locator("pre.request").first.inner_text())
    assert request["body"]["email"] == email and request["headers"]["Authorization"] == "Basic ***"
    no_secret_in(page)

    page.goto(server.url + "/console/dead?destination=crisp")
    page.check(f'tr[data-id="{record.id}"] input[type="checkbox"]')
    page.click("#retry-chosen")
    assert "Queue this dead delivery again?" in page.locator("#question").inner_text()
    def arrived():   # accepted (2xx) by the Crisp stand-in
        return any(r.path.startswith("/crisp") and email in str(r.body) for r in list(vendor.received))
    time.sleep(1.5)
    assert not arrived() and store_state(folder, record.id) == "dead"   # nothing happens before confirming
    page.click("#confirm")
    assert page.locator("#retried").inner_text().startswith("1 dead delivery queued again")
    wait_for(arrived, 20, "the retried delivery at the stand-in")
    wait_for(lambda: store_state(folder, record.id) == "delivered", 20, "the delivery recorded as delivered")


# --------------------------------------------------------------------------- mapping tester

def test_the_mapping_tester_runs_intake_then_shows_the_requests_a_delivery_sends(site, page, tmp_path):
    server, vendor, _ = site
    event = json.loads((ROOT / "fixtures/events/identify-full.json").read_text(encoding="utf-8"))
    event.pop("messageId", None)
    event.get("context", {}).pop("ip", None)
    page.goto(server.url + "/console/tester")
    page.select_option("#destination", "planhat")
    page.fill("#event", json.dumps(event))
    page.click("#run")
    assert page.locator("#status").inner_text() == "send"
    assert "externalId" in page.locator("#fields").inner_text()
    no_secret_in(page)

    # the server's intake steps came first: receivedAt, context.ip from the client, a messageId
    prepared = json.loads(page.locator("#prepared").inner_text())
    assert prepared["receivedAt"].endswith("Z") and prepared["context"]["ip"] == "127.0.0.1"
    assert prepared["messageId"].startswith("eventmap-") and prepared["traits"] == event["traits"]
    assert "csrf" not in page.url and page.url.endswith("/console/tester")   # a POST: no token in the URL

    # what eventmap render prints for the event intake made ...
    (tmp_path / "event.json").write_text(json.dumps(prepared), encoding="utf-8")
    settings = json.dumps({"tenant_token": "planhat-token", "base_url": f"{vendor.url}/planhat"})
    printed = subprocess.run([sys.executable, "-m", "engine", "render", "planhat", str(tmp_path / "event.json"),
                              "--settings", settings], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert printed.returncode == 0, printed.stderr
    rendered = json.loads(printed.stdout)["requests"]
    assert json.loads(page.locator("#outcome").text_content())["requests"] == rendered
    assert "***" in json.dumps(rendered)   # the tenant token in the URL, masked on both sides
    # ... and the request a delivery sends: Planhat batches, so a bulk request of one
    [sent] = json.loads(page.locator("#requests").inner_text())
    assert sent["url"] == f"{vendor.url}/planhat/analytics/bulk/***" and sent["body"] == [rendered[0]["body"]]


def test_the_mapping_tester_explains_bad_input_without_failing(site, page):
    server, _, _ = site
    page.goto(server.url + "/console/tester")
    page.fill("#event", '{"type": "track",\n "event": }')
    page.click("#run")
    assert page.locator("#problem").inner_text().startswith("event:2:")
    page.fill("#event", '{"type": "track", "userId": "u1"}')
    page.click("#run")
    assert page.locator("#status").inner_text() == "rejected"
    assert "event" in page.locator("#errors").inner_text()


# --------------------------------------------------------------------------- safety

XSS = "<script>window.__xss = 1</script><img src=x onerror=window.__xss=2>"   # no quotes: JSON shows it as is


def test_untrusted_event_data_is_shown_as_text_and_never_runs(site, page):
    server, _, folder = site
    message_id = unique("xss")
    assert server.post("/v1/identify", {"userId": XSS, "traits": {"name": XSS, "email": "x@example.com"},
                                        "messageId": message_id}).ok
    assert server.post("/v1/track", {"userId": "xss-user", "event": XSS, "messageId": message_id + "-t"}).ok
    page.goto(server.url + "/console/events")
    row = page.locator(f'tr.event[data-message-id="{message_id}"]')
    row.wait_for()
    assert row.locator("td.user").inner_text() == XSS
    assert page.locator(f'tr.event[data-message-id="{message_id}-t"]').inner_text().count(XSS) == 1
    page.wait_for_timeout(1500)   # a live refresh swaps the rows in again
    assert page.evaluate("window.__xss") is None
    assert page.locator('img[src="x"]').count() == 0 and page.locator("main script").count() == 0

    with open_store("sqlite:///events.db", base=folder) as store:
        [record] = [r for e in store.events(EventQuery(message_id=message_id)) for r in e.deliveries
                    if r.destination == "crisp"]
    page.goto(server.url + f"/console/deliveries/{record.id}")
    assert XSS in page.locator("#event").inner_text()
    page.goto(server.url + "/console/tester")
    page.fill("#event", json.dumps({"type": "identify", "userId": XSS, "traits": {"name": XSS, "email": "x@e.com"}}))
    page.select_option("#destination", "crisp")
    page.click("#run")
    assert XSS in page.locator("#requests").inner_text() and XSS in page.locator("#fields").inner_text()
    assert page.evaluate("window.__xss") is None and page.locator('img[src="x"]').count() == 0


class Attacker:
    """A page on another site (localhost vs 127.0.0.1) whose form posts to the console when it loads."""

    def __init__(self, target: str, fields: dict):
        inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
        html = (f'<html><body><form id="f" method="post" action="{target}">{inputs}</form>'
                f'<script>document.getElementById("f").submit()</script></body></html>').encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(html)))
                self.end_headers()
                self.wfile.write(html)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_cross_site_form_cannot_retry_dead_letters(site, page):
    server, _, folder = site
    message_id = unique("csrf")
    assert server.post("/v1/identify", {"userId": "csrf-user", "messageId": message_id,
                                        "traits": {"email": f"{REFUSED_MARK}-csrf@example.com"}}).ok
    with open_store("sqlite:///events.db", base=folder) as store:
        def dead_one():
            return [r for r in store.list("crisp", "dead", limit=1000) if r.message_id == message_id]
        [record] = wait_for(dead_one, 20, "the crisp delivery to go dead")
        page.goto(server.url + "/console/dead")   # the browser holds the console's cookie and login
        attacker = Attacker(server.url + "/console/dead/retry", {"confirmed": "yes", "id": record.id, "csrf": "guess"})
        try:
            page.goto(attacker.url)
            page.wait_for_url(server.url + "/console/dead/retry")
            assert page.locator("h1").inner_text() == "403"
            assert "cross-site" in page.locator("#problem").inner_text()
        finally:
            attacker.close()
        assert store.get(record.id).state == "dead"

    # without a browser's help: no token, a wrong token, another origin
    auth = (CONSOLE_USER, CONSOLE_PASSWORD)
    session = requests.Session()
    got = session.get(server.url + "/console/dead", auth=auth, timeout=10)
    token = got.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    form = {"confirmed": "yes", "id": str(record.id)}
    assert session.post(server.url + "/console/dead/retry", data=form, auth=auth, timeout=10).status_code == 403
    assert session.post(server.url + "/console/dead/retry", data={**form, "csrf": "x" * 43}, auth=auth,
                        timeout=10).status_code == 403
    assert requests.post(server.url + "/console/dead/retry", data={**form, "csrf": token}, auth=auth,
                         timeout=10).status_code == 403   # the token without its cookie
    assert session.post(server.url + "/console/dead/retry", data={**form, "csrf": token}, auth=auth, timeout=10,
                        headers={"Origin": "http://evil.example"}).status_code == 403
    with open_store("sqlite:///events.db", base=folder) as store:
        assert store.get(record.id).state == "dead"
    allowed = session.post(server.url + "/console/dead/retry", data={**form, "csrf": token}, auth=auth, timeout=10,
                           allow_redirects=False)
    assert allowed.status_code == 303 and "retried=1" in allowed.headers["Location"]


def test_the_console_needs_its_login_and_never_shows_a_secret(site):
    server, _, _ = site
    assert requests.get(server.url + "/console/", timeout=10).status_code == 401
    assert requests.get(server.url + "/console/", auth=(CONSOLE_USER, "wrong"), timeout=10).status_code == 401
    assert requests.get(server.url + "/console/", auth=(WRITE_KEY, ""), timeout=10).status_code == 401
    for path in ("/console/", "/console/events", "/console/dead", "/console/tester?destination=crisp"):
        answer = requests.get(server.url + path, auth=(CONSOLE_USER, CONSOLE_PASSWORD), timeout=10)
        assert answer.status_code == 200 and "default-src 'self'" in answer.headers["Content-Security-Policy"]
        for secret in SECRETS:
            assert secret not in answer.text
    assert CONSOLE_PASSWORD not in server.output()


def test_the_console_username_is_not_masked_in_event_data(site):
    """A username is not a secret: with the login 'admin', a userId 'admin-user' is shown as it is."""
    server, _, _ = site
    message_id = unique("username")
    assert server.post("/v1/track", {"userId": f"{CONSOLE_USER}-user", "event": "Signed Up",
                                     "messageId": message_id}).ok
    answer = requests.get(server.url + f"/console/events?messageId={message_id}",
                          auth=(CONSOLE_USER, CONSOLE_PASSWORD), timeout=10)
    assert answer.status_code == 200 and message_id in answer.text
    assert f"{CONSOLE_USER}-user" in answer.text and "***-user" not in answer.text
