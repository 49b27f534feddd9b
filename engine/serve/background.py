"""The work after the acknowledgement, in its own process: webhook mapping and delivery.

The server processes only accept and store; this process runs every worker
(``name`` and ``run_once(now)``) until the server stops. It is a separate
process, not a thread in gunicorn's master, because the master forks server
processes and a fork must not copy another thread's half-held locks or
SQLite connections. It exits by itself when its parent goes away.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..deliver import HttpClient
from ..intake import Intake
from .config import demo_config, load_serve_config
from .setup import Setup, build
from .source_worker import SourceWorker

log = logging.getLogger("eventmap.serve")
IDLE = 0.5   # seconds between polls when there is nothing to do


def source_workers(setup: Setup, store, intake: Intake) -> list[SourceWorker]:
    client = HttpClient(timeout=setup.config.delivery.timeout)
    return [SourceWorker(setup.config.webhooks[name].pseudo_destination, bound, intake, store, client,
                         setup.config.delivery) for name, bound in setup.sources.items()]


def delivery_workers(setup: Setup, store, dry_run: bool) -> list:
    """The destination workers, each with ``name`` and ``run_once(now)`` (the dry-run client when
    ``dry_run``): the one place delivery is wired in. Until engine.deliver has its workers, none
    run here and queued deliveries wait in the store for ``eventmap deliver``."""
    return []


def run(workers: list, stop: threading.Event, parent: int | None = None, idle: float = IDLE) -> None:
    """Call every worker until ``stop`` is set (or the parent process is gone); sleep only when idle."""
    while not stop.is_set():
        if parent is not None and os.getppid() != parent:
            return
        busy = 0
        for worker in workers:
            try:
                busy += worker.run_once(time.time())
            except Exception:  # one worker's fault must not stop the others; its lease expires and it retries
                log.exception("%s failed", worker.name)
        if not busy:
            stop.wait(idle)


def main(config_file: str | None, folder: str, mappings: str, dry_run: bool, parent: int) -> None:
    """The background process: rebuild the setup from the same file, then run until told to stop."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the server's Ctrl-C stops us through SIGTERM
    logging.basicConfig(level=logging.INFO, format="[background] %(levelname)s %(message)s")
    config = load_serve_config(Path(config_file)) if config_file else demo_config(Path(folder))
    setup = build(config, Path(mappings))
    store = setup.open_store()
    intake = Intake(setup.engine, setup.routes, store, config.delivery.dedupe_window)
    workers = source_workers(setup, store, intake) + delivery_workers(setup, store, dry_run)
    try:
        run(workers, stop, parent)
    finally:
        store.close()


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
