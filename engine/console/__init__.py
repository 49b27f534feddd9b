"""The web console: what eventmap did with each event, dead letters to retry, and a mapping tester.

Served by ``eventmap serve`` under ``/console`` and by ``eventmap console`` on its own.
"""
from .app import PREFIX, Console, console_for

__all__ = ["PREFIX", "Console", "console_for"]
