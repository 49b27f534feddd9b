"""``eventmap console``: the console alone, against the store of a configuration file (nothing is delivered)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..problems import ConfigError, Problem
from ..serve.command import _loopback
from ..serve.config import ServerOptions, demo_config, load_serve_config
from ..serve.server import GunicornServer
from ..serve.setup import build
from .app import PREFIX, console_for

DEFAULT_PORT = 8089   # beside the server's 8088, so both can run on one machine


def add_command(commands, mappings_option) -> None:
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
    from ..cli import default_mappings  # the CLI's rule for which mappings: ./mappings, else the shipped ones
    config = load_serve_config(args.config) if args.config else demo_config(Path.cwd())
    host = args.host or config.server.host
    port = DEFAULT_PORT if args.port is None else args.port
    if config.console is None and not config.demo:
        raise ConfigError([Problem("console", "no console credentials: add console: {username: ..., password: "
                                              "{env: ...}} to the file", config.file)])
    if config.console is None and not _loopback(host):
        raise ConfigError([Problem("--host", f"without a configuration file the console has no login, so it listens "
                                             f"on localhost only, not {host}")])
    mappings = Path(args.mappings or config.mappings or default_mappings()).resolve()
    setup = build(config, mappings)
    setup.open_store().close()   # its errors (unreachable, wrong schema version) come before listening
    console = console_for(setup)
    print(f"eventmap console: {setup.describe()}", file=sys.stderr, flush=True)
    GunicornServer(Root(console), ServerOptions(host, port, workers=1, threads=4)).run()
    return 0


class Root:
    """The console at /console, and / sends people there."""

    def __init__(self, console):
        self.console = console

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return self.console(environ, start_response)
        start_response("303 See Other", [("Location", PREFIX + "/"), ("Content-Length", "0")])
        return []
