"""``eventmap replay`` with real parts: the command in its own processes, a local stand-in vendor
(tests/vendor_server.py), and both stores (``backend`` fixture: SQLite and PostgreSQL).

The archive holds what was accepted; a replay sends it again through the mapping as it is *today*
(changed since the first delivery: the stand-in sees the new shape), exactly once per event per replay,
even when the replay is SIGKILLed midway and run again. A dry run sends and writes nothing.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, write_mappings
from vendor_server import VendorServer

from engine.durations import describe_time
from engine.store import REPLAY_DONE, REPLAY_RUNNING, open_store

STAND_IN = """\
name: Stand-in
settings:
  type: object
  required: [base]
  properties:
    base: {{type: string}}
batch:
  max_events: 100
  request:
    url: "{{{{ settings.base }}}}/batch"
  envelope:
    body:
      batch: {{"@path": items}}
actions:
  track:
    request:
      url: "{{{{ settings.base }}}}/track"
    body:
{body}
"""
# the mapping when the events were first delivered, and as it is at the replay
FIRST_SHAPE = """\
      messageId: {"@path": event.messageId}
      name: {"@path": event.event}
"""
TODAY_SHAPE = """\
      messageId: {"@path": event.messageId}
      event_name: {"@path": event.event}
      plan: {"@path": event.properties.plan}
"""


def write_setup(folder: Path, backend, vendor: VendorServer, shape: str = FIRST_SHAPE) -> Path:
    write_mappings(folder, {"standin.yaml": STAND_IN.format(body=shape)})
    config = folder / "eventmap.yaml"
    config.write_text(json.dumps({
        "mappings": "mappings", "storage": backend.url,
        "delivery": {"lease": "2s", "timeout": "5s", "backoff": "0.1s"},
        "destinations": {"standin": {"settings": {"base": vendor.url}}},
    }), encoding="utf-8")
    backend.open(upgrade=True).close()   # PostgreSQL is upgraded by 'eventmap db upgrade'; SQLite on open
    return config


def events_file(folder: Path, count: int) -> Path:
    path = folder / "events.jsonl"
    path.write_text("".join(json.dumps({"type": "track", "event": "Plan Chosen", "userId": f"u{n % 7}",
                                        "messageId": f"m-{n:05d}", "properties": {"plan": f"p{n % 3}"}}) + "\n"
                            for n in range(count)), encoding="utf-8")
    return path


def eventmap(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def accepted_window(config: Path, events: Path) -> tuple[str, str]:
    """Enqueue the events; the --since and --until that hold exactly them (absolute times)."""
    before = time.time()
    ok(eventmap("enqueue", str(events), "--config", str(config), cwd=config.parent))
    return describe_time(before - 1), describe_time(time.time() + 1)


def bodies(vendor: VendorServer) -> list[dict]:
    """Every event body the stand-in accepted, batches opened."""
    with vendor.lock:
        return [item for r in vendor.received for item in (r.body.get("batch", [r.body]))]


# --------------------------------------------------------------------------- through today's mapping

def test_a_replay_sends_each_event_once_more_in_the_shape_the_mapping_has_today(tmp_path, backend):
    with VendorServer() as vendor:
        config = write_setup(tmp_path, backend, vendor)
        since, until = accepted_window(config, events_file(tmp_path, 120))
        ok(eventmap("deliver", "--config", str(config), "--until-idle", cwd=tmp_path))
        first = bodies(vendor)
        assert len(first) == 120 and all(set(b) == {"messageId", "name"} for b in first)

        write_mappings(tmp_path, {"standin.yaml": STAND_IN.format(body=TODAY_SHAPE)})   # the mapping changes
        replayed = ok(eventmap("replay", "--config", str(config), "--since", since, "--until", until, cwd=tmp_path))
        record = json.loads(replayed.stdout)
        assert record["state"] == REPLAY_DONE and record["events"] == 120
        assert record["counts"]["standin"] | {"reasons": {}} == {"replayed": 120, "skipped": 0, "rejected": 0,
                                                                 "reasons": {}}
        assert "dedupe window (1d) is bypassed on purpose" in replayed.stderr
        ok(eventmap("deliver", "--config", str(config), "--until-idle", cwd=tmp_path))

    again = bodies(vendor)[120:]
    assert Counter(b["messageId"] for b in again) == {f"m-{n:05d}": 1 for n in range(120)}
    assert all(set(b) == {"messageId", "event_name", "plan"} for b in again)
    assert {b["messageId"]: b["plan"] for b in again}["m-00004"] == "p1"


def test_a_dry_run_prints_what_would_be_sent_and_sends_and_writes_nothing(tmp_path, backend):
    with VendorServer() as vendor:
        config = write_setup(tmp_path, backend, vendor)
        since, until = accepted_window(config, events_file(tmp_path, 30))
        ok(eventmap("deliver", "--config", str(config), "--until-idle", cwd=tmp_path))
        with open_store(backend.url) as store:
            before = store.counts(time.time())
        write_mappings(tmp_path, {"standin.yaml": STAND_IN.format(body=TODAY_SHAPE)})

        dry = eventmap("replay", "--config", str(config), "--since", since, "--until", until, "--dry-run",
                       "--where", "properties.plan == 'p2'", cwd=tmp_path)
        ok(dry)
        lines = [json.loads(line) for line in dry.stdout.splitlines()]
        assert [line["messageId"] for line in lines] == [f"m-{n:05d}" for n in range(30) if n % 3 == 2]
        assert lines[0]["requests"][0]["body"] == {"messageId": "m-00002", "event_name": "Plan Chosen", "plan": "p2"}
        assert "dry run (nothing written): 30 archived events" in dry.stderr and "10 matching --where" in dry.stderr
        ok(eventmap("deliver", "--config", str(config), "--until-idle", cwd=tmp_path))

        assert len(bodies(vendor)) == 30   # the first delivery only
        with open_store(backend.url) as store:
            assert store.counts(time.time()) == before
            assert store.replays() == []


# --------------------------------------------------------------------------- today's tracking plan

PLAN = """\
name: plans
events:
  Plan Chosen:
    properties:
      type: object
      required: [plan]
      properties:
        plan: {enum: [p0, p1]}
