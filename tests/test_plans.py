"""Tracking plans at intake, through the library's own path: a configuration naming the shipped example plan
(fixtures/plans/shop.yaml), ``Intake`` and a real SQLite store. Each mode, what drop_properties drops, and
that one event the plan check cannot take is rejected alone (a property test).

The server and ``eventmap enqueue`` run the same modes in test_plans_serve.py and test_plans_cli.py.
"""
from __future__ import annotations

import textwrap

import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.intake import PLAN_FAILED, Intake
from engine.load.config import load_config, routes_from_config
from engine.store import INTAKE, QUEUED, REJECTED, EventQuery, ViolationQuery, open_store

PLAN = REPO / "fixtures" / "plans" / "shop.yaml"
ENGINE = Engine()
ORDER = {"order_id": "o-1", "total": 54.9, "currency": "EUR",
         "products": [{"product_id": "p-1", "price": 19.95, "quantity": 2}, {"product_id": "p-2", "price": 10}]}


def config_file(folder, unplanned: str, invalid: str, plan=PLAN) -> str:
    path = folder / "eventmap.yaml"
    path.write_text(textwrap.dedent(f"""\
        storage: sqlite:///events.db
        sources:
          web:
            write_key: key-web
            plan: {{file: {plan}, unplanned: {unplanned}, invalid: {invalid}}}
        destinations:
          segment:
            settings: {{write_key: seg-key, base_url: "http://127.0.0.1:9"}}
        """), encoding="utf-8")
    return str(path)


def intake_for(folder, unplanned: str = "warn", invalid: str = "warn", plan=PLAN):
    config, problems = load_config(config_file(folder, unplanned, invalid, plan))
    assert not problems, problems
    store = open_store("sqlite:///events.db", base=folder)
    return Intake(ENGINE, routes_from_config(ENGINE, config), store, plans=config.plans), store


def track(name: str, properties: dict | None = None, message_id: str = "m1") -> dict:
    event = {"type": "track", "event": name, "userId": "u1", "messageId": message_id}
    if properties is not None:
        event["properties"] = properties
    return event


def kept(store, message_id: str):
    found = store.events(EventQuery(message_id=message_id))
    assert len(found) == 1
    return found[0]


# --------------------------------------------------------------------------- the modes

def test_an_event_that_follows_the_plan_goes_on_untouched_and_records_nothing(tmp_path):
    intake, store = intake_for(tmp_path, "block", "block")
    with store:
        receipt, = intake.accept([track("Order Completed", ORDER)], source="web")
        assert not receipt.rejected and receipt.states() == {"segment": QUEUED}
        assert kept(store, "m1").event["properties"] == ORDER
        assert store.violations(ViolationQuery()) == []


def test_block_rejects_an_invalid_event_with_every_reason_as_a_segment_rejection_does(tmp_path):
    intake, store = intake_for(tmp_path, "warn", "block")
    broken = {**ORDER, "total": "54.90", "currency": "eur", "products": [{"product_id": "p-1", "price": -1}]}
    with store:
        receipt, = intake.accept([track("Order Completed", broken)], source="web")
        assert receipt.rejected and receipt.states() == {INTAKE: REJECTED}
        assert [(e.path, e.message) for e in receipt.errors] == [
            ("properties.currency", '"eur" does not match the pattern ^[A-Z]{3}$'),
            ("properties.products[0].price", "expected a number of at least 0, got -1"),
            ("properties.total", "expected a number, got a string")]
        delivery = kept(store, "m1").deliveries[0]
        assert delivery.reason == "the event breaks the source's tracking plan"
        assert delivery.errors == [e.as_dict() for e in receipt.errors]
        found = {(v.path, v.rule, v.action, v.count) for v in store.violations(ViolationQuery())}
        assert found == {("properties.currency", "pattern", "block", 1), ("properties.total", "type", "block", 1),
                         ("properties.products[].price", "minimum", "block", 1)}


