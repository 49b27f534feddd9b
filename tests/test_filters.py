"""Exact-value tests for the mapping language's named filters."""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date, datetime, timedelta, timezone

import jinja2
import pytest

from engine.map.filters import FILTERS, FilterError, register_filter

EXPECTED_NAMES = {
    "snake_case", "lower", "upper", "trim",
    "epoch_ms", "epoch_s", "iso8601", "date",
    "base64", "base64_decode", "sha256", "hmac_sha256", "hmac_sha256_base64", "json",
    "e164", "string", "number", "boolean",
    "flatten", "compact", "default", "omit", "pick", "split_name",
}


def f(name, value, *args, **kwargs):
    return FILTERS[name](value, *args, **kwargs)


def test_all_filters_registered():
    assert EXPECTED_NAMES <= set(FILTERS)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES - {"default"}))
def test_none_in_none_out(name):
    args = {
        "hmac_sha256": ("k",), "hmac_sha256_base64": ("k",), "split_name": ("first",),
    }.get(name, ())
    assert FILTERS[name](None, *args) is None


def test_filter_error_is_a_value_error():
    assert issubclass(FilterError, ValueError)


# ---------------------------------------------------------------- snake_case


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Order Completed Last 30days", "order_completed_last_30days"),
        ("Order Completed Last 30 Days", "order_completed_last_30_days"),
        ("orderCompletedLast30days", "order_completed_last30days"),
        ("Order Completed - Last 30days", "order_completed_last_30days"),
        ("Last30Days", "last30days"),
        ("Café Crème", "café_crème"),
        ("ÉtéÀParis", "été_à_paris"),
        ("HTTPServer Errors", "http_server_errors"),
        ("  --High  Value__Users!! ", "high_value_users"),
        ("already_snake_case", "already_snake_case"),
        ("ABC", "abc"),
        ("---", ""),
        ("", ""),
    ],
)
def test_snake_case(text, expected):
    assert f("snake_case", text) == expected


def test_snake_case_rejects_non_text():
    with pytest.raises(FilterError, match=r"^snake_case expects text, got int 5$"):
        f("snake_case", 5)


# ---------------------------------------------------------------- lower / upper / trim


def test_lower_upper_trim():
    assert f("lower", "Ada@Example.COM") == "ada@example.com"
    assert f("lower", "ÇA VA") == "ça va"
    assert f("upper", "gb") == "GB"
    assert f("upper", "straße") == "STRASSE"
    assert f("trim", "  ada \t\n") == "ada"
    assert f("trim", "\u00a0ada\u3000") == "ada"  # Unicode whitespace too
    assert f("trim", "") == ""


@pytest.mark.parametrize("name", ["lower", "upper", "trim"])
def test_text_filters_reject_non_text(name):
    with pytest.raises(FilterError, match=rf"^{name} expects text, got list \[1\]$"):
        f(name, [1])


# ---------------------------------------------------------------- dates and times


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2024-01-01T00:00:00Z", 1704067200000),
        ("2024-01-01T00:00:00", 1704067200000),  # naive is UTC
        ("2024-01-01 00:00:00", 1704067200000),
        ("2024-01-01T00:00", 1704067200000),
        ("2024-01-01", 1704067200000),
        ("2024-01-01T00:00:00.5Z", 1704067200500),
        ("2024-01-01T00:00:00.123456789Z", 1704067200123),  # truncated, not rounded
        ("2024-01-01T00:00:00,250Z", 1704067200250),
        ("2024-01-01T01:00:00+01:00", 1704067200000),
        ("2024-01-01T01:00:00+0100", 1704067200000),
        ("2024-01-01T01:00:00+01", 1704067200000),
        ("2023-12-31T19:00:00.000-05:00", 1704067200000),
        ("2024-01-01T05:30:00+05:30", 1704067200000),
        ("2024-01-01t00:00:00z", 1704067200000),
        ("1969-12-31T23:59:59.999Z", -1),
        ("  2024-01-01T00:00:00Z  ", 1704067200000),
    ],
)
def test_epoch_ms(text, expected):
    assert f("epoch_ms", text) == expected


def test_epoch_ms_numbers_pass_through_as_int():
    assert f("epoch_ms", 1704067200000) == 1704067200000
    assert f("epoch_ms", 1704067200000.9) == 1704067200000
    assert type(f("epoch_ms", 1704067200000.0)) is int


