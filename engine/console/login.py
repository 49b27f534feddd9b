"""Back-off for wrong console logins, per client and over all clients, shared by the server's processes.

A client (an IPv4 address, or an IPv6 /64) may make ``FREE`` wrong logins; each one
after that makes it wait twice as long as the last (1 s, 2 s, 4 s ... up to ``MAX_WAIT``).
While it waits every attempt is answered 429 with ``Retry-After`` and its password is
not looked at, so waiting is the only way on. A login that works forgets the client's
failures; so does an hour without one.

Over all clients: past ``GLOBAL_FAILURES`` wrong logins in a minute (many addresses
trying), every client that has not logged in within ``KNOWN_FOR`` waits for the minute
to end; people who use the console carry on.

The counts live in shared memory made before gunicorn forks (like the refusal
counters of /metrics), so the bound holds however many server processes answer:
one slot per client, found by a keyed hash (two clients share a slot by chance
about once in ``SLOTS``). Requests checked at the same moment may each count before
any waits; that is bounded by the server's threads.
"""
from __future__ import annotations

import hashlib
import ipaddress
import math
import multiprocessing
import os
from dataclasses import dataclass

FREE = 5                   # wrong logins a client makes before it waits
FIRST_WAIT = 1.0           # seconds, doubled per further wrong login
MAX_WAIT = 300.0
FORGET = 3600.0            # a client's wrong logins are forgotten this long after its last one
GLOBAL_FAILURES = 100      # wrong logins in a minute, over all clients, before clients not known wait
WINDOW = 60.0
KNOWN_FOR = 86400.0        # a client that logged in this recently is not held by the global back-off
SLOTS = 4096

# per slot: wrong logins in a row, time of the last one, time of the last login that worked
_FAILURES, _LAST_FAILURE, _LAST_SUCCESS, _PER_SLOT = 0, 1, 2, 3
# after the slots: the global window's start and count, and the two counters /metrics shows
_WINDOW_START, _WINDOW_COUNT, _FAILED_TOTAL, _REFUSED_TOTAL = range(SLOTS * _PER_SLOT, SLOTS * _PER_SLOT + 4)


@dataclass(frozen=True)
class Verdict:
    """What a wrong login did: the client's count in a row, its wait before the next try (0: none), and
    whether it started the global back-off."""

    in_a_row: int
    wait: float
    global_started: bool


class LoginGuard:
    def __init__(self):
        self._counts = multiprocessing.Array("d", SLOTS * _PER_SLOT + 4)   # inherited by forked processes
        self._key = os.urandom(16)

    def __repr__(self) -> str:
        return f"<LoginGuard {self.snapshot()}>"

    def wait(self, client: str, now: float) -> float:
        """Seconds ``client`` must wait before its login is looked at; 0 when it may try now. A wait counts."""
        base = self._slot(client)
        with self._counts.get_lock():
            counts = self._counts
            wait = _wait(counts[base + _FAILURES], counts[base + _LAST_FAILURE], now)
            known = now - counts[base + _LAST_SUCCESS] < KNOWN_FOR
            if not known and counts[_WINDOW_COUNT] >= GLOBAL_FAILURES and now - counts[_WINDOW_START] < WINDOW:
                wait = max(wait, counts[_WINDOW_START] + WINDOW - now)
            if wait > 0:
                counts[_REFUSED_TOTAL] += 1
            return wait

    def failed(self, client: str, now: float) -> Verdict:
        base = self._slot(client)
        with self._counts.get_lock():
            counts = self._counts
            if now - counts[base + _LAST_FAILURE] > FORGET:
                counts[base + _FAILURES] = 0
            counts[base + _FAILURES] += 1
            counts[base + _LAST_FAILURE] = now
            counts[_FAILED_TOTAL] += 1
            if now - counts[_WINDOW_START] >= WINDOW:
                counts[_WINDOW_START], counts[_WINDOW_COUNT] = now, 0
            counts[_WINDOW_COUNT] += 1
            in_a_row = int(counts[base + _FAILURES])
            return Verdict(in_a_row, _wait(in_a_row, now, now), counts[_WINDOW_COUNT] == GLOBAL_FAILURES)

    def succeeded(self, client: str, now: float) -> None:
        base = self._slot(client)
        with self._counts.get_lock():
            self._counts[base + _FAILURES] = 0
            self._counts[base + _LAST_SUCCESS] = now

    def snapshot(self) -> dict[str, int]:
        """The counters for /metrics: wrong logins, and attempts refused while a client or all waited."""
        with self._counts.get_lock():
            return {"failed": int(self._counts[_FAILED_TOTAL]), "refused": int(self._counts[_REFUSED_TOTAL])}

    def _slot(self, client: str) -> int:
        digest = hashlib.blake2b(_group(client).encode(), key=self._key, digest_size=8).digest()
        return int.from_bytes(digest, "big") % SLOTS * _PER_SLOT


def _wait(in_a_row: float, last: float, now: float) -> float:
    if in_a_row < FREE or now - last > FORGET:
        return 0.0
    wait = min(MAX_WAIT, FIRST_WAIT * 2 ** (in_a_row - FREE))
    return max(0.0, last + wait - now)


def _group(client: str) -> str:
    """One client: its IPv4 address, or its IPv6 /64 (one host is given a whole /64)."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def retry_after(wait: float) -> str:
    """A wait as ``Retry-After`` says it: whole seconds, rounded up."""
    return str(max(1, math.ceil(wait)))
