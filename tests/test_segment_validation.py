"""Segment-spec validation through the public interface: EventValidator and lint_ecommerce."""
import pytest

from engine.problems import Problem
from engine.validate import EventValidator, lint_ecommerce

TYPES = "identify, track, page, screen, group, alias"
STAMP = "2024-01-01T00:00:00.000Z"

VALID = {
    "identify": {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}},
    "track": {"type": "track", "anonymousId": "a1", "userId": None, "event": "Signed Up",
              "properties": {"plan": "pro"}},
    "page": {"type": "page", "anonymousId": "a1", "name": None, "category": "Docs",
             "properties": {"url": "https://example.com"}},
    "screen": {"type": "screen", "userId": 42, "name": "Home", "category": None},
    "group": {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"plan": "team"}},
    "alias": {"type": "alias", "userId": "u1", "previousId": "a1"},
}
FULL_COMMON = {
    "messageId": "m" * 100,
    "timestamp": STAMP,
    "sentAt": "2024-01-01T02:00:00+02:00",
    "receivedAt": "2024-01-01T00:00:01Z",
    "originalTimestamp": "2024-01-01T00:00:00.123456+00:00",
    "integrations": {"All": False, "Mixpanel": True, "Amplitude": {"session_id": 1}},
    "context": {"ip": "1.2.3.4", "locale": "en-US", "library": {"name": "analytics.js", "version": "4.1"},
                "page": {"path": "/"}, "traits": {}, "groupId": "g1", "active": True, "app": {},
                "campaign": {}, "device": {}, "network": {}, "os": {}, "screen": {}, "referrer": {},
                "userAgentData": {}, "userAgent": "Mozilla", "timezone": "Europe/Paris",
                "channel": "browser", "custom": "extra keys are allowed"},
    "anything": "Segment calls are open to extra fields",
}


def problems(found):
    """(path, message) pairs: exact, order-sensitive, easy to read in a failure."""
    return [(p.path, p.message) for p in found]


@pytest.fixture(scope="module")
def validator():
    return EventValidator()


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_call_of_every_type_passes(validator, kind):
    assert validator.check(VALID[kind]) == []
    assert validator.check({**VALID[kind], **FULL_COMMON}) == []


@pytest.mark.parametrize("event, expected", [
    ({"type": "track", "userId": "u1"}, [("event", "track: 'event' is required")]),
    ({"type": "track", "userId": "u1", "event": ""}, [("event", "event must not be empty")]),
    ({"type": "group", "userId": "u1"}, [("groupId", "group: 'groupId' is required")]),
    ({"type": "alias", "userId": "u1"}, [("previousId", "alias: 'previousId' is required")]),
    ({"type": "identify", "traits": {}}, [("", "identify: 'userId' or 'anonymousId' is required")]),
    ({"type": "identify", "userId": "", "anonymousId": None},
     [("", "identify: 'userId' or 'anonymousId' is required")]),
    ({"type": "identify", "userId": "u1", "messageId": "m" * 101},
     [("messageId", "messageId is 101 characters; at most 100 are allowed")]),
    ({"type": "identify", "userId": "u1", "timestamp": "2024-13-01"},
     [("timestamp", "'2024-13-01' is not an ISO-8601 date-time")]),
    ({"type": "identify", "userId": "u1", "sentAt": "not a date"},
     [("sentAt", "'not a date' is not an ISO-8601 date-time")]),
    ({"type": "identify", "userId": "u1", "receivedAt": "2024-01-01"},
     [("receivedAt", "'2024-01-01' is not an ISO-8601 date-time")]),
    ({"type": "identify", "userId": "u1", "integrations": {"Mixpanel": "yes"}},
     [("integrations.Mixpanel", "expected a boolean or an object, got a string")]),
    ({"type": "identify", "userId": "u1", "context": "web"}, [("context", "expected an object, got a string")]),
    ({"type": "identify", "userId": "u1", "context": {"library": {"name": 3}}},
     [("context.library.name", "expected a string, got a number")]),
    ({"type": "identify", "userId": ["u1"]}, [("userId", "expected a string, a number or null, got an array")]),
    ({"type": "identify", "userId": "u1", "traits": []}, [("traits", "expected an object, got an array")]),
    ({"type": "page", "userId": "u1", "name": 7}, [("name", "expected a string or null, got a number")]),
    ({"type": "alias", "userId": None, "previousId": "a1", "anonymousId": "a1"},
     [("userId", "expected a string or a number, got null")]),
])
def test_each_rule_fails_with_exact_path_and_message(validator, event, expected):
    found = validator.check(event)
    assert problems(found) == expected
    assert all(isinstance(p, Problem) and p.severity == "error" for p in found)