"""


def test_todays_tracking_plan_rejects_a_replayed_event_it_blocks_with_the_plans_reasons(tmp_path, backend):
    """The events came in (enqueue --source web) before web had a plan; today's plan blocks those with plan p2:
    a replay of web's events rejects them, with the plan's reason and errors, and sends the others again."""
    with VendorServer() as vendor:
        config = write_setup(tmp_path, backend, vendor)
        settings = json.loads(config.read_text(encoding="utf-8"))
        settings["sources"] = {"web": {"write_key": "key-web"}}
        config.write_text(json.dumps(settings), encoding="utf-8")
        before = time.time()
        ok(eventmap("enqueue", str(events_file(tmp_path, 30)), "--config", str(config), "--source", "web",
                    cwd=tmp_path))
        since, until = describe_time(before - 1), describe_time(time.time() + 1)
        ok(eventmap("deliver", "--config", str(config), "--until-idle", cwd=tmp_path))
        assert len(bodies(vendor)) == 30

        (tmp_path / "plan.yaml").write_text(PLAN, encoding="utf-8")
        settings["sources"]["web"]["plan"] = {"file": "plan.yaml", "unplanned": "block", "invalid": "block"}
        config.write_text(json.dumps(settings), encoding="utf-8")
        replayed = eventmap("replay", "--config", str(config), "--since", since, "--until", until, "--source", "web",
                            cwd=tmp_path)
        assert replayed.returncode == 2 and "Traceback" not in replayed.stderr, replayed.stderr
        counts = json.loads(replayed.stdout)["counts"]["standin"]
        assert (counts["replayed"], counts["skipped"], counts["rejected"]) == (20, 0, 10)
        assert counts["reasons"] == {"the event breaks the source's tracking plan": 10}
        with open_store(backend.url) as store:
            rejected = store.list("standin", state="rejected", limit=50)
        assert sorted(r.message_id for r in rejected) == [f"m-{n:05d}" for n in range(30) if n % 3 == 2]
        assert all(r.reason == "the event breaks the source's tracking plan" and r.errors[0]["path"] ==
                   "properties.plan" for r in rejected)
        ok(eventmap("deliver", "--config", str(config), "--until-idle", cwd=tmp_path))

    again = bodies(vendor)[30:]
    assert sorted(b["messageId"] for b in again) == [f"m-{n:05d}" for n in range(30) if n % 3 != 2]


def test_a_replay_sends_what_todays_plan_leaves_of_an_event_and_the_archive_keeps_it_whole(tmp_path, backend):
    """Today's plan drops the plan property where it is p2: the replayed deliveries send the events without
    it, the archive still holds them as accepted, and a second replay finds the same thirty events."""
    with VendorServer() as vendor:
        config = write_setup(tmp_path, backend, vendor, TODAY_SHAPE)
        settings = json.loads(config.read_text(encoding="utf-8"))
        settings["sources"] = {"web": {"write_key": "key-web"}}
        config.write_text(json.dumps(settings), encoding="utf-8")
        before = time.time()
        ok(eventmap("enqueue", str(events_file(tmp_path, 30)), "--config", str(config), "--source", "web",
                    cwd=tmp_path))
        since, until = describe_time(before - 1), describe_time(time.time() + 1)
        ok(eventmap("deliver", "--config", str(config), "--until-idle", cwd=tmp_path))

        (tmp_path / "plan.yaml").write_text(PLAN, encoding="utf-8")
        settings["sources"]["web"]["plan"] = {"file": "plan.yaml", "unplanned": "block", "invalid": "drop_properties"}
        config.write_text(json.dumps(settings), encoding="utf-8")
        window = ("--config", str(config), "--since", since, "--until", until)
        dry = ok(eventmap("replay", *window, "--dry-run", cwd=tmp_path))
        shown = [json.loads(line) for line in dry.stdout.splitlines() if line.startswith('{"line"')
                 or '"requests"' in line]
        assert shown and all(("p2" in json.dumps(o)) is False for o in shown), dry.stdout[:2000]
        replayed = json.loads(ok(eventmap("replay", *window, cwd=tmp_path)).stdout)
        assert replayed["counts"]["standin"]["replayed"] == 30
        ok(eventmap("deliver", "--config", str(config), "--until-idle", cwd=tmp_path))
        again = {b["messageId"]: b for b in bodies(vendor)[30:]}
        assert len(again) == 30
        assert all("plan" not in again[f"m-{n:05d}"] for n in range(30) if n % 3 == 2)
        assert all(again[f"m-{n:05d}"]["plan"] == f"p{n % 3}" for n in range(30) if n % 3 != 2)

        with open_store(backend.url) as store:   # the archive keeps each event as it was accepted
            archived = store.archived(0, 10**12, 0, time.time() + 60, None, 100)
        assert sorted(a.event["properties"]["plan"] for a in archived) == sorted(f"p{n % 3}" for n in range(30))
        second = json.loads(ok(eventmap("replay", *window, cwd=tmp_path)).stdout)
        assert second["counts"]["standin"]["replayed"] == 30   # the copies sent are not archived events


# --------------------------------------------------------------------------- killed midway

def test_a_replay_sigkilled_midway_and_run_again_enqueues_each_event_once(tmp_path, backend):
    count = 12_000   # 24 chunks: the kill lands between the first and the last
    with VendorServer() as vendor:
        config = write_setup(tmp_path, backend, vendor)
        since, until = accepted_window(config, events_file(tmp_path, count))
        command = ("replay", "--config", str(config), "--since", since, "--until", until)
        process = subprocess.Popen([sys.executable, "-m", "engine", *command], cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
        with open_store(backend.url) as store:
            deadline = time.monotonic() + 60
            while True:   # freeze it as soon as it has written a chunk, wherever it is in the next one
                found = store.replays()
                if found and found[0].after_id >= found[0].first_id:
                    process.send_signal(signal.SIGSTOP)
                    break
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the replay wrote nothing in time"
                time.sleep(0.002)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            [killed] = store.replays()
            assert killed.state == REPLAY_RUNNING and 0 < killed.events < count

            rerun = ok(eventmap(*command, cwd=tmp_path))
            assert f"replay {killed.id} of the same range and filters is unfinished" in rerun.stderr
            assert "resuming it" in rerun.stderr
            [done] = store.replays()
            assert (done.id, done.state, done.events, done.counts["standin"]["replayed"]) == \
                (killed.id, REPLAY_DONE, count, count)
            per_event = Counter(r.event_id for r in store.list("standin", limit=3 * count))
            assert set(per_event.values()) == {2}   # the first delivery and the replay's, nothing twice

        ok(eventmap("deliver", "--config", str(config), "--until-idle", cwd=tmp_path, timeout=300))
    assert Counter(Counter(vendor.delivered_ids()).values()) == {2: count}


# --------------------------------------------------------------------------- the command's own rules

@pytest.fixture
def sqlite_setup(tmp_path):
    from conftest import Backend
    with VendorServer() as vendor:
        config = write_setup(tmp_path, Backend("sqlite", f"sqlite:///{tmp_path}/outbox.db"), vendor)
        yield config, accepted_window(config, events_file(tmp_path, 40)), vendor


def test_a_bad_where_is_one_line_and_a_where_failing_on_an_event_skips_only_that_event(sqlite_setup):
    config, (since, until), _ = sqlite_setup
    bad = eventmap("replay", "--config", str(config), "--since", since, "--where", "properties.plan ==", cwd=config.parent)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.splitlines()[-1] == ("--where: 'properties.plan ==' is not a valid JMESPath expression: "
                                           "Invalid jmespath expression: Incomplete expression (column 18)")

    # abs() of a string fails: the plan is a string for every event, so ask for the number in userId's place
    failing = ok_or_rejected(eventmap("replay", "--config", str(config), "--since", since, "--until", until,
                                      "--where", "abs(properties.n) > `0`", cwd=config.parent))
    counts = json.loads(failing.stdout)["counts"]["standin"]
    assert (counts["replayed"], counts["skipped"]) == (0, 40)
    [reason] = counts["reasons"]
    assert reason.startswith("--where failed for this event: JMESPathTypeError: In function abs()")


def ok_or_rejected(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    return result


def test_an_overlapping_unfinished_replay_is_refused_until_resumed_or_abandoned(sqlite_setup):
    config, (since, until), _ = sqlite_setup
    folder, store_url = config.parent, f"sqlite:///{config.parent}/outbox.db"
    with open_store(store_url) as store:   # a replay killed before it wrote anything
        from engine.store import Replay
        bounds = store.archive_bounds(0, time.time() + 10)
        store.start_replay(Replay(0, "", 0.0, time.time() + 60, None, None, None, bounds[0], bounds[1],
                                  bounds[0] - 1, owner="gone:1"), time.time())
    refused = eventmap("replay", "--config", str(config), "--since", since, "--until", until, cwd=folder)
    assert refused.returncode == 1
    assert "an unfinished replay with the same filters overlaps this range" in refused.stderr
    assert "'eventmap replay --resume 1'" in refused.stderr and "'eventmap replay --abandon 1'" in refused.stderr
    other = ok(eventmap("replay", "--config", str(config), "--since", since, "--until", until,
                        "--where", "userId == 'u1'", cwd=folder))   # other filters: another replay, no clash
    assert json.loads(other.stdout)["counts"]["standin"]["replayed"] == 6

    ok(eventmap("replay", "--config", str(config), "--abandon", "1", cwd=folder))
    started = ok(eventmap("replay", "--config", str(config), "--since", since, "--until", until, cwd=folder))
    assert json.loads(started.stdout)["replay"] == 3
    again = ok(eventmap("replay", "--config", str(config), "--since", since, "--until", until, cwd=folder))
    assert "replay 3 of the same range and filters is done already: this is a new replay" in again.stderr
    listed = [json.loads(line) for line in ok(eventmap("replay", "--config", str(config), "--list",
                                                       cwd=folder)).stdout.splitlines()]
    assert [(r["replay"], r["state"]) for r in listed] == [(4, "done"), (3, "done"), (2, "done"), (1, "abandoned")]
    assert listed[2]["where"] == "userId == 'u1'" and listed[2]["matched"] == 6
    refused = eventmap("replay", "--config", str(config), "--resume", "3", cwd=folder)
    assert refused.returncode == 1 and "no unfinished replay 3" in refused.stderr


def test_times_and_destinations_are_checked_before_anything_runs(sqlite_setup):
    config, _, _ = sqlite_setup
    for args, message in (
            (("--since", "yesterday"), "--since: expected a moment such as 2024-05-02"),
            (("--since", "1h", "--until", "2h"), "--since must be before --until (1h is not before 2h)"),
            (("--since", "1h", "--destination", "planhat"), "--destination: 'planhat' is not a destination of the "
                                                            "configuration (configured and enabled: standin)"),
            (("--until", "now"), "replay needs --since"),
            (("--resume", "1", "--since", "1h"), "--resume takes the range and filters recorded with the replay")):
        result = eventmap("replay", "--config", str(config), *args, cwd=config.parent)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_the_progress_bar_shows_on_a_terminal_only(tmp_path):
    import pty

    from conftest import Backend
    with VendorServer() as vendor:   # enough events for the bar's first redraw (a quarter of a second in)
        config = write_setup(tmp_path, Backend("sqlite", f"sqlite:///{tmp_path}/outbox.db"), vendor)
        since, until = accepted_window(config, events_file(tmp_path, 20_000))
    args = [sys.executable, "-m", "engine", "replay", "--config", str(config), "--since", since, "--until", until,
            "--dry-run"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    plain = subprocess.run(args, cwd=config.parent, capture_output=True, text=True, env=env, timeout=60)
    assert "\r" not in plain.stderr and "[" not in plain.stderr
    main, terminal = pty.openpty()
    with subprocess.Popen(args, cwd=config.parent, stdout=subprocess.DEVNULL, stderr=terminal, env=env) as process:
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        process.wait(60)
    os.close(main)
    assert b"events/s" in seen
    shares = [int(n) for n in re.findall(rb"eventmap replay: \[[#.]+\] +(\d+)%", seen)]
    assert shares and max(shares) > 0   # the bar moves
