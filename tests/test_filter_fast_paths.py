"""The filters' quick ways give what their plain definitions give.

Each fast path here stands for a slower, obviously right formulation; hypothesis compares them over
the inputs that matter: epoch seconds and milliseconds in integers (not via timedelta division), try()
on text parsing without raising, and replace without a regular expression.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.map.filters import FILTERS, FilterError, _parse_iso, try_filter

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))


@given(moments)
def test_epoch_seconds_and_milliseconds_are_the_floor_of_the_time_since_1970(moment):
    text = moment.isoformat().replace("+00:00", "Z")
    assert FILTERS["epoch_s"](text) == (_parse_iso(text) - EPOCH) // timedelta(seconds=1)
    assert FILTERS["epoch_ms"](text) == (_parse_iso(text) - EPOCH) // timedelta(milliseconds=1)


DATE_LIKE = st.from_regex(r"\s?\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d([.,]\d{1,9})?)?(Z|[+-]\d\d(:?\d\d)?)?)?\s?",
                          fullmatch=True)


@given(st.one_of(DATE_LIKE, st.text(max_size=30), st.sampled_from(["2024-13-01", "2024-02-30T00:00Z", "-2024-01-01",
                                                                    " 2024-01-02", "2024-01-02T25:00Z", "é2024-01-01"])),
       st.sampled_from(["epoch_s", "epoch_ms", "iso8601", "date"]))
def test_try_on_text_is_the_filter_or_the_text_as_it_was(text, name):
    try:
        want = FILTERS[name](text)
    except FilterError:
        want = text
    assert try_filter(text, name) == want


@given(st.text(alphabet="ab<&>", max_size=20), st.text(alphabet="ab<&>", min_size=1, max_size=3),
       st.text(alphabet="xy&", max_size=3))
def test_replace_replaces_as_a_pattern_of_the_text_would(text, old, new):
    assert FILTERS["replace"](text, old, new) == re.sub(re.escape(old), lambda _m: new, text)


def test_a_date_with_spaces_around_it_is_still_a_date():
    """The parser turns most text away at its fifth character, after any leading space."""
    assert FILTERS["epoch_s"](" 2024-01-02T00:00:00Z ") == 1704153600
    assert try_filter("\t2024-01-02", "date") == "2024-01-02"
    assert try_filter("Product 2024-01-02", "date") == "Product 2024-01-02"


@given(st.one_of(st.text(max_size=20), st.text(alphabet="abcXYZ019_.~-/ %é?", max_size=20), st.integers()))
def test_url_segment_is_quote_with_nothing_safe(value):
    from urllib.parse import quote
    assert FILTERS["url_segment"](value) == quote(value if isinstance(value, str) else str(value), safe="")


# regex_replace: patterns Python's engine runs for RE2 (filters._PLAIN_PATTERN) and the ones it must not
_LITERALS = st.sampled_from(["a", "b", "_", " ", "é", "-", "#", "\\.", "\\-", "\\[", "\\+", "\\\\", "x"])
_CLASS_ITEMS = st.sampled_from(["a", "b", "0", "_", " ", "é", "\\-", "\\]", "\\\\", "a-z", "0-9", "A-Z", "à-ö"])
_CLASSES = st.tuples(st.booleans(), st.lists(_CLASS_ITEMS, min_size=1, max_size=4)).map(
    lambda t: "[" + ("^" if t[0] else "") + "".join(t[1]) + "]")
PLAIN_PATTERNS = st.tuples(st.lists(st.one_of(_LITERALS, _CLASSES), min_size=1, max_size=4), st.booleans()).map(
    lambda t: "".join(t[0]) + ("+" if t[1] else ""))
TEXTS = st.one_of(st.text(alphabet="ab_ -.é#+[]\\xAZ09àö", max_size=30), st.text(max_size=20))


@given(PLAIN_PATTERNS, TEXTS, st.sampled_from(["", "_", "-", "xy", "$"]))
def test_a_plain_pattern_replaces_as_re2_does(pattern, text, replacement):
    from engine.map.filters import _PLAIN_PATTERN, _re2_compiled
    assert _PLAIN_PATTERN.fullmatch(pattern), pattern  # the strategy writes only plain patterns
    assert FILTERS["regex_replace"](text, pattern, replacement) == _re2_compiled(pattern).sub(replacement, text)


@pytest.mark.parametrize("pattern", ["(a+)+b", "a+b", "a*", "a?", "a|b", ".", "^a", "a$", "a{2}", "\\d", "\\s+", "a+?",
                                     "[[:alpha:]]", "[a-]", "(?i)a", ""])
def test_patterns_that_can_backtrack_or_mean_another_thing_stay_with_re2(pattern):
    from engine.map.filters import _PLAIN_PATTERN
    assert not _PLAIN_PATTERN.fullmatch(pattern)


def test_a_pattern_that_backtracks_in_python_still_runs_in_linear_time():
    """(a+)+b on 'a' * 40 takes Python's engine 2**40 steps; RE2 answers at once."""
    assert FILTERS["regex_replace"]("a" * 40, "(a+)+b", "x") == "a" * 40


@given(st.integers(min_value=0, max_value=253_402_300_799_999), st.text(max_size=20))  # to the year 9999
def test_a_ulid_is_its_time_and_hash_in_crockford_base32_five_bits_a_character(ms, value):
    import hashlib
    number = (ms << 80) | int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:10], "big")
    want = "".join("0123456789ABCDEFGHJKMNPQRSTVWXYZ"[(number >> shift) & 31] for shift in range(125, -1, -5))
    assert FILTERS["ulid"](value, ms) == want
