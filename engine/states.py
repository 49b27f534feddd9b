"""Every status and state eventmap names, defined once.

An *outcome* (rendering one event for one destination) is ``send``, ``skipped``
or ``rejected``. A *delivery* kept in the store is in exactly one state:

    queued    waiting for its first attempt (due at ``next_at``)
    retrying  failed with a retryable answer; due again at ``next_at``
    delivered the vendor answered 2xx                                 (final)
    dry_run   rendered and handed to the dry-run sink; nothing was sent (final)
    skipped   not sent, with the reason (not subscribed, duplicate)    (final)
    rejected  not sendable, with the errors (bad event, mapping)       (final)
    dead      failed for good, with every attempt kept        (final, re-queueable)

``skipped`` and ``rejected`` mean the same in both, so they are the same words.

A *replay* (``engine/replay.py``) is ``running`` (or was, when its process was killed) or ``stopped``
(Ctrl-C), both of which ``eventmap replay --resume`` continues, or ``done`` or ``abandoned``. For each
event and destination it counts what it did: ``replayed`` (a new delivery queued), ``skipped`` or ``rejected``.
"""
from __future__ import annotations

# outcome statuses
SEND = "send"
SKIPPED = "skipped"
REJECTED = "rejected"
OUTCOME_STATUSES = (SEND, SKIPPED, REJECTED)

# delivery states
QUEUED = "queued"
RETRYING = "retrying"
DELIVERED = "delivered"
DRY_RUN = "dry_run"
DEAD = "dead"
STATES = (QUEUED, RETRYING, DELIVERED, DRY_RUN, SKIPPED, REJECTED, DEAD)
PENDING = (QUEUED, RETRYING)
FINAL = (DELIVERED, DRY_RUN, SKIPPED, REJECTED, DEAD)
# states a delivery reaches only by sending (or handing its request to the dry-run sink)
SENT_STATES = (DELIVERED, DRY_RUN, RETRYING, DEAD)
# final states pruned after ``delivery.keep_done_for``; dead letters wait for a person
PRUNABLE = (DELIVERED, DRY_RUN, SKIPPED, REJECTED)
# the destination name of an event rejected before routing (it failed the Segment schema)
INTAKE = "(intake)"

# replay states, and what a replay did with one event at one destination
REPLAY_RUNNING = "running"
REPLAY_STOPPED = "stopped"
REPLAY_DONE = "done"
REPLAY_ABANDONED = "abandoned"
REPLAY_STATES = (REPLAY_RUNNING, REPLAY_STOPPED, REPLAY_DONE, REPLAY_ABANDONED)
REPLAY_FINAL = (REPLAY_DONE, REPLAY_ABANDONED)
REPLAYED = "replayed"
REPLAY_VERDICTS = (REPLAYED, SKIPPED, REJECTED)
