"""The console alone (``eventmap console``): against the store of a configuration file, nothing delivered."""
from __future__ import annotations

import logging
from pathlib import Path

from ..load.config import find_mappings
from ..logs import configure
from ..problems import ConfigError, Problem
from ..serve.command import Server, loopback
from ..serve.config import ServerOptions, demo_config, load_serve_config
from ..serve.setup import build
from . import DEFAULT_PORT, PREFIX
from .app import console_for

log = logging.getLogger("eventmap.console")


def run_console(args) -> int:
    """``args``: eventmap console's options (engine/cli/parser.py)."""
    config = load_serve_config(args.config) if args.config else demo_config(Path.cwd())
    host = args.host or config.server.host
    port = DEFAULT_PORT if args.port is None else args.port
    if config.console is None and not config.demo:
        raise ConfigError([Problem("console", "no console credentials: add console: {username: ..., password: "
                                              "{env: ...}} to the file", config.file)])
    if config.console is None and not loopback(host):
        raise ConfigError([Problem("--host", f"without a configuration file the console has no login, so it listens "
                                             f"on localhost only, not {host}")])
    args.mappings_folder = find_mappings(args.mappings, config.mappings, config.file)   # named if a name is unknown
    setup = build(config, args.mappings_folder.path.resolve())
    # its errors (unreachable, wrong schema version) come before listening; with no file, the demo server's
    # ./eventmap.db is read if it is there, never made: the console only reads
    try:
        setup.open_store(create=not config.demo).close()
    except ConfigError as exc:
        if not config.demo:
            raise
        raise ConfigError([*exc.problems, Problem("--config", "with no configuration file the console reads the "
                                                              "./eventmap.db that 'eventmap serve' (with no file) "
                                                              "keeps here; or pass --config FILE")]) from None
    console = console_for(setup)
    configure(config.logging)
    log.info("eventmap console: %s", setup.describe())
    Server(Root(console), ServerOptions(host, port, workers=1, threads=4), name="eventmap console").run()
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
