"""``eventmap deliver`` as a real process: a clean stop on SIGTERM, and nothing lost on SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import DELIVERED, PENDING, open_store

from vendor_server import Answer, VendorServer

EVENTS = 200


def write_setup(folder: Path, url: str, lease: str = "1s") -> Path:
    config = folder / "eventmap.yaml"
    config.write_text(f"""
storage: sqlite:///outbox.db
delivery: {{lease: {lease}, timeout: 5s}}
destinations:
  segment:
    settings: {{write_key: process-test-key, base_url: "{url}"}}
    limits: {{batch: false, concurrency: 2}}
""", encoding="utf-8")
    lines = [f'{{"type": "track", "event": "Tick", "userId": "u{n}", "messageId": "m-{n:04d}"}}' for n in range(EVENTS)]
    (folder / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def eventmap(*args, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)


def run(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def states(folder: Path) -> dict[str, str]:
    with open_store(f"sqlite:///{folder / 'outbox.db'}") as store:
        return {r.message_id: r.state for r in store.list(limit=10_000)}


@pytest.fixture
def slow_vendor():
    with VendorServer() as server:
        server.answer(Answer(200, delay=0.01))
        yield server


def test_sigkill_mid_run_loses_nothing(tmp_path, slow_vendor):
    config = write_setup(tmp_path, slow_vendor.url)
    assert run("enqueue", "events.jsonl", "--config", str(config), cwd=tmp_path).returncode == 0

    first = eventmap("deliver", "--config", str(config), "--progress", "0", cwd=tmp_path)
    wait_until(lambda: len(slow_vendor.received) >= 40)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    before = states(tmp_path)
    assert 0 < sum(s == DELIVERED for s in before.values()) < EVENTS

    time.sleep(1.1)  # the killed worker's leases (1s) expire; nobody else may take them earlier
    second = run("deliver", "--config", str(config), "--until-idle", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    after = states(tmp_path)
    assert set(after.values()) == {DELIVERED}
    expected = {f"m-{n:04d}" for n in range(EVENTS)}
    assert set(slow_vendor.delivered_ids()) == expected  # at least once each
    # at most the requests in flight when the process died were sent twice
    assert len(slow_vendor.delivered_ids()) - EVENTS <= 2


def test_sigterm_finishes_what_is_in_flight_and_stops_cleanly(tmp_path, slow_vendor):
    config = write_setup(tmp_path, slow_vendor.url, lease="60s")
    assert run("enqueue", "events.jsonl", "--config", str(config), cwd=tmp_path).returncode == 0
    process = eventmap("deliver", "--config", str(config), "--progress", "0.2", cwd=tmp_path)
    wait_until(lambda: len(slow_vendor.received) >= 20)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "stopped cleanly" in err and "segment:" in err and "delivered" in err
    assert "Traceback" not in err
    now = states(tmp_path)
    sent = set(slow_vendor.delivered_ids())
    # every request the vendor saw is recorded delivered; the rest wait, unleased, for the next run
    assert {m for m, s in now.items() if s == DELIVERED} == sent
    assert all(s in PENDING for m, s in now.items() if m not in sent)
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        assert "in_flight" not in store.counts(time.time())["segment"]
    # a lease of 60s would stall a restart if SIGTERM had left leases behind
    assert run("deliver", "--config", str(config), "--until-idle", cwd=tmp_path).returncode == 0
    assert set(states(tmp_path).values()) == {DELIVERED}
    assert len(slow_vendor.delivered_ids()) == EVENTS
