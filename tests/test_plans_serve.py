"""Tracking plans through ``eventmap serve``, as Segment's SDK meets them: a real server process in each intake
mode (``validate`` and ``queue``), the real analytics-python client, four sources with the example plan
(fixtures/plans/shop.yaml) in each mode, and a stand-in behind the Segment destination that records what
reaches it."""
from __future__ import annotations

import json
import textwrap
import uuid

import pytest
import requests
import segment.analytics as analytics
from conftest import REPO
from segment.analytics.request import APIError
from serve_harness import Server, environment, ok_vendor, wait_for

from engine.store import INTAKE, REJECTED, EventQuery, ViolationQuery, open_store

PLAN = REPO / "fixtures" / "plans" / "shop.yaml"
SOURCES = {   # name: (unplanned, invalid)
    "blocker": ("block", "block"),
    "warner": ("warn", "warn"),
    "dropper": ("allow", "drop_properties"),
    "allower": ("allow", "allow"),
}
GOOD = {"order_id": "o-1", "total": 54.9, "currency": "EUR", "products": [{"product_id": "p-1", "price": 19.95}]}
BAD = {"order_id": "o-2", "total": 20, "currency": "EUR", "coupon": "SPRING",
       "products": [{"product_id": "p-1", "price": "19.95"}]}   # a price as text, deep in products


@pytest.fixture(scope="module", params=["validate", "queue"])
def site(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"plans-{request.param}")
    with ok_vendor() as vendor:
        sources = "".join(f"  {name}:\n    write_key: key-{name}\n    plan: {{file: {PLAN}, unplanned: {u}, "
                          f"invalid: {i}}}\n" for name, (u, i) in SOURCES.items())
        (folder / "eventmap.yaml").write_text(textwrap.dedent(f"""\
            storage: sqlite:///events.db
            server: {{intake: {request.param}}}
            delivery: {{backoff: 1s}}
            destinations:
              segment:
                settings: {{write_key: seg-key, base_url: "{vendor.url_for('').rstrip('/')}"}}
            sources:
            """) + sources, encoding="utf-8")
        with Server(folder, "--config", "eventmap.yaml", "--workers", "1", env=environment()) as server, \
                open_store("sqlite:///events.db", base=folder) as store:
            yield server, store, vendor, request.param


def send(server, source: str, calls: list) -> list[str]:
    """``calls`` through the SDK in one batch; their messageIds."""
    sdk = analytics.Client(f"key-{source}", host=server.url, upload_size=100, max_retries=0)
    ids = []
    for method, args in calls:
        ids.append(f"{source}-{uuid.uuid4().hex[:10]}")
        getattr(sdk, method)(**args, message_id=ids[-1])
    sdk.flush()
    sdk.join()
    return ids


def kept(store, message_id: str):
    found = wait_for(lambda: store.events(EventQuery(message_id=message_id)), 20, f"event {message_id} in the store")
    return found[0]


def delivered(vendor, message_id: str) -> dict:
    """The event as the stand-in received it (the Segment destination forwards events whole)."""
    def find():
        for request, _ in list(vendor.log):
            for item in json.loads(request.get_data()).get("batch", []):
                if item.get("messageId") == message_id:
                    return item
        return None
    return wait_for(find, 20, f"{message_id} at the stand-in")


def violations(store, source: str) -> dict:
    return {(v.event, v.rule, v.path): v for v in store.violations(ViolationQuery(source=source))}


def order(properties: dict) -> tuple[str, dict]:
    return "track", {"user_id": "u1", "event": "Order Completed", "properties": properties}


UNPLANNED = ("track", {"user_id": "u1", "event": "Wishlist Shared", "properties": {"items": 3}})


def test_block_rejects_invalid_and_unplanned_events_with_their_reasons(site):
    server, store, vendor, _ = site
    good, bad, unplanned = send(server, "blocker", [order(GOOD), order(BAD), UNPLANNED])
    assert delivered(vendor, good)["properties"] == GOOD
    for message_id, reason, errors in (
            (bad, "the event breaks the source's tracking plan",
             [{"path": "properties.products[0].price", "message": "expected a number, got a string"}]),
            (unplanned, "the event is not in the source's tracking plan",
             [{"path": "event", "message": "'Wishlist Shared' is not in the tracking plan 'shop'"}])):
        delivery, = kept(store, message_id).deliveries
        assert (delivery.destination, delivery.state, delivery.reason, delivery.errors) == (INTAKE, REJECTED, reason,
                                                                                          errors)
    found = violations(store, "blocker")
    assert found[("Order Completed", "type", "properties.products[].price")].action == "block"
    assert found[("Wishlist Shared", "unplanned", "event")].example["messageId"] == unplanned


def test_a_blocked_call_is_answered_400_with_the_reason_when_intake_validates(site):
    server, store, _, mode = site
    sdk = analytics.Client("key-blocker", host=server.url, sync_mode=True, max_retries=0)
    if mode == "queue":   # answered once the request is on disk; the processor rejects it moments later
        sdk.track(user_id="u1", event="Order Completed", properties=BAD, message_id="sync-bad-queue")
        assert kept(store, "sync-bad-queue").deliveries[0].state == REJECTED
        return
    with pytest.raises(APIError) as refused:
        sdk.track(user_id="u1", event="Order Completed", properties=BAD, message_id="sync-bad")
    assert refused.value.status == 400
    assert "properties.products[0].price: expected a number, got a string" in refused.value.message


def test_warn_delivers_events_as_sent_and_records_what_breaks_the_plan(site):
    server, store, vendor, _ = site
    bad, unplanned = send(server, "warner", [order(BAD), UNPLANNED])
    assert delivered(vendor, bad)["properties"] == BAD
    assert delivered(vendor, unplanned)["properties"] == {"items": 3}
    found = wait_for(lambda: violations(store, "warner") if len(violations(store, "warner")) == 2 else None)
    assert {(key, v.action) for key, v in found.items()} == {
        (("Order Completed", "type", "properties.products[].price"), "warn"),
        (("Wishlist Shared", "unplanned", "event"), "warn")}


def test_drop_properties_delivers_the_event_without_the_properties_that_break_the_plan(site):
    server, store, vendor, _ = site
    bad, unplanned = send(server, "dropper", [order(BAD), UNPLANNED])
    received = delivered(vendor, bad)
    assert received["properties"] == {"order_id": "o-2", "total": 20, "currency": "EUR", "coupon": "SPRING"}
    assert delivered(vendor, unplanned)["properties"] == {"items": 3}     # unplanned: allow
    found = violations(store, "dropper")
    assert list(found) == [("Order Completed", "type", "properties.products[].price")]
    record = found[("Order Completed", "type", "properties.products[].price")]
    assert record.action == "drop_properties" and record.example["properties"] == BAD   # the event as received


def test_allow_checks_nothing_and_the_metrics_count_per_source_event_and_rule(site):
    server, store, vendor, _ = site
    bad, = send(server, "allower", [order(BAD)])
    assert delivered(vendor, bad)["properties"] == BAD
    assert violations(store, "allower") == {}
    series = 'eventmap_plan_violations{source="warner",event="Order Completed",rule="type"}'

    def metric() -> int:
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert 'source="allower"' not in text
        return next((int(line.split()[-1]) for line in text.splitlines() if line.startswith(series + " ")), 0)
    before = metric()
    send(server, "warner", [order(BAD)])
    assert wait_for(lambda: metric() == before + 1, 20, "the violation counted in /metrics")
