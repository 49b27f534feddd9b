"""The CLI as an operator meets it (issue 17): options on either side of the action, the store each
command names and never creates by accident, dry_run, --version, a port in use, batch's summary on a
terminal, and the log lines a failing vendor and a dead letter leave behind."""
from __future__ import annotations

import errno
import importlib.metadata
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from conftest import REPO, write_mappings
from serve_harness import Server, environment, wait_for, write_config
from vendor_server import Answer, VendorServer

from engine.cli import main
from engine.store import DEAD, DELIVERED, DRY_RUN, Finish, open_store

TOKEN = "hook-token-5d1e9a"

HOOK = """\
name: Hook
settings:
  type: object
  required: [base, token]
  properties:
    base: {type: string}
    token: {type: string, secret: true}
limits: {concurrency: 1}
actions:
  track:
    request:
      url: "{{ settings.base }}/track"
      headers: {Authorization: "Bearer {{ settings.token }}"}
    body:
      messageId: {"@path": event.messageId}
      event: {"@path": event.event}
"""


def eventmap(*args, cwd: Path, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**(env or os.environ), "PYTHONPATH": str(REPO)}, input=input)


def track(message_id: str, name: str = "Signed Up") -> str:
    return json.dumps({"type": "track", "event": name, "userId": "u1", "messageId": message_id,
                       "timestamp": "2024-01-01T00:00:00Z"})


