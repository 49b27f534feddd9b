"""The whole path of an event, in the console, in a real browser (Debian's Chromium through Playwright) against a
real ``eventmap serve`` (two server processes), its SQLite store and a vendor stand-in: requests refused at the
door, events filtered by destination, state and time, why deliveries are not delivered now, the request that went
over the wire, and the mapping tester sending for real.

The stand-in accepts Planhat, refuses Crisp identifies marked REFUSED_MARK (400: dead) and answers the Segment
destination 500 for good (retrying). Without /usr/bin/chromium these tests skip and say why, unless
EVENTMAP_REQUIRE_BROWSER=1.
"""
from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import requests
from console_harness import (
    CONSOLE_PASSWORD,
    CONSOLE_USER,
    FAILING,
    REFUSED_MARK,
    SHOP,
    chromium_or_skip,
    console_page,
    refuse_marked,
    start,
)
from serve_harness import MOBILE_KEY, Server, wait_for
from vendor_server import VendorServer

from engine.store import DELIVERED, Attempt, EventQuery, Finish, NewDelivery, NewEvent, open_store

SECRETS = ("planhat-token", "crisp-key", "segment-key-0e4d", CONSOLE_PASSWORD, MOBILE_KEY)
AUTH = (CONSOLE_USER, CONSOLE_PASSWORD)


@pytest.fixture(scope="module")
def browser():
    with chromium_or_skip() as launched:
        yield launched


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console-path")
    with VendorServer() as vendor:
        refuse_marked(vendor)
        server = start(folder, vendor, failing=True)
        try:
            yield server, vendor, folder
        finally:
            server.stop()
            server.kill()


@pytest.fixture
def page(browser, site):
    urls: list[str] = []
    with console_page(browser, viewport={"width": 1280, "height": 900}) as opened:
        opened.on("request", lambda r: urls.append(r.url))
        yield opened
    assert not [u for u in urls if "csrf" in u], "the CSRF token went into a URL"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def reloaded(page) -> bool:
    page.reload()
    return True


def no_secret_in(page) -> None:
    html = page.content()
    for secret in SECRETS:
        assert secret not in html


def retrying(folder, deadline: float = 20.0):
    """A delivery to the failing destination that has been tried and waits to be tried again. Not necessarily
    one a test sent: once the destination fails, its circuit breaker holds the rest queued, probing with one."""
    with open_store("sqlite:///events.db", base=folder) as store:
        return wait_for(lambda: next(iter(store.list(FAILING, "retrying", limit=1)), None), deadline,
                        f"a retrying {FAILING} delivery")


def delivery_of(folder, message_id: str, destination: str, state: str | None = None, deadline: float = 20.0):
    """The delivery of ``message_id`` to ``destination`` once it is in ``state`` (any state when None)."""
    with open_store("sqlite:///events.db", base=folder) as store:
        def found():
            for event in store.events(EventQuery(message_id=message_id)):
                for d in event.deliveries:
                    if d.destination == destination and (state is None or d.state == state):
                        return d
            return None
        return wait_for(found, deadline, f"{destination} {state or ''} for {message_id}")


# --------------------------------------------------------------------------- refused at the door

