"""When a failed delivery is tried again: the backoff's ceiling, the horizon's exact edge, which statuses
are worth a retry, and a Retry-After that asks for a wait in the past.

Each test pins one rule at its boundary, where a flipped comparison or a dropped clamp shows.
"""
from __future__ import annotations

import email.utils
import random
import time

import pytest

from engine.answers import is_retryable, retry_after
from engine.deliver import RetryPolicy


def test_the_wait_doubles_per_attempt_with_equal_jitter():
    policy = RetryPolicy(backoff=2.0, max_backoff=600.0)
    for attempts, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (6, 64.0)):
        waits = [policy.wait(attempts, rng=random.Random(seed)) for seed in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (attempts, min(waits), max(waits))
        assert max(waits) - min(waits) > ceiling / 4   # half of it is random


@pytest.mark.parametrize("attempts", [11, 12, 30, 200])   # 2 ** 10 seconds is past 600
def test_the_wait_never_passes_max_backoff(attempts):
    policy = RetryPolicy(backoff=1.0, max_backoff=600.0)
    waits = [policy.wait(attempts, rng=random.Random(seed)) for seed in range(50)]
    assert all(300.0 <= w <= 600.0 for w in waits), (min(waits), max(waits))


def test_the_vendors_retry_after_wins_and_is_never_negative():
    policy = RetryPolicy(backoff=1.0, max_backoff=600.0)
    assert policy.wait(1, asked=3600.0) == 3600.0   # the vendor knows: not capped by max_backoff
    assert policy.wait(5, asked=0.0) == 0.0
    assert policy.wait(5, asked=-10.0) == 0.0


def test_the_horizon_gives_up_only_past_retry_for():
    policy = RetryPolicy(retry_for=180.0)
    first = 1_000_000.0
    assert not policy.gives_up(first, first + 179.9)
    assert not policy.gives_up(first, first + 180.0)   # exactly at the horizon: still tried
    assert policy.gives_up(first, first + 180.001)


def test_retryable_statuses_follow_segment_exactly():
    """4xx is final except 408 (timeout), 423 (locked) and 429 (rate limited); 5xx retries except 501."""
    expected = {408, 423, 429} | (set(range(500, 600)) - {501})
    assert {status for status in range(400, 600) if is_retryable(status)} == expected


@pytest.mark.parametrize("value, seconds", [("120", 120.0), ("0", 0.0), ("1.5", 1.5), ("-30", 0.0)])
def test_retry_after_in_seconds_is_never_negative(value, seconds):
    assert retry_after({"retry-after": value}) == seconds
    assert retry_after({"Retry-After": value}) == seconds   # header names are case-insensitive


def test_retry_after_as_a_date_counts_from_now_and_a_past_date_means_now():
    soon = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= retry_after({"Retry-After": soon}) <= 60
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert retry_after({"Retry-After": past}) == 0.0


def test_no_retry_after_is_none():
    assert retry_after({"Content-Type": "application/json"}) is None
