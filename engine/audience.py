"""Engage/Personas audiences for user-property destinations.

Segment sends audience membership to destinations like Planhat, Richpanel and
Crisp as an identify call per user added or removed, with the snake_cased
audience name as a trait set to true or false. This builds that identify so
audiences flow through the same mappings as every other identify.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

from .map.filters import FILTERS


def audience_trait(audience_name: str) -> str:
    """'Order Completed Last 30days' -> 'order_completed_last_30days'."""
    return FILTERS["snake_case"](audience_name)


def audience_identify(audience_name: str, member: bool, *, user_id=None, anonymous_id=None,
                      traits: dict | None = None, timestamp: str | None = None,
                      message_id: str | None = None) -> dict:
    if not user_id and not anonymous_id:
        raise ValueError("an audience update needs user_id or anonymous_id")
    key = audience_trait(audience_name)
    event = {
        "type": "identify",
        "traits": {**(traits or {}), key: bool(member)},
        "context": {"personas": {"computation_class": "audience", "computation_key": key}},
        "messageId": message_id or f"audience-{uuid.uuid4()}",
        "timestamp": timestamp or datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if user_id:
        event["userId"] = user_id
    if anonymous_id:
        event["anonymousId"] = anonymous_id
    return event