def hook_project(folder: Path, base: str, more: str = "") -> Path:
    """./mappings with the Hook destination and a configuration whose store is outbox.db next to it."""
    write_mappings(folder, {"hook.yaml": HOOK})
    config = folder / "eventmap.yaml"
    config.write_text(textwrap.dedent(f"""\
        mappings: mappings
        storage: sqlite:///outbox.db
        delivery: {{backoff: 0.2s, max_backoff: 0.2s}}
        destinations:
          hook:
            settings: {{base: "{base}", token: {TOKEN}}}
        """) + textwrap.dedent(more), encoding="utf-8")
    return config


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A configuration and its store (two events queued), used from an empty folder elsewhere, so a
    command that ignored --config would open (and create) ./eventmap.db there."""
    config = hook_project(tmp_path / "project", "http://127.0.0.1:9")
    events = tmp_path / "project" / "events.jsonl"
    events.write_text(track("m-1") + "\n" + track("m-2") + "\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["enqueue", str(events), "--config", str(config)]) == 0
    return config


# --------------------------------------------------------------------------- options and the store named

@pytest.mark.parametrize("before", [True, False], ids=["options-before-the-action", "options-after-the-action"])
def test_every_deliveries_and_db_action_reads_the_store_its_options_name(project, capsys, before):
    store_path = project.parent / "outbox.db"

    def run(*words, extra=()):
        options = ["--config", str(project)]
        group, action, *rest = words
        argv = [group, *options, action, *rest, *extra] if before else [group, action, *rest, *extra, *options]
        code = main(argv)
        captured = capsys.readouterr()
        assert f"eventmap: store {store_path}" in captured.err.splitlines(), captured.err
        return code, captured

    code, captured = run("deliveries", "counts")
    assert code == 0 and re.search(r"^hook\s+2\s", captured.out, re.M), captured.out
    code, captured = run("deliveries", "list")
    listed = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 0 and [d["messageId"] for d in listed] == ["m-1", "m-2"]
    code, captured = run("deliveries", "show", str(listed[1]["id"]))
    assert code == 0 and json.loads(captured.out)["event"]["messageId"] == "m-2"
    with open_store(f"sqlite:///{store_path}") as store:   # make one a dead letter to retry
        lease = store.lease("hook", 1, "test", time.time(), 60)
        store.finish([Finish(lease[0].id, DEAD, reason="test")], "test", time.time())
    code, captured = run("deliveries", "retry")
    assert code == 0 and "1 dead deliveries queued again" in captured.err
    code, captured = run("db", "status")
    assert code == 0 and "is at schema version" in captured.out
    code, captured = run("db", "upgrade")
    assert code == 0
    assert not (Path.cwd() / "eventmap.db").exists()


def test_store_given_by_url_before_the_action(project, capsys):
    url = f"sqlite:///{project.parent / 'outbox.db'}"
    assert main(["deliveries", "--store", url, "list", "--state", "queued"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    assert f"eventmap: store {project.parent / 'outbox.db'}" in captured.err


@pytest.mark.parametrize("command", [
    ["deliveries"], ["deliveries", "counts"], ["deliveries", "list"], ["deliveries", "show", "1"],
    ["deliveries", "retry"], ["db", "status"], ["deliver", "--until-idle"],
])
def test_a_command_that_only_reads_or_delivers_never_creates_a_store(tmp_path, command):
    config = hook_project(tmp_path, "http://127.0.0.1:9")
    done = eventmap(*command, "--config", config, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and f"no store at {tmp_path / 'outbox.db'}" in lines[0], done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "outbox.db").exists()
    assert not (tmp_path / "eventmap.db").exists()


def test_db_upgrade_and_enqueue_create_the_store(tmp_path):
    config = hook_project(tmp_path, "http://127.0.0.1:9")
    done = eventmap("db", "upgrade", "--config", config, cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "outbox.db").exists()
    (tmp_path / "outbox.db").unlink()
    done = eventmap("enqueue", "-", "--config", config, cwd=tmp_path, input=track("m-1") + "\n")
    assert done.returncode == 0 and f"eventmap: store {tmp_path / 'outbox.db'}" in done.stderr
    assert (tmp_path / "outbox.db").exists()


def test_a_postgresql_store_is_named_with_its_password_masked(postgres_url, tmp_path, capsys):
    parts = urlsplit(postgres_url)
    password = "pw-never-shown-8c1f"   # the local server trusts everyone, so any password connects
    user, _, host = parts.netloc.rpartition("@")
    url = urlunsplit(parts._replace(netloc=f"{user.split(':')[0]}:{password}@{host}"))
    assert main(["db", "--store", url, "upgrade"]) == 0
    assert main(["deliveries", "counts", "--store", url]) == 0
    captured = capsys.readouterr()
    assert f"eventmap: store postgresql://{user.split(':')[0]}:***@{host}" in captured.err
    assert password not in captured.err + captured.out


# --------------------------------------------------------------------------- dry_run

def test_dry_run_deliveries_are_recorded_as_dry_run_not_delivered(project, capsys):
    assert main(["deliver", "--config", str(project), "--until-idle", "--dry-run"]) == 0
    captured = capsys.readouterr()
    printed = [json.loads(line) for line in captured.out.splitlines()]
    assert sorted(m for p in printed for m in p["messageIds"]) == ["m-1", "m-2"]
    assert TOKEN not in captured.out + captured.err
    assert main(["deliveries", "list", "--config", str(project), "--state", DRY_RUN]) == 0
    assert [json.loads(line)["state"] for line in capsys.readouterr().out.splitlines()] == [DRY_RUN, DRY_RUN]
    assert main(["deliveries", "list", "--config", str(project), "--state", DELIVERED]) == 0
    assert capsys.readouterr().out == ""


def test_the_server_counts_dry_run_deliveries_apart_from_delivered_ones(tmp_path):
    config = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    with Server(tmp_path, "--config", str(config), "--dry-run", env=environment()) as server:
        answer = server.post("/v1/track", {"userId": "u1", "event": "Signed Up", "messageId": "dry-1"})
        assert answer.status_code == 200, answer.text

        def metrics():
            text = requests.get(server.url + "/metrics", timeout=5).text
            return text if 'eventmap_dry_run{destination="planhat"} 1' in text else None
        text = wait_for(metrics, 20, "the dry-run delivery in /metrics")
        assert 'eventmap_delivered{destination="planhat"} 0' in text
        assert 'eventmap_deliveries{destination="planhat",state="dry_run"} 1' in text


# --------------------------------------------------------------------------- --version, port in use

def test_version():
    done = eventmap("--version", cwd=REPO)
    assert done.returncode == 0
    assert done.stdout.strip() == f"eventmap {importlib.metadata.version('eventmap')}"


@pytest.mark.parametrize("with_config", [False, True], ids=["demo", "configured"])
def test_a_port_in_use_is_one_line_and_exit_1_before_anything_is_created(tmp_path, with_config):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    args = ["serve", "--port", port]
    if with_config:
        args += ["--config", write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")]
    try:
        done = eventmap(*args, cwd=tmp_path, env=environment())
    finally:
        taken.close()
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"eventmap serve: cannot listen on 127.0.0.1:{port}: the port is in use "
                                        "(is another server running? choose another with --port)"]
    assert not (tmp_path / "eventmap.db").exists() and not (tmp_path / "events.db").exists()


# --------------------------------------------------------------------------- batch: a summary on a terminal

def on_a_terminal(*args, cwd: Path) -> tuple[int, str, str]:
    """Run with stdout on a pseudo-terminal (as a person sees it) and stderr piped."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd, stdout=follower,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            process.kill()
            raise AssertionError("no output from the terminal within 60s")
        try:
            chunk = os.read(leader, 65536)
        except OSError as exc:   # Linux: EIO once the child has closed the terminal
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    err = process.stderr.read()
    process.wait(30)
    return process.returncode, b"".join(chunks).decode().replace("\r\n", "\n"), err