def test_block_rejects_an_unplanned_event_and_allow_lets_it_through(tmp_path):
    intake, store = intake_for(tmp_path, "block", "warn")
    with store:
        receipt, = intake.accept([track("Wishlist Shared", {"x": 1})], source="web")
        assert [(e.path, e.message) for e in receipt.errors] == [
            ("event", "'Wishlist Shared' is not in the tracking plan 'shop'")]
        assert kept(store, "m1").deliveries[0].reason == "the event is not in the source's tracking plan"
    (tmp_path / "allow").mkdir()
    intake, store = intake_for(tmp_path / "allow", "allow", "warn")
    with store:
        receipt, = intake.accept([track("Wishlist Shared", {"x": 1})], source="web")
        assert receipt.states() == {"segment": QUEUED} and store.violations(ViolationQuery()) == []


def test_warn_accepts_the_event_as_sent_and_records_each_violation_with_the_event_as_example(tmp_path):
    intake, store = intake_for(tmp_path, "warn", "warn")
    event = track("Signed Up", {"plan": "gold", "coupon": "X"})
    with store:
        receipt, = intake.accept([event, track("Wishlist Shared", message_id="m2")], source="web")[:1]
        assert receipt.states() == {"segment": QUEUED}
        assert kept(store, "m1").event["properties"] == {"plan": "gold", "coupon": "X"}
        found = {(v.event, v.rule, v.path, v.action): v for v in store.violations(ViolationQuery())}
        assert set(found) == {("Signed Up", "enum", "properties.plan", "warn"),
                              ("Signed Up", "additionalProperties", "properties.coupon", "warn"),
                              ("Wishlist Shared", "unplanned", "event", "warn")}
        enum = found[("Signed Up", "enum", "properties.plan", "warn")]
        assert enum.message == 'expected "free", "pro", "enterprise", got "gold"'
        assert enum.example == event and enum.message_id == "m1"


def test_allow_checks_nothing(tmp_path):
    intake, store = intake_for(tmp_path, "allow", "allow")
    with store:
        receipts = intake.accept([track("Order Completed", {"total": "lots"}), track("Nope", message_id="m2")],
                                 source="web")
        assert [r.states() for r in receipts] == [{"segment": QUEUED}] * 2
        assert store.violations(ViolationQuery()) == []


def test_the_plan_applies_to_its_source_only(tmp_path):
    intake, store = intake_for(tmp_path, "block", "block")
    with store:
        assert intake.accept([track("Nope")], source="mobile")[0].states() == {"segment": QUEUED}
        assert intake.accept([track("Nope", message_id="m2")])[0].states() == {"segment": QUEUED}


# --------------------------------------------------------------------------- drop_properties, precisely

def test_drop_properties_removes_the_top_level_property_holding_each_failure_and_keeps_the_rest(tmp_path):
    intake, store = intake_for(tmp_path, "warn", "drop_properties")
    sent = {**ORDER, "revenue": -5, "products": [{"product_id": "p-1", "price": 3}, {"product_id": "p-2", "price": "x"}]}
    with store:
        receipt, = intake.accept([track("Order Completed", sent)], source="web")
        assert receipt.states() == {"segment": QUEUED}
        # products[1].price is deep inside products: the whole list goes, as revenue does; the rest stays
        assert kept(store, "m1").event["properties"] == {"order_id": "o-1", "total": 54.9, "currency": "EUR"}
        found = {(v.path, v.action): v for v in store.violations(ViolationQuery())}
        assert set(found) == {("properties.revenue", "drop_properties"), ("properties.products[].price", "drop_properties")}
        assert found[("properties.revenue", "drop_properties")].example["properties"] == sent   # as received


def test_drop_properties_drops_unplanned_properties_and_keeps_an_event_missing_a_required_one(tmp_path):
    intake, store = intake_for(tmp_path, "warn", "drop_properties")
    with store:
        receipts = intake.accept([track("Signed Up", {"plan": "pro", "coupon": "X", "referrer": "ad"}),
                                  track("Order Completed", {"total": 3, "currency": "EUR"}, "m2")], source="web")
        assert [r.states() for r in receipts] == [{"segment": QUEUED}] * 2
        assert kept(store, "m1").event["properties"] == {"plan": "pro", "referrer": "ad"}
        # nothing to drop for a missing property: the event goes on as sent, the violation recorded as a warning
        assert kept(store, "m2").event["properties"] == {"total": 3, "currency": "EUR"}
        found = {(v.event, v.rule, v.path, v.action) for v in store.violations(ViolationQuery())}
        assert found == {("Signed Up", "additionalProperties", "properties.coupon", "drop_properties"),
                         ("Order Completed", "required", "properties.order_id", "warn")}


