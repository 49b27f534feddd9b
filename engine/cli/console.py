"""``eventmap console``: the web console alone (engine/console/ does the work)."""
from __future__ import annotations

from pathlib import Path

from ..console import DEFAULT_PORT
from .common import default_mappings, mappings_option


def add_commands(commands) -> None:
    p = commands.add_parser("console", help="the web console alone: events, deliveries, dead letters, mapping tester",
                            description="Serve the web console (also at /console on 'eventmap serve') against the "
                                        "store of --config. It needs console: {username, password} in the file; "
                                        "with no file it opens ./eventmap.db on localhost without a login.")
    p.add_argument("--config", type=Path, help="configuration file (destinations, storage, console credentials)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1, or server.host)")
    p.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    mappings_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..console.standalone import run_console  # gunicorn is imported only by the commands that need it
    return run_console(args.config, args.host, args.port, args.mappings, default_mappings())
