"""What the stateful stand-in flow tests share (tests/test_*_flows.py): a stand-in served on localhost,
a configuration with its destination, ``eventmap enqueue`` and ``eventmap deliver`` run for real, the
outbox's states, and ``deliver`` killed with SIGKILL while a vendor request hangs."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vendor_server import Answer, Received, VendorServer

from engine.cli import main
from engine.store import DEAD, DELIVERED, open_store

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def served(stand_in) -> Iterator:
    """The stand-in answering on localhost: ``stand_in.url`` and ``stand_in.server`` are set while it does."""
    with VendorServer() as server:
        server.answer(stand_in)
        stand_in.url, stand_in.server = server.url, server
        yield stand_in


def write_config(folder: Path, destination: str, settings: str, lease: str = "30s", concurrency: int = 1) -> Path:
    """An outbox in ``folder`` with one destination; ``settings`` as YAML flow text (``{api_key: ...}``)."""
    config = folder / "eventmap.yaml"
    config.write_text(f"""
storage: sqlite:///{folder / 'outbox.db'}
delivery: {{lease: {lease}, timeout: 5s}}
destinations:
  {destination}:
    settings: {settings}
    limits: {{rate: 100/s, concurrency: {concurrency}}}
""", encoding="utf-8")
    return config


def enqueue(tmp_path: Path, config: Path, *events: dict) -> None:
    lines = tmp_path / f"{events[0]['messageId']}.jsonl"
    lines.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    assert main(["enqueue", str(lines), "--config", str(config)]) == 0


def deliver(config: Path) -> None:
    assert main(["deliver", "--config", str(config), "--until-idle"]) == 0


def states(tmp_path: Path) -> dict:
    """Each delivery by its event's messageId."""
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        return {r.message_id: store.get(r.id) for r in store.list(limit=1000)}


def settle(tmp_path: Path, config: Path, seconds: float = 30) -> dict:
    """Deliver until nothing is waiting (a 429's Retry-After included); the final states by messageId."""
    deliver(config)
    deadline = time.time() + seconds
    while any(r.state not in (DELIVERED, DEAD) for r in states(tmp_path).values()) and time.time() < deadline:
        time.sleep(0.5)
        deliver(config)
    return states(tmp_path)


def kill_deliver_while_hanging(stand_in, config: Path, hangs: Callable[[Received], bool]) -> None:
    """Run ``eventmap deliver`` in its own process; the first request ``hangs`` says yes to is recorded by
    the stand-in, but its answer never comes: the process is killed (SIGKILL) waiting for it."""
    hung = threading.Event()

    def answer(received: Received) -> Answer:
        given = stand_in(received)
        if not hung.is_set() and hangs(received):
            hung.set()
            return Answer(given.status, given.body, delay=30)
        return given
    stand_in.server.answer(answer)

    worker = subprocess.Popen([sys.executable, "-m", "engine", "deliver", "--config", str(config), "--progress", "0"],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert hung.wait(60), "deliver never made the request to hang on"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