def test_batch_on_a_terminal_prints_a_summary_and_piped_prints_json_lines():
    args = ["batch", "fixtures/sample-events.jsonl", "--config", "fixtures/eventmap.demo.yaml"]
    piped = eventmap(*args, cwd=REPO)
    assert piped.returncode == 0
    outcomes = [json.loads(line) for line in piped.stdout.splitlines()]
    counts: dict[tuple[str, str], int] = {}
    for o in outcomes:
        counts[o["destination"], o["status"]] = counts.get((o["destination"], o["status"]), 0) + 1
    rejected = [o for o in outcomes if o["status"] == "rejected"]
    assert rejected, "the sample events include bad ones, so the summary has rejections to show"

    code, out, err = on_a_terminal(*args, cwd=REPO)
    assert code == 0, err
    assert not any(line.startswith("{") for line in out.splitlines())
    lines = out.splitlines()
    events = len({o["line"] for o in outcomes})
    assert lines[0] == f"{events} events, 4 destinations:"
    assert lines[1].split() == ["destination", "send", "skipped", "rejected"]
    for line in lines[2:6]:
        name, *numbers = line.split()
        assert [int(n) for n in numbers] == [counts.get((name, s), 0) for s in ("send", "skipped", "rejected")]
    assert f"{len(rejected)} rejected;" in out
    first = rejected[0]
    assert f"  line {first['line']}, {first['destination']}: {first['reason']}" in out
    assert first["errors"][0]["message"] in out
    assert "--json" in out

    code, out, _ = on_a_terminal(*args, "--json", cwd=REPO)
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == outcomes


# --------------------------------------------------------------------------- logs

def start_deliver(config: Path) -> tuple[subprocess.Popen, Path]:
    log = config.parent / f"deliver-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "engine", "deliver", "--config", str(config)],
                                   cwd=config.parent, stdout=subprocess.DEVNULL, stderr=out,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return process, log


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.wait(30)


def failing_then_recovering(vendor: VendorServer) -> None:
    """The vendor answers 500 three times, then 200; an event called Bad it refuses for good (400)."""
    vendor.answer(Answer(500, {"error": "overloaded"}), when=lambda r: r.body.get("event") != "Bad", times=3)
    vendor.answer(Answer(400, {"error": "no such event"}), when=lambda r: r.body.get("event") == "Bad")


