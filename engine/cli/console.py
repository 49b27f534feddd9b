"""``eventmap console``: the web console alone (engine/console/ does the work; options in parser.py)."""
from __future__ import annotations

from ..console.standalone import run_console


def cmd_console(args) -> int:
    return run_console(args)