def test_epoch_s():
    assert f("epoch_s", "2024-01-01T00:00:00.999Z") == 1704067200
    assert f("epoch_s", "2024-01-01T01:00:00+01:00") == 1704067200
    assert f("epoch_s", "1969-12-31T23:59:59.5Z") == -1  # floor, like Unix time
    assert f("epoch_s", 1704067200) == 1704067200
    assert f("epoch_s", 1704067200.7) == 1704067200


def test_utc_timestamps_read_the_same_as_any_other_offset():
    """'...Z', what analytics libraries send, takes a quicker path than '+00:00'; both must agree."""
    import random
    rng = random.Random(6)
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([0, 1, 3, 6, 7, 9])))
        text = (f"{rng.randint(1, 9999):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 31):02d}T"
                f"{rng.randint(0, 24):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 60):02d}" + (f".{digits}" if digits else ""))
        for name in ("epoch_ms", "iso8601"):
            try:
                want = f(name, text + "+00:00")
            except FilterError as exc:
                with pytest.raises(FilterError) as caught:
                    f(name, text + "Z")
                assert str(caught.value) == str(exc).replace("+00:00'", "Z'")
            else:
                assert f(name, text + "Z") == want, text


@pytest.mark.parametrize("name", ["epoch_ms", "epoch_s", "iso8601", "date"])
@pytest.mark.parametrize(
    "text",
    [
        "2024-13-01",
        "2024-02-30T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:60Z",
        "2024-01-01T00:00:00+25:00",
        "2024-01-01T00:00:00+01:60",
        "01/02/2024",
        "2024-1-1",
        "yesterday",
        "",
        "1704067200000",
    ],
)
def test_invalid_dates_raise(name, text):
    with pytest.raises(FilterError) as caught:
        f(name, text)
    assert str(caught.value) == f"{text!r} is not an ISO-8601 date-time"


def test_invalid_date_message_exact():
    with pytest.raises(FilterError, match=r"^'2024-13-01' is not an ISO-8601 date-time$"):
        f("epoch_ms", "2024-13-01")


@pytest.mark.parametrize("name", ["epoch_ms", "epoch_s", "iso8601", "date"])
def test_date_filters_reject_wrong_types(name):
    with pytest.raises(FilterError, match=rf"^{name} expects an ISO-8601 date-time string or epoch milliseconds, got bool True$"):
        f(name, True)
    with pytest.raises(FilterError, match=rf"^{name} cannot use nan as a time$"):
        f(name, float("nan"))


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000Z"),
        ("2024-01-01T01:02:03+01:00", "2024-01-01T00:02:03.000Z"),
        ("2024-03-10T20:15:00.1234-07:00", "2024-03-11T03:15:00.123Z"),
        ("2024-01-01T00:00:00.9999Z", "2024-01-01T00:00:00.999Z"),
        ("2024-02-29", "2024-02-29T00:00:00.000Z"),
        ("2024-02-29T12:00:00", "2024-02-29T12:00:00.000Z"),
        (1704067200123, "2024-01-01T00:00:00.123Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
    ],
)
def test_iso8601(value, expected):
    assert f("iso8601", value) == expected


def test_iso8601_out_of_range_ms():
    with pytest.raises(FilterError, match=r"^iso8601: 100000000000000000000 milliseconds is outside the supported date range$"):
        f("iso8601", 10**20)


def test_date_filters_accept_datetime_objects():
    # YAML loaders turn unquoted timestamps into these; naive means UTC.
    aware = datetime(2024, 1, 1, 1, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert f("epoch_ms", aware) == 1704067200123
    assert f("iso8601", datetime(2024, 1, 1)) == "2024-01-01T00:00:00.000Z"
    assert f("date", aware) == "2024-01-01"
    assert f("epoch_s", date(2024, 1, 1)) == 1704067200


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2024-01-01T12:00:00Z", "2024-01-01"),
        ("2024-01-01T23:00:00-05:00", "2024-01-02"),  # UTC date
        ("2024-01-01T00:30:00+01:00", "2023-12-31"),
        ("2024-01-01", "2024-01-01"),
        (1704067200000, "2024-01-01"),
    ],
)
def test_date(value, expected):
    assert f("date", value) == expected


# ---------------------------------------------------------------- encoding and hashing


def test_base64():
    assert f("base64", "user:pass") == "dXNlcjpwYXNz"
    assert f("base64", b"\x00\xff") == "AP8="
    assert f("base64", "café") == base64.b64encode("café".encode()).decode()
    assert f("base64", "") == ""
    assert f("base64", "??>") == "Pz8+"  # standard alphabet, not URL-safe


