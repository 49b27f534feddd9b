"""``eventmap serve``: the Segment-compatible collector (engine/serve/ does the work)."""
from __future__ import annotations

from pathlib import Path

from .common import UsageError, default_mappings, mappings_option

LIMITS = {"port": (0, 65535), "workers": (1, 64), "threads": (1, 64)}


def add_commands(commands) -> None:
    p = commands.add_parser("serve", help="a Segment-compatible HTTP collector: point a Segment SDK's host here",
                            description="Accept Segment HTTP API calls (/v1/batch, /v1/track, ...) and vendor "
                                        "webhooks (/sources/NAME), store them durably, and deliver them. With no "
                                        "--config: localhost, any write key, ./eventmap.db and a dry-run sink.")
    p.add_argument("--config", type=Path, help="configuration file: sources (write keys, webhooks), destinations, "
                                               "storage, server, logging")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1, or server.host)")
    p.add_argument("--port", type=int, help="port (default 8088, or server.port; 0 picks a free one)")
    p.add_argument("--workers", type=int, help="server processes (default 2, or server.workers)")
    p.add_argument("--threads", type=int, help="threads per server process (default 4, or server.threads)")
    p.add_argument("--dry-run", action="store_true", help="deliver to the dry-run sink instead of the vendors")
    p.add_argument("--intake-only", action="store_true",
                   help="only accept and store: destinations are then delivered by 'eventmap deliver', "
                        "and webhook payloads wait for a server started without this option")
    mappings_option(p)
    p.set_defaults(run=cmd_serve)


def cmd_serve(args) -> int:
    for name, (low, high) in LIMITS.items():
        value = getattr(args, name)
        if value is not None and not low <= value <= high:
            raise UsageError(f"--{name} {value} is out of range")
    from ..serve.command import serve  # gunicorn is imported only by the command that needs it
    return serve(args, default_mappings())
