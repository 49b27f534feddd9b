"""The console's Violations page in a real browser (Debian's Chromium, driven by Playwright) against a real
``eventmap serve`` whose source enforces the example plan (fixtures/plans/shop.yaml) in warn mode."""
from __future__ import annotations

import html
import json
import textwrap
import uuid
from contextlib import contextmanager

import pytest
import requests
from conftest import REPO
from console_harness import CONSOLE_PASSWORD, CONSOLE_USER, chromium_or_skip, console_page
from serve_harness import Server, environment, ok_vendor, wait_for

from engine.store import ViolationQuery, open_store

PLAN = REPO / "fixtures" / "plans" / "shop.yaml"
KEY = "key-web-7d1e"


@pytest.fixture(scope="module")
def browser():
    with chromium_or_skip() as launched:
        yield launched


@contextmanager
def served(folder, unplanned: str, invalid: str):
    """``eventmap serve`` whose source web checks the example plan with these modes; one Segment destination."""
    with ok_vendor() as vendor:
        (folder / "eventmap.yaml").write_text(textwrap.dedent(f"""\
            storage: sqlite:///events.db
            sources:
              web:
                write_key: {KEY}
                plan: {{file: {PLAN}, unplanned: {unplanned}, invalid: {invalid}}}
            destinations:
              segment:
                settings: {{write_key: seg-key, base_url: "{vendor.url_for('').rstrip('/')}"}}
            console:
              username: {CONSOLE_USER}
              password: {{env: TEST_CONSOLE_PASSWORD}}
            """), encoding="utf-8")
        env = {**environment(), "TEST_CONSOLE_PASSWORD": CONSOLE_PASSWORD}
        with Server(folder, "--config", "eventmap.yaml", "--workers", "1", env=env) as server:
            yield server


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plans-console")
    with served(folder, unplanned="warn", invalid="warn") as server:
        yield server, folder


@pytest.fixture
def page(browser):
    with console_page(browser) as opened:
        yield opened


def test_violations_are_listed_by_event_name_with_the_failing_rule_and_an_example(site, page):
    server, folder = site
    order = f"order-{uuid.uuid4().hex[:8]}"
    events = [{"type": "track", "event": "Order Completed", "userId": "u1", "messageId": order,
               "properties": {"order_id": "o-1", "total": "lots", "currency": "EUR"}},
              {"type": "track", "event": "Order Completed", "userId": "u2", "messageId": f"{order}-2",
               "properties": {"order_id": "o-2", "total": "more", "currency": "EUR"}},
              {"type": "track", "event": "Wishlist <b>Shared</b>", "userId": "u1", "messageId": f"{order}-3"},
              {"type": "identify", "userId": "u1", "messageId": f"{order}-4", "traits": {"email": "nope"}}]
    assert server.post("/v1/batch", {"batch": events}, key=KEY).json()["rejected"] == []
    with open_store("sqlite:///events.db", base=folder) as store:
        wait_for(lambda: len(store.violations(ViolationQuery())) >= 3, 10, "the violations in the store")

    page.goto(server.url + "/console/violations")
    section = page.locator('section.violations[data-event="Order Completed"]')
    row = section.locator('tr.violation[data-path="properties.total"]')
    assert row.locator(".rule").inner_text() == "type"
    assert row.locator(".message").inner_text() == "expected a number, got a string"
    assert row.locator(".count").inner_text() == "2" and row.locator(".action").inner_text() == "warn"
    section.locator("details summary").first.click()
    example = json.loads(section.locator("pre.payload").first.inner_text())
    assert example["messageId"] == order and example["properties"]["total"] == "lots"   # the first of the hour
    # an event name is the client's text: shown as text, never as markup
    unplanned = page.locator('section.violations[data-event="Wishlist <b>Shared</b>"]')
    assert unplanned.locator("h2").inner_text().startswith("Wishlist <b>Shared</b>")
    assert unplanned.locator(".rule").inner_text() == "unplanned"
    assert page.locator('section.violations[data-event="(identify traits)"] .rule').inner_text() == "format"

    page.fill('input[name="event"]', "(identify traits)")
    page.click("form.filters button")
    wait_for(lambda: page.locator("section.violations").count() == 1, 10, "the filtered page")
    assert page.locator("section.violations h2").inner_text().startswith("(identify traits)")
    page.goto(server.url + "/console/violations?source=web&since=2099-01-01")
    assert page.locator("#no-violations").inner_text() == "no violations match these filters"
    page.goto(server.url + "/console/violations?since=yesterday-ish")
    assert "since: expected a moment such as" in page.locator("#filter-problem").inner_text()
    assert page.locator('nav a[aria-current="page"]').inner_text() == "Violations"


# --------------------------------------------------------------------------- the mapping tester

ORDER = {"type": "track", "event": "Order Completed", "userId": "u1",
         "properties": {"order_id": "o-9", "total": "lots", "currency": "EUR"}}


def test_the_tester_checks_the_event_against_the_sources_plan_as_intake_does(site, page):
    server, _ = site
    page.goto(server.url + "/console/tester")
    assert page.locator("#source").input_value() == "web"   # the one source with a plan, chosen to begin with
    page.select_option("#destination", "segment")
    page.fill("#event", json.dumps(ORDER))
    page.click("#run")
    assert page.locator("#status").inner_text() == "send"   # warn: the event goes on, with the violation shown
    assert "properties.total expected a number, got a string (type; warn)" in page.locator("#violations").inner_text()

    page.select_option("#source", "")   # no source: no plan, as an event from a source without one
    page.click("#run")
    assert page.locator("#status").inner_text() == "send" and page.locator("#violations").count() == 0


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A server whose source drops the properties that break its plan and blocks unplanned events."""
    with served(tmp_path_factory.mktemp("plans-tester"), unplanned="block", invalid="drop_properties") as server:
        yield server


def tried(server, event: dict, **form) -> str:
    """The tester's page after rendering ``event`` (an HTTP session, as the form posts it)."""
    session, auth = requests.Session(), (CONSOLE_USER, CONSOLE_PASSWORD)
    token = session.get(server.url + "/console/tester", auth=auth, timeout=10).text \
        .split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = session.post(server.url + "/console/tester", auth=auth, timeout=10,
                          data={"csrf": token, "action": "render", "destination": "segment", "event": json.dumps(event),
                                **form})
    assert answer.status_code == 200, answer.text
    return answer.text


def test_the_tester_shows_what_the_plan_drops_and_what_it_blocks(strict):
    dropped = tried(strict, ORDER)
    requests_shown = json.loads(html.unescape(dropped.split('<pre id="requests">', 1)[1].split("</pre>", 1)[0]))
    [sent] = requests_shown
    assert [e["properties"] for e in sent["body"]["batch"]] == [{"order_id": "o-9", "currency": "EUR"}]   # no total
    assert "(type; drop_properties)" in dropped

    blocked = tried(strict, {"type": "track", "event": "Wishlist Shared", "userId": "u1"})
    assert 'id="status" class="state-rejected">rejected<' in blocked and "(at intake)" in blocked
    assert "(unplanned; block)" in blocked
    assert 'id="requests"' not in blocked

    unchecked = tried(strict, {"type": "track", "event": "Wishlist Shared", "userId": "u1"}, source="")
    assert 'id="status" class="state-send">send<' in unchecked

    unknown = tried(strict, ORDER, source="nope")
    assert "source: &#39;nope&#39; has no tracking plan here (sources with one: web)" in unknown
