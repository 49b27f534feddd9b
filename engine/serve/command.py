"""``eventmap serve``: check everything, open the store, start the background process, then listen."""
from __future__ import annotations

import ipaddress
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from gunicorn.glogging import Logger as GunicornLogger

from ..engine import Engine
from ..load.config import find_mappings, load_config, routes_from_config
from ..logs import configure
from ..problems import ConfigError, Problem
from . import background
from .app import Collector
from .config import ServeConfig, demo_config, load_serve_config
from .port import check_free
from .server import GunicornServer
from .setup import build

log = logging.getLogger("eventmap.serve")

DEMO_NOTE = ("eventmap serve: no configuration file, so: any write key is accepted, events are stored in "
             "{store}, and destinations get made-up credentials and the dry-run sink (nothing leaves this machine). "
             "Pass --config FILE for real use.")


def serve(args) -> int:
    config = read_serve_config(args.config, args.mappings) if args.config else demo_config(Path.cwd())
    config.server = replace(config.server, **{k: v for k, v in (("host", args.host), ("port", args.port),
                                                                 ("workers", args.workers), ("threads", args.threads))
                                               if v is not None})
    if config.demo and not loopback(config.server.host):
        raise ConfigError([Problem("--host", f"without a configuration file any write key is accepted, so the server "
                                             f"listens on localhost only, not {config.server.host}")])
    check_free(config.server.host, config.server.port)
    args.mappings_folder = find_mappings(args.mappings, config.mappings, config.file)   # named if a name is unknown
    mappings = args.mappings_folder.path.resolve()
    setup = build(config, mappings)
    store = setup.open_store()   # creates or upgrades the SQLite file now, so its errors come before listening
    store.close()
    configure(config.logging)
    if config.demo:
        log.warning(DEMO_NOTE.format(store=(config.folder / "eventmap.db")))
    log.info("eventmap serve: %s", setup.describe())
    worker = None
    if not args.intake_only:
        worker = background.start(Path(args.config).resolve() if args.config else None, config.folder, mappings,
                                  dry_run=config.demo or args.dry_run)
    from ..console.app import console_for
    app = Collector(config, setup.engine, setup.routes, setup.open_store, console=console_for(setup, args.dry_run))
    master = os.getpid()
    try:
        Server(app, config.server, on_exit=lambda: background.stop(worker), refusals=app.refusals).run()
    finally:
        if os.getpid() == master:   # gunicorn's forked server processes leave through here too
            background.stop(worker)
    return 0


def read_serve_config(path: Path, mappings_option: Path | None = None) -> ServeConfig:
    """The file, checked; ConfigError with every problem in one run: the file's own (an unset environment
    variable, a source's shape) and, when its destinations can be read, each destination's missing or
    wrong settings, which ``build`` would otherwise report only on the next run."""
    try:
        return load_serve_config(path)
    except ConfigError as exc:
        problems = list(exc.problems)
    config, found = load_config(path)
    if config is not None and not found:
        folder = find_mappings(mappings_option, config.mappings, config.file)
        try:
            routes_from_config(Engine(folder.path), config)
        except ConfigError as more:
            problems += more.problems
    raise ConfigError(sorted(problems, key=lambda p: (p.file or "", p.line or 0)))


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server(GunicornServer):
    """gunicorn as eventmap runs it: its lines (and uvicorn's) in eventmap's log format, text or JSON, and
    the address it listens on announced under the command's own name."""

    def __init__(self, app, options, name: str = "eventmap serve", **kwargs):
        self.name = name
        super().__init__(app, options, **kwargs)

    def load_config(self):
        super().load_config()
        self.cfg.set("logger_class", ServerLog)
        self.cfg.set("when_ready", self._announce)

    def _announce(self, server) -> None:
        """One plain line scripts wait for (tests/serve_harness.py), whatever the log format."""
        for listener in server.LISTENERS:
            print(f"{self.name}: listening on {listener}", file=sys.stderr, flush=True)


class ServerLog(GunicornLogger):
    """gunicorn's logger, with its lines handed to eventmap's handler (engine/logs.py ``configure``) instead
    of gunicorn's own format. uvicorn's worker shares these handlers, so its lines come the same way."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        self.error_log.handlers = [_ToEventmap()]


class _ToEventmap(logging.Handler):
    """Passes a record to the root logger's handlers, where ``configure`` put eventmap's, at its level."""

    def emit(self, record: logging.LogRecord) -> None:
        root = logging.getLogger()
        if record.levelno >= root.getEffectiveLevel():
            root.handle(record)