def test_several_violations_come_back_at_once_sorted_by_path(validator):
    event = {"type": "track", "messageId": "x" * 130, "timestamp": "2024-13-01",
             "context": {"library": {"name": 1}, "active": "yes"}, "properties": "none"}
    assert problems(validator.check(event)) == [
        ("", "track: 'userId' or 'anonymousId' is required"),
        ("context.active", "expected a boolean, got a string"),
        ("context.library.name", "expected a string, got a number"),
        ("event", "track: 'event' is required"),
        ("messageId", "messageId is 130 characters; at most 100 are allowed"),
        ("properties", "expected an object, got a string"),
        ("timestamp", "'2024-13-01' is not an ISO-8601 date-time"),
    ]


@pytest.mark.parametrize("event, expected", [
    ({"userId": "u1"}, [("type", f"'type' is required; expected one of {TYPES}")]),
    ({"type": "trak", "event": 5}, [("type", f"'trak' is not a call type; expected one of {TYPES}")]),
    ({"type": 3}, [("type", f"3 is not a call type; expected one of {TYPES}")]),
    ([], [("", "expected an object, got an array")]),
    ("track", [("", "expected an object, got a string")]),
    (None, [("", "expected an object, got null")]),
    (object(), [("", "expected an object, got a Python object")]),
])
def test_unusable_input_gives_one_problem_and_never_raises(validator, event, expected):
    assert problems(validator.check(event)) == expected


@pytest.mark.parametrize("stamp", [STAMP, "2024-01-01T00:00:00Z", "2024-02-29T23:59:59+02:00",
                                   "2024-01-01T00:00:00.123456-05:30", "2024-01-01T00:00:00"])
def test_segment_client_timestamps_are_accepted(validator, stamp):
    assert validator.check({**VALID["identify"], "timestamp": stamp}) == []


@pytest.mark.parametrize("stamp", ["2023-02-29T00:00:00Z", "2024-01-01T25:00:00Z", "1704067200", ""])
def test_impossible_timestamps_are_rejected(validator, stamp):
    assert problems(validator.check({**VALID["identify"], "timestamp": stamp})) == [
        ("timestamp", f"'{stamp}' is not an ISO-8601 date-time")]


def test_batch_reports_item_paths(validator):
    envelope = {"batch": [VALID["track"], {"type": "track", "userId": "u1"}, "oops",
                          {"userId": "u1"}, {**VALID["group"], "timestamp": "2024-13-01"}],
                "context": {"ip": "1.2.3.4"}, "integrations": {"All": True}}
    assert problems(validator.check_batch(envelope)) == [
        ("batch[1].event", "track: 'event' is required"),
        ("batch[2]", "expected an object, got a string"),
        ("batch[3].type", f"'type' is required; expected one of {TYPES}"),
        ("batch[4].timestamp", "'2024-13-01' is not an ISO-8601 date-time"),
    ]


def test_valid_batch_passes_and_bad_envelope_fails(validator):
    assert validator.check_batch({"batch": list(VALID.values()), "sentAt": STAMP}) == []
    assert problems(validator.check_batch({"context": [], "integrations": {"All": 1}})) == [
        ("batch", "batch: 'batch' is required"),
        ("context", "expected an object, got an array"),
        ("integrations.All", "expected a boolean or an object, got a number"),
    ]
    assert problems(validator.check_batch([])) == [("", "expected an object, got an array")]


def test_batch_items_sort_numerically(validator):
    items = [VALID["track"]] * 10 + [{"type": "track", "userId": "u1"}]
    items[2] = {"type": "alias", "userId": "u1"}
    assert [p.path for p in validator.check_batch({"batch": items})] == ["batch[2].previousId", "batch[10].event"]


def order(name, **properties):
    return {"type": "track", "userId": "u1", "event": name, "properties": properties}


@pytest.mark.parametrize("name", ["Order Updated", "Order Cancelled", "Order Refunded"])
def test_lint_recommends_order_status(name):
    assert problems(lint_ecommerce(order(name, order_id="o1"))) == [
        ("properties.order_status", f"{name}: Richpanel recommends an 'order_status' property")]
    assert lint_ecommerce(order(name, order_id="o1", order_status="shipped")) == []


def test_lint_warns_on_wrong_property_types():
    event = order("Order Completed", order_id="o1", revenue="10.00", total=True, products=[
        {"product_id": "p1", "price": "9.99", "quantity": 1.5}, "p2", {"price": 3, "quantity": 2.0}])
    assert problems(lint_ecommerce(event)) == [
        ("properties.total", "expected a number, got a boolean"),
        ("properties.revenue", "expected a number, got a string"),
        ("properties.products[0].price", "expected a number, got a string"),
        ("properties.products[0].quantity", "expected an integer, got a number"),
        ("properties.products[1]", "expected an object, got a string"),
    ]
    assert problems(lint_ecommerce(order("Cart Viewed", products={"p1": 1}))) == [
        ("properties.products", "expected an array, got an object")]
    assert problems(lint_ecommerce(order("Product Viewed", price="1"))) == [
        ("properties.price", "expected a number, got a string")]