def test_identify_and_group_traits_follow_their_schemas(tmp_path):
    intake, store = intake_for(tmp_path, "warn", "block")
    with store:
        receipts = intake.accept([
            {"type": "identify", "userId": "u1", "messageId": "i1", "traits": {"email": "not-an-address", "plan": "pro"}},
            {"type": "identify", "userId": "u1", "messageId": "i2", "traits": {"email": "ada@example.com"}},
            {"type": "group", "userId": "u1", "groupId": "g", "messageId": "g1", "traits": {"employees": -1}},
            {"type": "page", "userId": "u1", "messageId": "p1", "name": "Anything"}], source="web")
        assert [(e.path, e.message) for e in receipts[0].errors] == [
            ("traits.email", "'not-an-address' is not a valid email")]
        assert not receipts[1].rejected and not receipts[3].rejected
        assert [(e.path, e.message) for e in receipts[2].errors] == [
            ("traits.employees", "expected a number of at least 0, got -1"), ("traits.name", "group: 'name' is required")]
        assert {v.event for v in store.violations(ViolationQuery())} == {"(identify traits)", "(group traits)"}


# --------------------------------------------------------------------------- one bad event affects only itself

# A plan whose schema jsonschema explains by recursion a thousand levels deep: explaining a failure under
# 'deep' raises RecursionError. Real files, real validators; the check raises for those events only.
DEEP_PLAN = "\n".join(["events:", "  Deep:", "    properties:", "      type: object", "      properties:",
                       "        deep: {$ref: '#/$defs/l0'}", "        n: {type: integer}", "$defs:"] +
                      [f"  l{i}: {{allOf: [{{$ref: '#/$defs/l{i + 1}'}}]}}" for i in range(1000)] +
                      ["  l1000: {type: string}"]) + "\n"

KINDS = {
    "good": lambda i: track("Deep", {"deep": "x", "n": i}, f"m{i}"),
    "invalid": lambda i: track("Deep", {"n": "not a number"}, f"m{i}"),
    "raises": lambda i: track("Deep", {"deep": i}, f"m{i}"),
    "unplanned": lambda i: track("Other", {}, f"m{i}"),
    "not segment": lambda i: {"type": "track", "userId": "u", "messageId": f"m{i}"},
    "unstorable": lambda i: track("Deep", {"n": float("nan")}, f"m{i}"),
}
EXPECTED = {"good": ("queued", None), "invalid": ("rejected", "the event breaks the source's tracking plan"),
            "raises": ("rejected", PLAN_FAILED), "unplanned": ("rejected", "the event is not in the source's tracking plan"),
            "not segment": ("rejected", "the event does not follow the Segment spec"),
            "unstorable": ("rejected", "the event holds values that cannot be stored (kept with them replaced)")}


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deep")
    (folder / "deep.yaml").write_text(DEEP_PLAN, encoding="utf-8")
    intake, store = intake_for(folder, "block", "block", plan=folder / "deep.yaml")
    with store:
        yield intake, store


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=8))
def test_an_event_the_plan_check_cannot_take_is_rejected_alone_and_its_batch_goes_on(deep, kinds):
    intake, store = deep
    start = len(store.events(EventQuery(limit=10_000)))
    events = [KINDS[kind](start + i) for i, kind in enumerate(kinds)]
    receipts = intake.accept(events, source="web")
    for kind, receipt in zip(kinds, receipts):
        record = kept(store, receipt.message_id)
        state, reason = EXPECTED[kind]
        assert [d.state for d in record.deliveries] == [state], kind
        assert record.deliveries[0].reason == reason, kind
        if kind == "raises":
            assert [e.as_dict() for e in receipt.errors] == [{"path": "", "message": f"{PLAN_FAILED}: RecursionError"}]