def test_base64_decode():
    assert f("base64_decode", "dXNlcjpwYXNz") == "user:pass"
    assert f("base64_decode", "Y2Fmw6k=") == "café"
    assert f("base64_decode", "Y2Fmw6k") == "café"  # missing padding tolerated
    assert f("base64_decode", "Y2Fm\nw6k=") == "café"
    assert f("base64_decode", "") == ""


def test_base64_decode_errors():
    with pytest.raises(FilterError, match=r"^'not base64!' is not valid base64$"):
        f("base64_decode", "not base64!")
    with pytest.raises(FilterError, match=r"^'/w==' is base64 but does not decode to UTF-8 text$"):
        f("base64_decode", "/w==")


def test_sha256():
    assert f("sha256", "") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert f("sha256", "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert f("sha256", "café") == hashlib.sha256("café".encode("utf-8")).hexdigest()
    assert f("sha256", b"abc") == f("sha256", "abc")


def test_sha256_rejects_numbers():
    with pytest.raises(FilterError, match=r"^sha256 expects text or bytes as its value, got int 42; convert it first with the 'string' filter$"):
        f("sha256", 42)


RFC4231_CASE2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_hmac_sha256_rfc4231_case2():
    assert f("hmac_sha256", "what do ya want for nothing?", "Jefe") == RFC4231_CASE2
    assert f("hmac_sha256", b"what do ya want for nothing?", b"Jefe") == RFC4231_CASE2


def test_hmac_sha256_non_ascii_matches_stdlib():
    expected = hmac.new("clé".encode(), "données".encode(), hashlib.sha256).hexdigest()
    assert f("hmac_sha256", "données", "clé") == expected


def test_hmac_sha256_base64():
    expected = base64.b64encode(bytes.fromhex(RFC4231_CASE2)).decode()
    assert f("hmac_sha256_base64", "what do ya want for nothing?", "Jefe") == expected
    assert expected == "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="


@pytest.mark.parametrize("name", ["hmac_sha256", "hmac_sha256_base64"])
def test_hmac_errors(name):
    with pytest.raises(FilterError, match=rf"^{name} needs a key \(secret\), but the key is missing$"):
        f(name, "data", None)
    with pytest.raises(FilterError, match=rf"^{name} expects text or bytes as its key, got int 7"):
        f(name, "data", 7)
    with pytest.raises(TypeError):
        f(name, "data")  # the key argument is required


# ---------------------------------------------------------------- json


def test_json():
    assert f("json", {"b": 1, "a": [1, 2, None], "c": "é"}) == '{"b":1,"a":[1,2,null],"c":"é"}'
    assert f("json", {"b": 1, "a": {"d": 2, "c": 3}}, True) == '{"a":{"c":3,"d":2},"b":1}'
    assert f("json", {"b": 1, "a": 2}, sort_keys=True) == '{"a":2,"b":1}'
    assert f("json", "x") == '"x"'
    assert f("json", True) == "true"
    assert f("json", 1.5) == "1.5"
    assert f("json", []) == "[]"


def test_json_errors():
    with pytest.raises(FilterError, match=r"^json's sort_keys argument must be true or false, got str 'yes'$"):
        f("json", {}, "yes")
    with pytest.raises(FilterError, match=r"^json cannot encode \{'a': \{1, 2\}\}"):
        f("json", {"a": {1, 2}})
    with pytest.raises(FilterError, match=r"^json cannot encode nan"):
        f("json", float("nan"))


# ---------------------------------------------------------------- e164


@pytest.mark.parametrize(
    "args, expected",
    [
        (("+1 (415) 555-0132",), "+14155550132"),
        (("+1 (415) 555-0132", "GB"), "+14155550132"),  # '+' wins over region
        (("020 7946 0958", "GB"), "+442079460958"),
        (("020 7946 0958", "gb"), "+442079460958"),
        (("00 44 20 7946 0958", "GB"), "+442079460958"),
        (("(415) 555-0132", "US"), "+14155550132"),
        (("+33 1 23 45 67 89",), "+33123456789"),
        ((14155550132,), "14155550132"),  # no '+', no region: unchanged
        (("012346789",), "012346789"),  # no region: returned unchanged
        (("  012346789  ",), "012346789"),  # ... but trimmed
        (("12", "US"), "12"),  # not a possible number
        (("not a phone", "US"), "not a phone"),
        (("020 7946 0958", "XX"), "020 7946 0958"),  # unknown region
        (("",), ""),
    ],
)
def test_e164(args, expected):
    assert f("e164", *args) == expected


def test_e164_rejects_wrong_types():
    with pytest.raises(FilterError, match=r"^e164 expects text, got list"):
        f("e164", ["+14155550132"])
    with pytest.raises(FilterError, match=r"^e164's region must be a country code such as 'GB', got int 44$"):
        f("e164", "020 7946 0958", 44)


# ---------------------------------------------------------------- string / number / boolean


def test_string():
    assert f("string", "x") == "x"
    assert f("string", 42) == "42"
    assert f("string", 1.5) == "1.5"
    assert f("string", True) == "true"
    assert f("string", False) == "false"
    assert f("string", {"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert f("string", b"caf\xc3\xa9") == "café"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("42", 42),
        (" -7 ", -7),
        ("4.0", 4),
        ("4.25", 4.25),
        ("1e3", 1000),
        ("1.5e-1", 0.15),
        (".5", 0.5),
        ("12345678901234567890", 12345678901234567890),
        ("12345678901234567890.0", 12345678901234567890),  # exact, no float rounding
        (3, 3),
        (3.0, 3),
        (2.5, 2.5),
    ],
)
def test_number(value, expected):
    result = f("number", value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("value", ["abc", "", "1,000", "1_000", "0x10", "nan", "inf", "4 2"])
def test_number_rejects_bad_text(value):
    with pytest.raises(FilterError, match=rf"^{value!r} is not a number$"):
        f("number", value)


def test_number_rejects_wrong_types():
    with pytest.raises(FilterError, match=r"^number expects text or a number, got bool True$"):
        f("number", True)
    with pytest.raises(FilterError, match=r"^number expects text or a number, got list \[\]$"):
        f("number", [])
    with pytest.raises(FilterError, match=r"^inf is not a finite number$"):
        f("number", float("inf"))


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True), (False, False), (1, True), (0, False),
        ("true", True), ("false", False), ("TRUE", True), (" False ", False),
        ("1", True), ("0", False),
    ],
)
def test_boolean(value, expected):
    assert f("boolean", value) is expected


