"""Several ``eventmap deliver`` processes on one store, draining one queue to a local HTTP sink.

Real parts throughout: the eventmap command in separate processes, a real
threaded HTTP server recording every messageId it is sent (in batches of 20,
to keep the run short), and a PostgreSQL database. Nothing fails: each event
arrives exactly once. A worker SIGKILLed mid-run: its leases run out (1s)
and the others deliver its work; nothing is lost.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import REPO, write_mappings
from engine.store import NewDelivery, NewEvent

EVENTS = 2000
WORKERS = 3

SINK = """\
name: Sink
settings:
  type: object
  required: [base]
  properties:
    base: {type: string}
limits: {concurrency: 2}
batch:
  max_events: 20
  request:
    url: "{{ settings.base }}/batch"
  envelope:
    body:
      batch: {"@path": items}
actions:
  track:
    request:
      url: "{{ settings.base }}/track"
    body:
      messageId: {"@path": event.messageId}
      event: {"@path": event.event}
      user: {"@path": event.userId}
"""


class Sink:
    """A local vendor: answers 200 after ``delay`` seconds and counts each messageId it is sent."""

    def __init__(self, delay: float = 0.0):
        self.received: Counter[str] = Counter()
        self.requests = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real vendor
            wbufsize = 1 << 16  # one write per answer: no 40ms Nagle/delayed-ACK stall per request
            disable_nagle_algorithm = True

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if delay:
                    time.sleep(delay)
                with sink.lock:
                    sink.requests += 1
                    for item in body.get("batch", [body]):
                        sink.received[item["messageId"]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def distinct(self) -> int:
        with self.lock:
            return len(self.received)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink():
    server = Sink()
    yield server
    server.close()


def eventmap(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


class Worker:
    """An ``eventmap deliver`` process; its stderr (a log line every 0.2s while it sends) read as it comes."""

    def __init__(self, config: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine", "deliver", "--config", str(config), "--progress", "0.2"],
            cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True)
        self.reader.start()

    def delivered(self) -> int:
        """What it said it sent so far: the sum of its per-interval log lines."""
        return sum(int(n) for n in re.findall(r"sink: sent (\d+)", "".join(self.lines)))

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        self.reader.join(10)
        return "".join(self.lines)


def configure(tmp_path: Path, backend, sink: Sink, lease: str) -> Path:
    write_mappings(tmp_path, {"sink.yaml": SINK})
    config = tmp_path / "eventmap.yaml"
    storage = {"url": backend.url, "pool_size": 3} if backend.name == "postgres" else backend.url
    config.write_text(json.dumps({
        "mappings": "mappings", "storage": storage,
        "delivery": {"lease": lease, "timeout": "5s", "backoff": "0.1s"},
        "destinations": {"sink": {"settings": {"base": sink.url}}},
    }), encoding="utf-8")
    return config


def track(i: int) -> dict:
    return {"type": "track", "event": "Signed Up", "userId": f"u{i % 50}", "messageId": f"m{i}",
            "timestamp": "2024-01-01T00:00:00Z"}


def enqueue_with_the_cli(config: Path) -> None:
    """What an operator does on a new PostgreSQL database: upgrade (twice at once here), then two
    collectors enqueue half the events each, at the same time."""
    refused = eventmap("deliver", "--config", str(config), "--until-idle", cwd=config.parent)
    assert refused.returncode == 1 and "run 'eventmap db upgrade'" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    upgrades = [subprocess.Popen([sys.executable, "-m", "engine", "db", "upgrade", "--config", str(config)],
                                 cwd=config.parent, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    assert all(p.wait(60) == 0 for p in upgrades), [p.stderr.read() for p in upgrades]
    halves = []
    for half in range(2):
        path = config.parent / f"events-{half}.jsonl"
        path.write_text("".join(json.dumps(track(i)) + "\n" for i in range(half, EVENTS, 2)), encoding="utf-8")
        halves.append(subprocess.Popen([sys.executable, "-m", "engine", "enqueue", path.name, "--config", str(config)],
                                       cwd=config.parent, stderr=subprocess.PIPE, text=True))
    assert all(p.wait(120) == 0 for p in halves), [p.stderr.read() for p in halves]


def enqueue_in_process(backend) -> None:
    with backend.open(upgrade=True) as store:
        store.accept([NewEvent(track(i), f"m{i}", [NewDelivery("sink")]) for i in range(EVENTS)], time.time())


def wait_until_delivered(backend, workers, deadline: float) -> dict:
    with backend.open(upgrade=False) as store:
        while time.monotonic() < deadline:
            counts = store.counts(time.time()).get("sink", {})
            if counts.get("delivered", 0) == EVENTS:
                return counts
            assert any(w.process.poll() is None for w in workers), "every worker exited"
            time.sleep(0.1)
        return store.counts(time.time()).get("sink", {})


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_several_workers_deliver_each_event_exactly_once(tmp_path, backend, sink):
    config = configure(tmp_path, backend, sink, lease="30s")
    enqueue_with_the_cli(config)
    workers = [Worker(config) for _ in range(WORKERS)]
    try:
        counts = wait_until_delivered(backend, workers, time.monotonic() + 60)
    finally:
        logs = [w.stop() for w in workers]
    assert counts == {"delivered": EVENTS}, logs
    assert len(sink.received) == EVENTS
    assert sink.received.most_common(1)[0][1] == 1  # exactly once each
    assert all(w.process.returncode == 0 and "stopped cleanly" in log for w, log in zip(workers, logs)), logs
    shares = [int(log.rsplit("sink: ", 1)[1].split(" delivered")[0]) for log in logs]
    assert sum(shares) == EVENTS and sum(1 for s in shares if s) > 1  # they really did share the queue


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_worker_killed_mid_run_loses_nothing(tmp_path, backend, sink):
    config = configure(tmp_path, backend, sink, lease="1s")
    enqueue_in_process(backend)
    # The victim starts alone and is killed once it says it has delivered some: started together, the
    # others sometimes drained the queue before the victim's first progress line, and nothing was mid-run.
    victim = Worker(config)
    workers = [victim]
    try:
        deadline = time.monotonic() + 60
        while victim.delivered() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        workers += [Worker(config) for _ in range(WORKERS - 1)]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        left_at_kill = EVENTS - sink.distinct()
        counts = wait_until_delivered(backend, workers[1:], time.monotonic() + 60)
    finally:
        logs = [w.stop() for w in workers]
    assert victim.process.returncode == -signal.SIGKILL
    assert victim.delivered() > 0 and left_at_kill > 0  # it died mid-run
    assert counts == {"delivered": EVENTS}, logs
    assert set(sink.received) == {f"m{i}" for i in range(EVENTS)}  # none lost; a few may have come twice
    assert all(w.process.returncode == 0 for w in workers[1:]), logs
