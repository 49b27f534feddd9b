"""The console alone (``eventmap console``): against the store of a configuration file, nothing delivered."""
from __future__ import annotations

import logging
from pathlib import Path

from ..problems import ConfigError, Problem
from ..serve.command import _loopback
from ..serve.config import ServerOptions, demo_config, load_serve_config
from ..serve.server import GunicornServer
from ..serve.setup import build
from . import DEFAULT_PORT, PREFIX
from .app import console_for

log = logging.getLogger("eventmap.console")


def run_console(config_file: Path | None, host: str | None, port: int | None, mappings: Path | None,
                default_mappings: Path) -> int:
    config = load_serve_config(config_file) if config_file else demo_config(Path.cwd())
    host = host or config.server.host
    port = DEFAULT_PORT if port is None else port
    if config.console is None and not config.demo:
        raise ConfigError([Problem("console", "no console credentials: add console: {username: ..., password: "
                                              "{env: ...}} to the file", config.file)])
    if config.console is None and not _loopback(host):
        raise ConfigError([Problem("--host", f"without a configuration file the console has no login, so it listens "
                                             f"on localhost only, not {host}")])
    mappings = Path(mappings or config.mappings or default_mappings).resolve()
    setup = build(config, mappings)
    setup.open_store().close()   # its errors (unreachable, wrong schema version) come before listening
    console = console_for(setup)
    log.info("eventmap console: %s", setup.describe())
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
