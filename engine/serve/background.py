"""The work after the acknowledgement, in its own process: webhook mapping and delivery.

The server processes only accept and store; this process runs the delivery
runner with a worker per destination and one per webhook source (and the inbox
processor with ``server.intake: queue``), until the server stops. It is a
separate process, not a thread in gunicorn's master, because the master forks
server processes and a fork must not copy another thread's half-held locks or
SQLite connections. It exits by itself when its parent goes away (a SIGKILLed
server leaves no orphan delivering behind it).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ..deliver import DryRunClient, HttpClient, Runner, destination_workers, new_owner
from ..intake import Intake
from ..logs import configure
from ..secrets import Masker
from .config import demo_config, load_serve_config
from .inbox import inbox_workers
from .setup import Setup, build
from .source_worker import SourceWorker

PARENT_CHECK = 1.0   # seconds between checks that the server is still there


def source_workers(setup: Setup, store, intake: Intake, owner: str) -> list[SourceWorker]:
    client = HttpClient(timeout=setup.config.delivery.timeout)
    return [SourceWorker(setup.config.webhooks[name].pseudo_destination, bound, intake, store, client,
                         setup.config.delivery, owner=owner) for name, bound in setup.sources.items()]


def main(config_file: str | None, folder: str, mappings: str, dry_run: bool, parent: int) -> None:
    """Rebuild the setup from the same file, then deliver until SIGTERM or the parent is gone."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the server, which stops us with SIGTERM
    config = load_serve_config(Path(config_file)) if config_file else demo_config(Path(folder))
    configure(config.logging)
    setup = build(config, Path(mappings))
    owner = new_owner()
    secrets = frozenset(s for route in setup.routes for s in route.secrets) | frozenset(config.secrets())
    with setup.open_store() as store:
        intake = Intake(setup.engine, setup.routes, store, config.delivery.dedupe_window, plans=config.plans)
        destinations = destination_workers(setup.routes, store, config.delivery, owner=owner, stop=stop,
                                           client=DryRunClient() if dry_run else None)
        inbox = inbox_workers(intake, store, config.server.intake, lease_for=config.delivery.lease, owner=owner)
        workers = inbox + destinations + source_workers(setup, store, intake, owner)
        runner = Runner(workers, store, threads={w.name: w.route.limits.concurrency for w in destinations},
                        owner=owner, stop=stop, keep_done_for=config.delivery.keep_done_for, masker=Masker(secrets),
                        archive_for=config.delivery.archive_for,
                        report_every=config.logging.every, idle_wait=config.delivery.poll,
                        batch_wait=config.delivery.batch_wait)
        runner.start()
        while not stop.wait(PARENT_CHECK):
            if os.getppid() != parent:
                stop.set()
        runner.join()


def start(config_file: Path | None, folder: Path, mappings: Path, dry_run: bool) -> subprocess.Popen:
    """Start the background process: a fresh interpreter that inherits nothing but its arguments."""
    command = [sys.executable, "-m", "engine.serve.background", "--folder", str(folder), "--mappings", str(mappings),
               "--parent", str(os.getpid())]
    if config_file:
        command += ["--config", str(config_file)]
    if dry_run:
        command.append("--dry-run")
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def stop(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m engine.serve.background")
    parser.add_argument("--config")
    parser.add_argument("--folder", required=True)
    parser.add_argument("--mappings", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--dry-run", action="store_true")
    options = parser.parse_args()
    main(options.config, options.folder, options.mappings, options.dry_run, options.parent)
