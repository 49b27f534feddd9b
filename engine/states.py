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
# final states pruned after ``delivery.keep_done_for``; dead letters wait for a person
PRUNABLE = (DELIVERED, DRY_RUN, SKIPPED, REJECTED)
# the destination name of an event rejected before routing (it failed the Segment schema)
INTAKE = "(intake)"