def deliver_through_a_failing_vendor(tmp_path: Path, logging_section: str) -> str:
    with VendorServer() as vendor:
        failing_then_recovering(vendor)
        config = hook_project(tmp_path, vendor.url, logging_section)
        events = track("m-good") + "\n" + track("m-bad", "Bad") + "\n"
        assert eventmap("enqueue", "-", "--config", config, cwd=tmp_path, input=events).returncode == 0
        process, log = start_deliver(config)
        try:
            wait_for(lambda: "m-good" in vendor.delivered_ids(), 30, "the event delivered after the 500s")
            wait_for(lambda: "sent 1" in log.read_text(), 10, "the interval line counting it")
        finally:
            stop(process)
        text = log.read_text()
    assert process.returncode == 0, text
    assert TOKEN not in text and "Traceback" not in text
    return text


def test_a_failing_vendor_and_a_dead_letter_are_logged(tmp_path):
    text = deliver_through_a_failing_vendor(tmp_path, "logging: {every: 0.3s}\n")
    lines = text.splitlines()
    failing = [line for line in lines if "hook is failing" in line]
    recovered = [line for line in lines if "hook recovered" in line]
    assert len(failing) == 1 and "WARNING" in failing[0] and "Hook answered 500" in failing[0], text
    assert len(recovered) == 1 and "WARNING" in recovered[0] and "after 3 failed requests" in recovered[0], text
    assert lines.index(failing[0]) < lines.index(recovered[0])
    dead = [line for line in lines if "dead letter" in line]
    assert len(dead) == 1 and "(messageId m-bad)" in dead[0] and "400 is final" in dead[0], text
    assert "Hook answered 400" in dead[0]
    reports = [line for line in lines if re.search(r"INFO eventmap.deliver: hook: sent \d+, failed \d+, retrying \d+, "
                                                    r"dead \d+ in the last 0.3s", line)]
    assert reports, text
    totals = [sum(int(re.search(rf"{word} (\d+)", line).group(1)) for line in reports) for word in ("sent", "dead")]
    assert totals == [1, 1], text
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        assert {r.message_id: r.state for r in store.list()} == {"m-good": DELIVERED, "m-bad": DEAD}


def test_json_logs_are_one_json_object_a_line(tmp_path):
    text = deliver_through_a_failing_vendor(tmp_path, "logging: {format: json, level: info, every: 0.3s}\n")
    records = [json.loads(line) for line in text.splitlines()]   # every line, or this fails
    kinds = [r.get("event") for r in records]
    assert {"failing", "recovered", "dead_letter", "delivery_report"} <= set(kinds), records
    dead = next(r for r in records if r.get("event") == "dead_letter")
    assert dead["level"] == "warning" and dead["messageId"] == "m-bad" and dead["destination"] == "hook"
    assert any(r.get("store") == str(tmp_path / "outbox.db") for r in records)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)


def test_the_server_log_says_when_a_vendor_fails_recovers_and_an_event_goes_dead(tmp_path):
    with VendorServer() as vendor:
        failing_then_recovering(vendor)
        hook = f'hook:\n  settings: {{base: "{vendor.url}", token: {TOKEN}}}\n'
        config = write_config(tmp_path, vendor.url, "http://127.0.0.1:9", hook)
        config.write_text("mappings: mappings\nlogging: {every: 0.3s}\n" + config.read_text(), encoding="utf-8")
        shutil.copytree(REPO / "mappings", tmp_path / "mappings")   # the shipped files, and Hook beside them
        write_mappings(tmp_path, {"hook.yaml": HOOK})
        with Server(tmp_path, "--config", str(config), env=environment()) as server:
            for message_id, name in (("s-good", "Signed Up"), ("s-bad", "Bad")):
                answer = server.post("/v1/track", {"userId": "u1", "event": name, "messageId": message_id})
                assert answer.status_code == 200, answer.text
            wait_for(lambda: "hook recovered" in server.output() and "dead letter" in server.output(), 30,
                     "the recovery and the dead letter in the server log")
            output = server.output()
    assert "hook is failing: Hook answered 500" in output
    assert re.search(r"hook: dead letter \d+ \(messageId s-bad\): 400 is final", output)
    assert TOKEN not in output
