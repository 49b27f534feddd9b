"""Segment-spec checks: schema errors for calls, warnings for ecommerce v2 events."""
from engine.validate.ecommerce import SegmentCheck, lint_ecommerce
from engine.validate.events import EventValidator

__all__ = ["EventValidator", "SegmentCheck", "lint_ecommerce"]