@pytest.mark.parametrize("value", ["yes", "", 2, -1, 1.0, [], "truthy"])
def test_boolean_rejects(value):
    with pytest.raises(FilterError, match=r"is not a boolean; expected true, false, 1 or 0$"):
        f("boolean", value)


# ---------------------------------------------------------------- objects and lists


def test_flatten():
    nested = {
        "plan": {"name": "Pro", "seats": 5, "trial": False, "addons": ["sso", "audit"]},
        "meta": {"deep": {"er": "é"}, "gone": None, "empty": {}},
        "tags": [],
        "n": 1.5,
        "missing": None,
    }
    assert f("flatten", nested) == {
        "plan.name": "Pro",
        "plan.seats": 5,
        "plan.trial": False,
        "plan.addons": '["sso","audit"]',
        "meta.deep.er": "é",
        "tags": "[]",
        "n": 1.5,
    }
    assert f("flatten", {"a": {"b": 1}}, "_") == {"a_b": 1}
    assert f("flatten", {}) == {}
    assert f("flatten", {1: {2: "x"}}) == {"1.2": "x"}


def test_flatten_errors():
    with pytest.raises(FilterError, match=r"^flatten expects an object \(mapping\), got list \[1\]$"):
        f("flatten", [1])
    with pytest.raises(FilterError, match=r"^flatten would produce the key 'a.b' twice"):
        f("flatten", {"a.b": 1, "a": {"b": 2}})


def test_compact():
    assert f("compact", {"a": None, "b": "", "c": [], "d": {}, "e": 0, "f": False, "g": "x", "h": {"i": None}}) == {
        "e": 0, "f": False, "g": "x", "h": {"i": None},  # one level only
    }
    assert f("compact", [None, "", [], {}, 0, "x", False]) == [0, "x", False]
    assert f("compact", ()) == []
    with pytest.raises(FilterError, match=r"^compact expects an object or a list, got str 'x'$"):
        f("compact", "x")


def test_default():
    assert f("default", None, "n/a") == "n/a"
    assert f("default", "", "n/a") == "n/a"
    assert f("default", "x", "n/a") == "x"
    assert f("default", 0, 5) == 0
    assert f("default", False, True) is False
    assert f("default", [], ["x"]) == ["x"]  # the one emptiness rule: [] and {} are empty, like @default
    assert f("default", {}, 1) == 1
    assert f("default", None, None) is None


