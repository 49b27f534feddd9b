"""``eventmap serve``: check everything, open the store, start the background process, then listen."""
from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import replace
from pathlib import Path

from ..logs import configure
from ..problems import ConfigError, Problem
from . import background
from .app import Collector
from .config import demo_config, load_serve_config
from .port import check_free
from .server import GunicornServer
from .setup import build

log = logging.getLogger("eventmap.serve")

DEMO_NOTE = ("eventmap serve: no configuration file, so: any write key is accepted, events are stored in "
             "{store}, and destinations get made-up credentials and the dry-run sink (nothing leaves this machine). "
             "Pass --config FILE for real use.")


def serve(args, default_mappings: Path) -> int:
    config = load_serve_config(args.config) if args.config else demo_config(Path.cwd())
    config.server = replace(config.server, **{k: v for k, v in (("host", args.host), ("port", args.port),
                                                                 ("workers", args.workers), ("threads", args.threads))
                                               if v is not None})
    if config.demo and not _loopback(config.server.host):
        raise ConfigError([Problem("--host", f"without a configuration file any write key is accepted, so the server "
                                             f"listens on localhost only, not {config.server.host}")])
    check_free(config.server.host, config.server.port)
    mappings = Path(args.mappings or config.mappings or default_mappings).resolve()
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
    app = Collector(config, setup.engine, setup.routes, setup.open_store, console=console_for(setup))
    master = os.getpid()
    try:
        GunicornServer(app, config.server, on_exit=lambda: background.stop(worker), refusals=app.refusals).run()
    finally:
        if os.getpid() == master:   # gunicorn's forked server processes leave through here too
            background.stop(worker)
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
