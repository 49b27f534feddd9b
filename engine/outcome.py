"""What happened to one event at one destination: send, skipped or rejected."""
from __future__ import annotations

from dataclasses import dataclass, field

from .problems import Problem
from .render.request import Request
from .states import REJECTED, SEND, SKIPPED

__all__ = ["REJECTED", "SEND", "SKIPPED", "Outcome"]


@dataclass(slots=True)
class Outcome:
    destination: str
    status: str
    requests: list[Request] = field(default_factory=list)
    reason: str | None = None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    message_id: str | None = None
    # the mapped item(s) before the envelope, kept for batching several events into one request
    items: list = field(default_factory=list, repr=False)
    action: str | None = None
    # a multi-step action: the plan of its steps, or (run with answers) what each step did
    steps: list | None = None

    def to_dict(self, show_secrets: bool = False) -> dict:
        data = {"destination": self.destination, "status": self.status,
                "requests": [r.to_dict(show_secrets) for r in self.requests],
                "reason": self.reason,
                "errors": [e.as_dict() for e in self.errors]}
        if self.warnings:
            data["warnings"] = [w.as_dict() for w in self.warnings]
        if self.steps is not None:
            data["steps"] = self.steps
        if self.message_id is not None:
            data["messageId"] = self.message_id
        return data