def test_omit_and_pick():
    obj = {"a": 1, "b": None, "c": 3}
    assert f("omit", obj, "a") == {"b": None, "c": 3}
    assert f("omit", obj, "a", "c", "zzz") == {"b": None}
    assert f("omit", obj, ["a", "c"]) == {"b": None}
    assert f("omit", obj) == obj
    assert f("pick", obj, "c", "a", "zzz") == {"c": 3, "a": 1}
    assert f("pick", obj, ["b"]) == {"b": None}
    assert f("pick", obj) == {}
    assert obj == {"a": 1, "b": None, "c": 3}  # inputs untouched
    with pytest.raises(FilterError, match=r"^pick expects an object \(mapping\), got str 'a'$"):
        f("pick", "a", "a")
    with pytest.raises(FilterError, match=r"^omit expects an object \(mapping\)"):
        f("omit", [1], 0)


@pytest.mark.parametrize(
    "full, first, last",
    [
        ("Ada Lovelace King", "Ada", "Lovelace King"),
        ("Ada Lovelace", "Ada", "Lovelace"),
        ("  Ada   Lovelace  ", "Ada", "Lovelace"),
        ("Ada", "Ada", None),
        ("Zoë Ørsted-Ñúñez", "Zoë", "Ørsted-Ñúñez"),
        ("", None, None),
        ("   ", None, None),
    ],
)
def test_split_name(full, first, last):
    assert f("split_name", full, "first") == first
    assert f("split_name", full, "last") == last


def test_split_name_errors():
    with pytest.raises(FilterError, match=r"^split_name's part must be 'first' or 'last', got 'middle'$"):
        f("split_name", "Ada Lovelace", "middle")
    with pytest.raises(FilterError, match=r"^split_name expects text, got int 1$"):
        f("split_name", 1, "first")


# ---------------------------------------------------------------- register_filter


def test_register_filter_adds_and_refuses_duplicates():
    name = "test_only_reverse"
    assert name not in FILTERS
    try:
        @register_filter(name)
        def reverse(value):
            return value[::-1]

        assert FILTERS[name] is reverse
        assert reverse("abc") == "cba"
        with pytest.raises(ValueError, match=r"^a filter named 'test_only_reverse' already exists"):
            register_filter(name)
        assert FILTERS[name] is reverse  # not overwritten
    finally:
        FILTERS.pop(name, None)


def test_register_filter_refuses_builtin_names_and_bad_names():
    with pytest.raises(ValueError, match=r"^a filter named 'lower' already exists; register yours under another name$"):
        register_filter("lower")
    with pytest.raises(ValueError, match=r"is not usable: it must be a Python/Jinja2 identifier"):
        register_filter("not-an-identifier")
    with pytest.raises(ValueError, match=r"must be a function"):
        register_filter("test_only_not_callable")(42)
    assert "test_only_not_callable" not in FILTERS


# ---------------------------------------------------------------- Jinja2


def render(template, **data):
    env = jinja2.Environment(undefined=jinja2.Undefined)
    env.filters.update(FILTERS)
    return env.from_string(template).render(**data)


def test_usable_as_jinja_filters():
    assert render("{{ t.email | trim | lower }}", t={"email": " Ada@Example.COM "}) == "ada@example.com"
    assert render("{{ 'what do ya want for nothing?' | hmac_sha256(s.key) }}", s={"key": "Jefe"}) == RFC4231_CASE2
    assert render("{{ x | json(true) }}", x={"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert render("{{ name | snake_case }}", name="Order Completed Last 30days") == "order_completed_last_30days"


def test_jinja_undefined_counts_as_missing():
    assert FILTERS["lower"](jinja2.Undefined(name="email")) is None
    assert FILTERS["default"](jinja2.Undefined(name="email"), "n/a") == "n/a"
    assert render("{{ t.nope | lower | default('n/a') }}", t={}) == "n/a"
    with pytest.raises(FilterError, match=r"key is missing"):
        render("{{ 'x' | hmac_sha256(s.nope) }}", s={})


def test_uuid5_is_stable_and_distinct():
    first = FILTERS["uuid5"]("gladly:evt-1:created")
    assert first == FILTERS["uuid5"]("gladly:evt-1:created")
    assert first != FILTERS["uuid5"]("gladly:evt-2:created")
    assert len(first) == 36 and first[14] == "5"
    assert FILTERS["uuid5"](None) is None


def test_url_segment_encodes_slashes_so_ids_stay_in_their_segment():
    assert FILTERS["url_segment"]("x/../../agents/zz") == "x%2F..%2F..%2Fagents%2Fzz"
    assert FILTERS["url_segment"]("a@b.c d") == "a%40b.c%20d"
    assert FILTERS["url_segment"](42) == "42"
    assert FILTERS["url_segment"](None) is None