def test_a_browser_sdk_with_a_wrong_write_key_is_found_in_the_console(site, page):
    server, _, _ = site
    wrong = unique("wrong-browser-key")
    sdk = {"Content-Type": "text/plain", "Origin": SHOP, "User-Agent": "Mozilla/5.0 analytics-next-test"}
    body = json.dumps({"writeKey": wrong, "batch": [{"type": "track", "event": "Viewed", "userId": "u"}]})
    assert requests.post(server.url + "/v1/batch", data=body, headers=sdk, timeout=10).status_code == 401
    # the right key from a page the source does not allow; a body that is not JSON; one over the limit
    evil = "https://evil.example"
    assert server.post("/v1/track", {"event": "x", "userId": "u"}, headers={"Origin": evil}).status_code == 403
    assert server.post("/v1/track", data=b"{not json").status_code == 400
    too_large = server.post("/v1/batch", data=b'{"batch": ["' + b"a" * (600 * 1024) + b'"]}')
    assert too_large.status_code == 400 and too_large.json()["code"] == "too_large"

    page.goto(server.url + "/console/refused")
    row = page.locator("#refused tr.refusal", has_text=wrong[:4] + "…")
    every = [row, page.locator("#refused tr.refusal", has_text="https://evil.example"),
             page.locator('#refused tr[data-status="400"]', has_text="not valid JSON"),
             page.locator('#refused tr[data-status="400"]', has_text="too_large")]
    # each server process writes what it refused within a second or so
    wait_for(lambda: reloaded(page) and all(r.count() == 1 for r in every), 15, "the refusals on the Refused page")
    text = row.inner_text()
    assert "401" in text and "unknown write key" in text and SHOP in text and "analytics-next-test" in text
    assert f"({len(wrong)} characters)" in text
    secret_part = wrong.rsplit("-", 1)[1]
    assert wrong not in page.content() and secret_part not in page.content()   # a few characters, never the key
    origin = page.locator("#refused tr.refusal", has_text=evil)
    assert origin.count() == 1 and "source web" in origin.inner_text() and "403" in origin.inner_text()
    no_secret_in(page)

    page.goto(server.url + "/console/")
    summary = page.locator("#refused-summary").inner_text()
    assert "401" in summary and "403" in summary and "nothing was stored" in summary
    assert page.locator("#refused-latest tr.refusal").count() >= 1
    page.click("#refused-summary a")
    assert page.url.endswith("/console/refused")


