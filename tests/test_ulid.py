"""The `ulid` filter, and Customer.io's event id made with it: the same ULID for the same event every time it
is delivered, so Customer.io ("If two events have the same id, Customer.io won't process the event a second
time") records a redelivered event once. ULIDs are decoded here by hand, from the spec (github.com/ulid/spec):
26 characters of Crockford base32, a 48-bit millisecond time, then 80 bits."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from contracts import DESTINATIONS
from hypothesis import given
from hypothesis import strategies as st
from test_contracts import Accepting

from engine.map.filters import FILTERS, FilterError

ROOT = Path(__file__).resolve().parents[1]
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ulid = FILTERS["ulid"]


def decoded(text: str) -> tuple[int, bytes]:
    """(milliseconds, the 10 bytes after them) of a ULID."""
    assert len(text) == 26 and set(text) <= set(CROCKFORD) and text[0] <= "7", text
    number = 0
    for char in text:
        number = number * 32 + CROCKFORD.index(char)
    return number >> 80, (number & (2**80 - 1)).to_bytes(10, "big")


def test_the_time_part_is_the_time_and_the_rest_the_values_hash():
    made = ulid("ajs-next-1", "2024-05-14T09:20:00.123Z")
    # the same value python-ulid 4.1.0 gives for ULID.from_bytes(ms.to_bytes(6) + sha256(b"ajs-next-1")[:10])
    assert made == "01HXV6DKKVF8P7F5263Z4725W1"
    assert decoded(made) == (1715678400123, hashlib.sha256(b"ajs-next-1").digest()[:10])
    assert ulid("ajs-next-1", 1715678400123) == made            # epoch milliseconds, as the date filters take them
    assert ulid("ajs-next-1", "2024-05-14T11:20:00.123+02:00") == made


# every millisecond from 1970 to the end of the year 9999 (the last date Python reads)
@given(st.text(min_size=1, max_size=60), st.integers(min_value=0, max_value=253402300799999))
def test_any_value_and_time_round_trip(value, ms):
    assert decoded(ulid(value, ms)) == (ms, hashlib.sha256(value.encode("utf-8")).digest()[:10])


def test_deterministic_distinct_and_sorted_by_time():
    first = ulid("m-1", "2024-01-01T00:00:00Z")
    assert ulid("m-1", "2024-01-01T00:00:00Z") == first
    assert ulid("m-2", "2024-01-01T00:00:00Z") != first
    assert ulid("m-1", "2024-01-01T00:00:00.001Z") > first > ulid("z-9", "2023-12-31T23:59:59.999Z")


def test_missing_and_bad_input():
    assert ulid(None, "2024-01-01T00:00:00Z") is None
    with pytest.raises(FilterError, match="needs a time"):
        ulid("m-1", None)
    with pytest.raises(FilterError, match="before 1970"):
        ulid("m-1", "1969-12-31T23:59:59.999Z")
    with pytest.raises(FilterError, match="not an ISO-8601"):
        ulid("m-1", "yesterday")
    with pytest.raises(FilterError, match="expects text"):
        ulid({"id": 1}, "2024-01-01T00:00:00Z")
    assert decoded(ulid(42, 0)) == (0, hashlib.sha256(b"42").digest()[:10])


# --------------------------------------------------------------------------- Customer.io's event id

SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "customerio.json").read_text(encoding="utf-8"))
TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "anonymousId": "a1", "messageId": "m-42",
         "timestamp": "2024-05-14T09:20:00.500Z", "properties": {"total": 10}}


def body(engine, event, **settings) -> dict:
    route = engine.route("customerio", {**SETTINGS, **settings}, environ={})
    outcome = engine.render(event, route, responses=Accepting())
    assert outcome.status == "send", outcome.errors
    (request,) = outcome.requests
    return request.body


@pytest.mark.parametrize("event", [
    TRACK,
    {k: v for k, v in TRACK.items() if k != "userId"},                                   # anonymous (v1)
    {"type": "page", "userId": "u1", "messageId": "m-42", "timestamp": TRACK["timestamp"], "name": "Home"},
    {"type": "screen", "anonymousId": "a1", "messageId": "m-42", "timestamp": TRACK["timestamp"], "name": "Cart"},
], ids=["track", "anonymous-track", "page", "anonymous-screen"])
def test_every_event_carries_the_same_ulid_on_every_delivery(engine, event):
    made = body(engine, event)["id"]
    assert body(engine, event)["id"] == made                      # a redelivery: the same id, recorded once
    assert decoded(made) == (int(datetime(2024, 5, 14, 9, 20, 0, 500000, tzinfo=UTC).timestamp() * 1000),
                             hashlib.sha256(b"m-42").digest()[:10])
    assert body(engine, {**event, "messageId": "m-43"})["id"] != made   # another event: another id


def test_identifies_and_groups_have_no_event_id(engine):
    identify = {"type": "identify", "userId": "u1", "messageId": "m-1", "timestamp": TRACK["timestamp"], "traits": {"plan": "pro"}}
    assert "id" not in body(engine, identify)
    group = {"type": "group", "userId": "u1", "groupId": "g1", "messageId": "m-2", "timestamp": TRACK["timestamp"]}
    assert "id" not in body(engine, group)


def test_an_event_without_a_time_goes_without_an_id(engine):
    untimed = {k: v for k, v in TRACK.items() if k != "timestamp"}
    assert "id" not in body(engine, untimed)
    assert body(engine, {**untimed, "originalTimestamp": TRACK["timestamp"]})["id"] == body(engine, TRACK)["id"]


def test_the_rules_take_only_a_ulid_as_the_id(engine):
    route = engine.route("customerio", SETTINGS, environ={})
    (request,) = engine.render(TRACK, route, responses=Accepting()).requests
    contract = DESTINATIONS["customerio"]
    assert contract.violations(request)[0] == []
    for bad in ("m-42", "01HXV6DKKVF8P7F5263Z4725W", "81HXV6DKKVF8P7F5263Z4725W1", "01HXV6DKKVF8P7F5263Z4725WU"):
        broken = dataclasses.replace(request, body={**request.body, "id": bad})
        assert ("request.body.id", "pattern") in {(v.where, v.rule) for v in contract.violations(broken)[0]}, bad
