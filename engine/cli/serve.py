"""``eventmap serve``: the Segment-compatible collector (engine/serve/ does the work; options in parser.py)."""
from __future__ import annotations

from ..serve.command import serve
from .common import UsageError

LIMITS = {"port": (0, 65535), "workers": (1, 64), "threads": (1, 64)}


def cmd_serve(args) -> int:
    for name, (low, high) in LIMITS.items():
        value = getattr(args, name)
        if value is not None and not low <= value <= high:
            raise UsageError(f"--{name} {value} is out of range")
    return serve(args)