def test_refusals_from_every_server_process_are_counted_together(site):
    server, _, folder = site
    wrong = unique("many-wrong-keys")

    def send(n):
        for _ in range(n):
            requests.post(server.url + "/v1/track", json={"event": "x", "userId": "u"}, auth=(wrong, ""), timeout=10)
    threads = [threading.Thread(target=send, args=(10,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open_store("sqlite:///events.db", base=folder) as store:
        def counted():
            return sum(r.count for r in store.refusals(limit=1000) if (r.key_prefix or "").startswith(wrong[:4]))
        wait_for(lambda: counted() == 40, 10, "all 40 refusals in the sample")
        time.sleep(1.5)   # a writer's next turn adds nothing more
        assert counted() == 40


# --------------------------------------------------------------------------- filters

def test_the_overview_opens_the_events_of_a_destination_and_of_a_state(site, page):
    server, _, folder = site
    user = unique("links")
    assert server.post("/v1/track", {"userId": user, "event": "Linked", "messageId": f"{user}-t"}).ok
    assert server.post("/v1/identify", {"userId": user, "traits": {"email": f"{user}@example.com"},
                                        "messageId": f"{user}-i"}).ok
    delivery_of(folder, f"{user}-i", "crisp", DELIVERED)
    page.goto(server.url + "/console/")
    page.click('#destinations tr[data-destination="crisp"] th a')
    assert "destination=crisp" in page.url
    rows = page.locator("tr.event")
    rows.first.wait_for()
    assert all(rows.nth(i).locator('.delivery[data-destination="crisp"]').count() == 1 for i in range(rows.count()))

    page.goto(server.url + "/console/")
    page.click('#destinations tr[data-destination="crisp"] td[data-state="skipped"] a')
    assert "destination=crisp" in page.url and "state=skipped" in page.url
    rows.first.wait_for()
    states = {rows.nth(i).locator('.delivery[data-destination="crisp"] a').inner_text() for i in range(rows.count())}
    assert states == {"crisp: skipped"}
    assert page.locator(f'tr.event[data-message-id="{user}-t"]').count() == 1
    assert page.locator(f'tr.event[data-message-id="{user}-i"]').count() == 0   # delivered, not skipped


def test_events_are_filtered_by_destination_state_name_and_time(site, page):
    server, _, folder = site
    user = unique("filters")
    for i in range(3):
        assert server.post("/v1/track", {"userId": user, "event": "Filtered", "messageId": f"{user}-{i}"}).ok
    delivery_of(folder, f"{user}-2", "planhat", DELIVERED)
    page.goto(server.url + "/console/events")
    page.select_option('select[name="destination"]', "planhat")
    page.select_option('select[name="state"]', "delivered")
    page.fill('input[name="name"]', "Filtered")
    page.fill('input[name="since"]', "10m")
    page.click("form.filters button")
    rows = page.locator("tr.event")
    wait_for(lambda: rows.count() == 3, 10, "the three events")
    assert [rows.nth(i).get_attribute("data-message-id") for i in range(3)] == [f"{user}-{i}" for i in (2, 1, 0)]
    assert page.locator("#events-count").inner_text().startswith("3 events")
    page.wait_for_timeout(1500)   # the live refresh keeps every filter
    assert rows.count() == 3
    page.select_option('select[name="state"]', "dead")
    page.click("form.filters button")
    wait_for(lambda: rows.count() == 0, 10, "none dead")
    assert "no events match these filters" in page.locator("table.events").inner_text()

    page.goto(server.url + f"/console/events?name=Filtered&userId={user}&until=2000-01-01")
    assert rows.count() == 0
    page.goto(server.url + f"/console/events?messageId={user}-1&since=not-a-time")
    assert "since: expected a moment" in page.locator(".filter-problem").inner_text()
    assert page.locator("#events-count").inner_text().startswith("1 event ")   # one, never "1 events"


def test_the_user_id_column_shows_the_user_id_and_the_anonymous_id_its_own(site, page):
    server, _, _ = site
    both, anonymous = unique("both"), unique("anon-only")
    assert server.post("/v1/track", {"userId": "the-user", "anonymousId": "the-anonymous-id", "event": "Both",
                                     "messageId": both}).ok
    assert server.post("/v1/track", {"anonymousId": "only-anonymous", "event": "Anon", "messageId": anonymous}).ok
    page.goto(server.url + "/console/events")
    row = page.locator(f'tr.event[data-message-id="{both}"]')
    row.wait_for()
    assert row.locator("td.user").inner_text() == "the-user"
    assert row.locator("td.anonymous").inner_text() == "the-anonymous-id"
    other = page.locator(f'tr.event[data-message-id="{anonymous}"]')
    assert other.locator("td.user").inner_text() == "" and other.locator("td.anonymous").inner_text() == "only-anonymous"


# --------------------------------------------------------------------------- why not delivered now

def test_the_overview_says_why_deliveries_are_retrying_or_dead_and_charts_each_destination(site, page):
    server, _, folder = site
    user = unique("why")
    assert server.post("/v1/track", {"userId": user, "event": "Why", "messageId": f"{user}-t"}).ok
    assert server.post("/v1/identify", {"userId": user, "traits": {"email": f"{user}.{REFUSED_MARK}@example.com"},
                                        "messageId": f"{user}-dead"}).ok
    retrying(folder)
    delivery_of(folder, f"{user}-dead", "crisp", "dead")
    page.goto(server.url + "/console/")
    failing = page.locator(f'#destinations tr[data-destination="{FAILING}"] .reasons').inner_text()
    assert "retrying" in failing and "last answer 500" in failing and "upstream on fire" in failing
    crisp = page.locator('#destinations tr[data-destination="crisp"] .reasons').inner_text()
    assert "dead" in crisp and "400" in crisp and "invalid email" in crisp
    chart = page.locator(f'[data-chart="{FAILING}"] figcaption').inner_text()
    assert "per minute, last hour" in chart and "0 attempts succeeded" in chart and "failed" in chart
    assert page.locator(f'[data-chart="{FAILING}"] svg text.tick').count() >= 2   # a time axis
    page.click('a.range:text("24h")')
    assert page.url.endswith("/console/?range=24h")
    assert "last 24 hours" in page.locator(f'[data-chart="{FAILING}"] figcaption').inner_text()
    page.wait_for_timeout(5500)   # the refresh keeps the range
    assert "last 24 hours" in page.locator(f'[data-chart="{FAILING}"] figcaption').inner_text()
    no_secret_in(page)


# --------------------------------------------------------------------------- what was sent

def test_a_delivered_event_shows_the_batch_request_it_went_in_with_its_siblings(site, page):
    server, vendor, folder = site
    users = [unique("sibling") for _ in range(3)]
    batch = [{"type": "track", "userId": u, "event": "Batched", "messageId": u} for u in users]
    assert server.post("/v1/batch", {"batch": batch}).ok
    record = delivery_of(folder, users[1], "planhat", DELIVERED)
    page.goto(server.url + f"/console/deliveries/{record.id}")
    sent = json.loads(page.locator("#sent-request").inner_text())
    assert sent["url"].endswith("/planhat/analytics/bulk/***") and sent["method"] == "POST"
    externals = [item["externalId"] for item in sent["body"]]
    assert set(users) <= set(externals)
    # the same body the stand-in received
    wire = next(r for r in list(vendor.received) if r.path.startswith("/planhat/analytics/bulk")
                and users[1] in json.dumps(r.body))
    assert wire.body == sent["body"]
    summary = page.locator("#sent-summary").inner_text()
    assert f"carrying {len(externals)} events: this one and {len(externals) - 1} other" in summary
    assert page.locator("#sent-summary .siblings a").count() == len(externals)
    assert page.locator("#not-recorded").count() == 0
    no_secret_in(page)
    page.click("table.attempts a")   # each attempt's request on a page of its own
    assert json.loads(page.locator("#sent-request").inner_text()) == sent


def test_a_retrying_delivery_shows_what_it_sent_and_the_answer(site, page):
    server, _, folder = site
    assert server.post("/v1/track", {"userId": "u-retry", "event": "Retried", "messageId": unique("retrying")}).ok
    record = retrying(folder)
    page.goto(server.url + f"/console/deliveries/{record.id}")
    assert page.locator("#state").inner_text() == "retrying" and page.locator("#last-status").inner_text() == "500"
    assert "upstream on fire" in page.locator("table.attempts").inner_text()
    sent = json.loads(page.locator("#sent-request").inner_text())
    assert sent["url"].endswith(f"/{FAILING}/v1/batch") and sent["headers"]["Authorization"] == "Basic ***"
    assert record.message_id in [item["messageId"] for item in sent["body"]["batch"]]
    no_secret_in(page)


def test_a_delivery_whose_request_was_not_recorded_says_so_and_shows_no_rebuilt_request_as_sent(site, page):
    server, _, folder = site
    message_id = unique("unrecorded")
    with open_store("sqlite:///events.db", base=folder) as store:   # as a delivery made before requests were kept
        [accepted] = store.accept([NewEvent({"type": "track", "event": "Old", "userId": "u", "messageId": message_id},
                                            message_id, [NewDelivery("retired")])], time.time())
        [(delivery, _, _)] = accepted.deliveries
        store.lease("retired", 1, "old-worker", time.time(), 60)
        store.finish([Finish(delivery, DELIVERED, Attempt(time.time(), 200, None))], "old-worker", time.time())
    page.goto(server.url + f"/console/deliveries/{delivery}")
    assert "not recorded" in page.locator("#not-recorded").inner_text()
    assert page.locator("#sent-request").count() == 0
    assert page.locator("table.attempts").inner_text().count("not recorded") == 1


def test_a_retried_dead_letter_that_is_then_delivered_shows_its_latest_attempt(site, page):
    server, vendor, folder = site
    email = f"{unique('again')}@example.com"
    message_id = unique("again")
    from vendor_server import Answer
    vendor.answer(Answer(400, {"error": "invalid email"}),
                  when=lambda r: r.path.startswith("/crisp") and email in str(r.body), times=1)
    assert server.post("/v1/identify", {"userId": "again", "traits": {"email": email}, "messageId": message_id}).ok
    record = delivery_of(folder, message_id, "crisp", "dead")
    page.goto(server.url + f"/console/deliveries/{record.id}")
    assert "is final" in page.locator("#reason").inner_text() or "400" in page.locator("#reason").inner_text()
    page.click("form button:text('Retry…')")
    page.click("#confirm")
    delivery_of(folder, message_id, "crisp", DELIVERED)
    page.goto(server.url + f"/console/deliveries/{record.id}")
    assert page.locator("#state").inner_text() == "delivered"
    assert page.locator("#reason").count() == 0                     # no "400 is final" beside "delivered"
    assert page.locator("#last-status").inner_text().startswith("2")
    statuses = page.locator("table.attempts").inner_text()
    assert "400" in statuses and "invalid email" in statuses        # the history keeps the rest
    page.goto(server.url + f"/console/events?messageId={message_id}")
    crisp = page.locator('.delivery[data-destination="crisp"]')
    assert crisp.locator("a").inner_text() == "crisp: delivered" and "400" not in crisp.inner_text()


# --------------------------------------------------------------------------- the check

def test_from_the_console_alone_each_event_says_why_it_did_or_did_not_reach_each_vendor(site, page):
    """Delivered, skipped, rejected, retrying against a stand-in answering 500, dead after a 400: each found from
    the Events page, and its delivery page says why, with the vendor's answer where there was one."""
    server, _, folder = site
    user = unique("why-each")
    dead, rejected, skipped = f"{user}-dead", f"{user}-rejected", f"{user}-skipped"
    assert server.post("/v1/identify", {"userId": user, "traits": {"email": f"{user}.{REFUSED_MARK}@example.com"},
                                        "messageId": dead}).ok
    assert server.post("/v1/identify", {"userId": user, "traits": {"name": "No Email"}, "messageId": rejected}).ok
    assert server.post("/v1/track", {"userId": user, "event": "Skipped By Crisp", "messageId": skipped}).ok
    delivery_of(folder, dead, "crisp", "dead")
    delivery_of(folder, dead, "planhat", DELIVERED)
    retrying(folder)

    def open_delivery(message_id: str, destination: str) -> str:
        page.goto(server.url + f"/console/events?userId={user}")
        link = page.locator(f'tr.event[data-message-id="{message_id}"] .delivery[data-destination="{destination}"] a')
        state = link.inner_text().split(": ", 1)[1]
        link.click()
        return state

    assert open_delivery(dead, "planhat") == "delivered"
    assert page.locator("#last-status").inner_text() == "200" and page.locator("#sent-request").count() == 1
    assert open_delivery(dead, "crisp") == "dead"
    assert "400" in page.locator("#reason").inner_text() and "invalid email" in page.locator("#reason").inner_text()
    assert open_delivery(rejected, "crisp") == "rejected"
    assert "required fields are missing" in page.locator("#reason").inner_text()
    assert "email" in page.locator("dl.facts").inner_text()
    assert open_delivery(skipped, "crisp") == "skipped"
    assert "not subscribed" in page.locator("#reason").inner_text() and page.locator("#nothing-sent").count() == 1
    state = open_delivery(dead, FAILING)   # retrying, or queued behind the failing destination's probe
    assert state in ("retrying", "queued")
    waiting = page.locator("#waiting").inner_text()
    assert "last answer 500" in waiting and "upstream on fire" in waiting
    if state == "retrying":
        assert page.locator("#last-status").inner_text() == "500"
    no_secret_in(page)


# --------------------------------------------------------------------------- the mapping tester

def test_the_tester_sends_an_event_for_real_only_after_a_confirmation(site, page):
    server, vendor, _ = site
    user = unique("tested")
    page.goto(server.url + "/console/tester")
    page.select_option("#destination", "planhat")
    page.select_option("#sample", "identify")
    page.click("#load-sample")   # a POST: the token stays out of the URL (checked for every request)
    assert page.url.endswith("/console/tester") and '"identify"' in page.locator("#event").input_value()
    page.fill("#event", json.dumps({"type": "identify", "userId": user, "traits": {"email": f"{user}@example.com"}}))
    page.click("#run")
    page.click("#send")
    assert page.locator("#confirm-question").inner_text() == "Send this event to planhat for real?"
    assert not any(user in json.dumps(r.body) for r in list(vendor.received))   # nothing before confirming
    page.click("#send-confirmed")
    assert page.locator("#sent-status").inner_text() == "the vendor accepted it"
    assert page.locator(".answer-status").inner_text() == "200" and '"ok": true' in page.locator(".answer-body").inner_text()
    [arrived] = [r for r in list(vendor.received) if user in json.dumps(r.body)]
    assert arrived.path == "/planhat/analytics/bulk/planhat-token"   # as a delivery sends it: a batch of one
    assert arrived.body[0]["externalId"] == user
    no_secret_in(page)

    page.select_option("#destination", FAILING)
    page.click("#run")
    page.click("#send")
    page.click("#send-confirmed")
    assert page.locator("#sent-status").inner_text() == "not accepted"
    assert page.locator(".answer-status").inner_text() == "500"
    assert "upstream on fire" in page.locator(".answer-body").inner_text()
    no_secret_in(page)


def test_the_tester_sends_a_multi_step_action_as_a_delivery_runs_its_steps(site):
    """Crisp's identify is steps (update, else create): the tester runs them with the route's settings."""
    server, vendor, _ = site
    user = unique("stepped")
    session = requests.Session()
    token = session.get(server.url + "/console/tester", auth=AUTH, timeout=10).text \
        .split('name="csrf" value="', 1)[1].split('"', 1)[0]
    event = {"type": "identify", "userId": user, "traits": {"email": f"{user}@example.com"}}
    sent = session.post(server.url + "/console/tester", auth=AUTH, timeout=10,
                        data={"csrf": token, "action": "send", "confirmed": "yes", "destination": "crisp",
                              "event": json.dumps(event)})
    assert sent.status_code == 200 and "the vendor accepted it" in sent.text, sent.text
    [arrived] = [r for r in list(vendor.received) if user in json.dumps(r.body)]
    assert arrived.method == "PATCH" and arrived.path.startswith("/crisp/") and user in arrived.path


def test_the_tester_does_not_send_without_its_confirmation_or_its_token(site):
    server, vendor, _ = site
    user = unique("unconfirmed")
    session = requests.Session()
    token = session.get(server.url + "/console/tester", auth=AUTH, timeout=10).text \
        .split('name="csrf" value="', 1)[1].split('"', 1)[0]
    form = {"destination": "planhat", "action": "send", "event": json.dumps({"type": "identify", "userId": user})}
    unconfirmed = session.post(server.url + "/console/tester", data={**form, "csrf": token}, auth=AUTH, timeout=10)
    assert unconfirmed.status_code == 200 and "sending must be confirmed" in unconfirmed.text
    tokenless = session.post(server.url + "/console/tester", data={**form, "confirmed": "yes"}, auth=AUTH, timeout=10)
    assert tokenless.status_code == 403
    as_get = session.get(server.url + "/console/tester", params={**form, "confirmed": "yes", "csrf": token},
                         auth=AUTH, timeout=10)
    assert as_get.status_code == 200 and "Sent to" not in as_get.text
    time.sleep(0.5)
    assert not any(user in json.dumps(r.body) for r in list(vendor.received) + list(vendor.refused))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``eventmap serve`` with no file: it sends nothing, and neither does its tester."""
    with Server(tmp_path_factory.mktemp("demo"), "--intake-only") as server:
        yield server


def test_the_demo_tester_sends_nothing_and_a_misdirected_host_is_a_refusal(demo, browser):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(demo.url + "/console/tester")
        page.click("#run")
        assert page.locator("#status").inner_text() == "send" and page.locator("#send").count() == 0
        assert "this server sends nothing" in page.locator("main p.muted").first.inner_text()
        session = requests.Session()   # a hand-made POST is refused too
        token = session.get(demo.url + "/console/tester", timeout=10).text.split('name="csrf" value="', 1)[1] \
            .split('"', 1)[0]
        sent = session.post(demo.url + "/console/tester", timeout=10,
                            data={"csrf": token, "action": "send", "confirmed": "yes", "destination": "",
                                  "event": json.dumps({"type": "track", "event": "x", "userId": "u"})})
        assert "the tester does not send either" in sent.text and "Sent to" not in sent.text
        port = demo.url.rsplit(":", 1)[1]
        assert requests.get(demo.url + "/healthz", headers={"Host": f"rebinding.example:{port}"},
                            timeout=10).status_code == 421
        page.goto(demo.url + "/console/refused")
        row = page.locator('#refused tr[data-status="421"]')
        wait_for(lambda: reloaded(page) and row.count() == 1, 10, "the 421 on the Refused page")
        assert "rebinding.example" in row.inner_text() and "/healthz" in row.inner_text()
    finally:
        context.close()