@pytest.mark.parametrize("name", ["order completed", "Order_Completed", "ORDER-COMPLETED", "OrderCompleted"])
def test_lint_suggests_the_spec_name_for_a_near_miss(name):
    assert problems(lint_ecommerce(order(name))) == [
        ("event", f"'{name}' is not a spec'd ecommerce event name; did you mean 'Order Completed'?")]


@pytest.mark.parametrize("event", [
    order("Signed Up", price="free"),
    order("Order Completed", order_id="o1", revenue=10.5, products=[{"price": 1, "quantity": 2}]),
    {**VALID["identify"], "event": "Order Updated"},
    "Order Updated", None, {"type": "track", "event": 5},
])
def test_lint_is_quiet_for_clean_or_non_ecommerce_events(event):
    assert lint_ecommerce(event) == []


def test_lint_only_ever_warns():
    noisy = [order("Order Refunded", total="1", products=[1, {"price": "x"}]), order("order updated"),
             order("Product Added", quantity="2", price=None)]
    found = [p for event in noisy for p in lint_ecommerce(event)]
    assert len(found) == 6
    assert {p.severity for p in found} == {"warning"}


# --------------------------------------------------------------------------- one call for a clean event

def _track(name, properties):
    return {"type": "track", "userId": "u1", "event": name, "properties": properties}


def _ecommerce_variants():
    """Track calls for every spec'd name, each property and product field given values of every JSON type."""
    from engine.validate.ecommerce import _spec
    spec = _spec()
    values = [None, "x", "", 3, 2.0, 2.5, True, [], [1], {}, {"a": 1}, float("nan")]
    clean = {"string": "x", "number": 1.5, "integer": 2, "array": [], "object": {}, "boolean": True}
    for name, rules in spec["events"].items():
        fields = {**spec["product"], **rules["properties"]} if rules.get("product_fields") else rules["properties"]
        good = {key: clean[types if isinstance(types, str) else types[0]] for key, types in fields.items()}
        good.update({key: "x" for key in rules.get("recommended", {})})
        if "products" in good:
            good["products"] = [{key: clean[t] for key, t in spec["product"].items()}]
        yield _track(name, good)
        yield _track(name, {})
        yield {"type": "track", "userId": "u1", "event": name}
        yield {"type": "track", "userId": "u1", "event": name, "properties": "not an object"}
        for key in list(good) + ["unspecd"]:
            for value in values:
                yield _track(name, {**good, key: value})
        if "products" in good:
            for key in spec["product"]:
                for value in values:
                    yield _track(name, {**good, "products": [good["products"][0], {**good["products"][0], key: value}]})
            for item in ("p1", None, 7, []):
                yield _track(name, {**good, "products": [item]})
    yield order("order completed", order_id="o1")  # a near miss
    yield order("Signed Up", plan=3)
    yield {"type": "track", "event": "Order Completed"}  # no user: an error, no lint


def test_one_call_check_gives_exactly_the_validator_and_lint_results(validator):
    from engine.validate import SegmentCheck
    combined = SegmentCheck(validator)
    for event in _ecommerce_variants():
        errors = validator.check(event)
        assert combined.check(event) == (errors, [] if errors else lint_ecommerce(event)), event


class _ExplainsNothing:
    """The real validator's compiled half; asking it to explain means the one-call path was not taken."""

    def __init__(self, real):
        self.real = real
        self.compiled, self.compiled_with = real.compiled, real.compiled_with

    def check(self, event):
        raise AssertionError(f"the compiled check refused a clean event: {event}")


def test_a_clean_ecommerce_call_costs_one_compiled_check(validator):
    from engine.validate import SegmentCheck
    combined = SegmentCheck(_ExplainsNothing(validator))
    for event in _ecommerce_variants():
        json_only = "nan" not in repr(event)  # NaN is not JSON: the compiled validator leaves it to jsonschema
        if json_only and not validator.check(event) and not lint_ecommerce(event) and event["event"] != "Signed Up":
            assert combined.check(event) == ([], [])


def test_a_clean_call_of_any_type_costs_one_compiled_check(validator):
    from engine.validate import SegmentCheck
    combined = SegmentCheck(_ExplainsNothing(validator))
    user = {"userId": "u1", "timestamp": "2024-05-01T10:00:00Z"}
    clean = [{"type": "identify", **user, "traits": {"email": "a@example.com"}},
             {"type": "track", **user, "event": "Signed Up", "properties": {"plan": 3}},
             {"type": "page", **user, "name": "Home"}, {"type": "screen", **user, "name": "Home"},
             {"type": "group", **user, "groupId": "g1"}, {"type": "alias", **user, "previousId": "a1"}]
    for event in clean:
        assert validator.check(event) == []
        assert combined.check(event) == ([], [])


def test_made_up_event_names_do_not_pile_up(validator):
    from engine.validate import SegmentCheck
    from engine.validate.ecommerce import _NAMES_KEPT
    combined = SegmentCheck(validator)
    for n in range(_NAMES_KEPT + 10):
        assert combined.check(_track(f"event {n}", {})) == ([], [])
    assert len(combined._by_name) <= _NAMES_KEPT
