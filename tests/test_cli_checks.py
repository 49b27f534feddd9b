"""The command line's checks (issues 22 and 26): the same options on every command, one clear line for
bad input, every problem of a run at once, and the commands that used to leave things behind or say
the wrong thing (deliveries retry, console, serve's logs)."""
from __future__ import annotations

import json
import re
import time

import pytest
import requests
from conftest import REPO, write_mappings
from serve_harness import Server, write_config
from test_cli import MINI, run, write_event

from engine.cli.parser import parse
from engine.durations import DURATION_FORMS, RATE_FORMS
from engine.store import DEAD, Finish, open_store

IDENTIFY = {"type": "identify", "userId": "u1", "messageId": "m1", "traits": {"email": "ann@example.com"}}
TRACK = {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "t1"}

# the issue's own example: three problems in one action, which used to take three runs to see
ACME = """\
name: Acme
settings:
  type: object
  required: [api_key]
  properties:
    api_key: {type: string, secret: true}
    base_url: {type: string, default: https://api.acme.example}
actions:
  track:
    request:
      url: "{{ settings.base }}/v1/events"
    body:
      name: {"@path": event.event, "@filter": snakecase}
      user: {"@path": [event.userId, event.anonymousId]}
    requird: [user]
"""


# --------------------------------------------------------------------------- validate: every problem at once

def test_validate_shows_every_problem_of_a_file_in_one_run(tmp_path):
    write_mappings(tmp_path, {"acme.yaml": ACME})
    result = run("validate", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [   # in line order, one each
        ["mappings/destinations/acme.yaml:11", "actions.track.request.url"],
        ["mappings/destinations/acme.yaml:13", "actions.track.body.name.@filter"],
        ["mappings/destinations/acme.yaml:15", "actions.track.requird"]]
    assert "unknown setting 'settings.base' (declared: api_key, base_url)" in lines[0]
    assert "unknown filter 'snakecase'" in lines[1]
    assert "unknown key 'requird'" in lines[2]


# --------------------------------------------------------------------------- the same options on every command

READS_MAPPINGS = {
    "validate": [], "render": ["planhat"], "explain": ["planhat", "event.json"], "batch": ["--destination", "x"],
    "source": ["gladly"], "enqueue": ["--config", "c.yaml"], "deliver": ["--config", "c.yaml"], "serve": [],
    "console": [],
}


@pytest.mark.parametrize("command", READS_MAPPINGS)
def test_every_command_that_reads_mapping_files_takes_mappings(command):
    args = parse([command, *READS_MAPPINGS[command], "--mappings", "elsewhere"])
    assert str(args.mappings) == "elsewhere"


def test_validate_takes_mappings_as_render_does(tmp_path):
    write_mappings(tmp_path / "mine", {"mini.yaml": MINI})
    result = run("validate", "--mappings", tmp_path / "mine" / "mappings", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 destinations (mini)")
    both = run("validate", "mappings", "--mappings", tmp_path / "mine" / "mappings", cwd=tmp_path)
    assert both.returncode == 1 and both.stderr.startswith("eventmap: validate: two folders given")


def test_an_unknown_destination_names_the_folder_searched_and_why(tmp_path):
    event = write_event(tmp_path, TRACK)
    shipped = run("render", "acme", event, cwd=tmp_path)   # no ./mappings here
    assert shipped.returncode == 1
    first, note = shipped.stderr.splitlines()
    assert first.startswith("destination: unknown destination 'acme' (known: ")
    assert note.startswith(f"eventmap: looked in {REPO / 'mappings'} (the shipped mappings: no --mappings, "
                           f"no mappings: in a configuration, no mappings/destinations in {tmp_path}); "
                           "mapping files come from --mappings DIR, else the configuration's mappings:")

    write_mappings(tmp_path / "mine", {"mini.yaml": MINI})
    given = run("render", "acme", event, "--mappings", "mine/mappings", cwd=tmp_path)
    assert given.stderr.splitlines()[1].startswith("eventmap: looked in mine/mappings (--mappings); ")

    (tmp_path / "routes.yaml").write_text("mappings: mine/mappings\ndestinations:\n  acme: {}\n", encoding="utf-8")
    configured = run("batch", event, "--config", "routes.yaml", cwd=tmp_path)
    first, note = configured.stderr.splitlines()
    assert first.startswith("routes.yaml:3: destinations.acme.destination: unknown destination 'acme' (known: mini)")
    assert note.startswith(f"eventmap: looked in {tmp_path / 'mine' / 'mappings'} (mappings: in routes.yaml); ")


def test_a_problem_that_is_not_an_unknown_name_has_no_note(tmp_path):
    write_mappings(tmp_path, {"mini.yaml": MINI})
    result = run("render", "mini", write_event(tmp_path, TRACK), cwd=tmp_path)   # api_key missing
    assert result.returncode == 1
    assert "looked in" not in result.stderr


# --------------------------------------------------------------------------- one clear line for bad input

@pytest.mark.parametrize(("settings", "expected"), [
    ('{"tenant_token": "x"', "eventmap: --settings: not valid JSON: Expecting ',' delimiter (line 1, column 21)"),
    ('{"tenant_token": x: y}', "eventmap: --settings: not valid JSON: Expecting value (line 1, column 18)"),
])
def test_malformed_settings_json_is_one_line(tmp_path, settings, expected):
    result = run("render", "planhat", write_event(tmp_path, IDENTIFY), "--settings", settings, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == expected + "\n"


def test_yaml_settings_still_read_and_a_broken_settings_file_is_one_line_with_its_line(tmp_path):
    event = write_event(tmp_path, IDENTIFY)
    yaml_inline = run("render", "planhat", event, "--settings", "{tenant_token: tok}", cwd=tmp_path)
    assert yaml_inline.returncode == 0, yaml_inline.stderr
    (tmp_path / "settings.yaml").write_text("tenant_token: tok\nbase_url: [\n", encoding="utf-8")
    broken = run("render", "planhat", event, "--settings", "settings.yaml", cwd=tmp_path)
    assert broken.returncode == 1
    assert re.fullmatch(r"eventmap: settings\.yaml:\d+: not valid JSON or YAML: [^\n]+\n", broken.stderr), broken.stderr


def test_a_duration_in_words_names_the_accepted_forms(tmp_path):
    (tmp_path / "routes.yaml").write_text(
        "destinations:\n  planhat: {settings: {tenant_token: t}, limits: {rate: fast}}\n"
        "delivery:\n  retry_for: 4 hrs\n", encoding="utf-8")
    result = run("batch", write_event(tmp_path, TRACK), "--config", "routes.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "routes.yaml:2: destinations.planhat.limits.rate: expected a rate such as 150/s, 200/min or 5000/day, "
        "not 'fast'",
        "routes.yaml:4: delivery.retry_for: expected a duration such as 30s, 5m, 4h or 7d, not '4 hrs'"]


def test_the_schema_and_the_parser_name_durations_and_rates_in_the_same_words():
    schema = json.loads((REPO / "schemas" / "config.schema.json").read_text(encoding="utf-8"))
    assert schema["$defs"]["duration"]["title"] == DURATION_FORMS
    assert schema["$defs"]["rate"]["title"] == RATE_FORMS


def test_batch_config_problems_carry_file_and_line_all_in_one_run(tmp_path):
    (tmp_path / "routes.yaml").write_text(
        "destinations:\n  planhat:\n    settings: {tenant_tokn: x}\n    where: 'a ==='\n  crisp: {}\n"
        "delivery: {backof: 1s}\n", encoding="utf-8")
    result = run("batch", write_event(tmp_path, TRACK), "--config", "routes.yaml", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert [line.split(": ")[0] for line in lines] == ["routes.yaml:6", "routes.yaml:4"], lines   # the file's own
    fixed = (tmp_path / "routes.yaml").read_text().replace("    where: 'a ==='\n", "").replace(
        "delivery: {backof: 1s}\n", "")
    (tmp_path / "routes.yaml").write_text(fixed, encoding="utf-8")
    result = run("batch", "event.json", "--config", "routes.yaml", cwd=tmp_path)
    assert [line.split(": ", 2)[:2] for line in result.stderr.splitlines()] == [   # then every destination's
        ["routes.yaml:3", "destinations.planhat.settings.tenant_tokn"],
        ["routes.yaml:3", "destinations.planhat.settings.tenant_token"],
        ["routes.yaml:4", "destinations.crisp.settings.api_key"],
        ["routes.yaml:4", "destinations.crisp.settings.website_id"]]


# --------------------------------------------------------------------------- deliveries retry

def test_retrying_a_delivery_that_does_not_exist_says_so_and_fails(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    result = run("deliveries", "retry", "999999", "--store", store_url, cwd=tmp_path)
    assert "no store at" in result.stderr   # nothing made either
    assert result.returncode == 1
    run("db", "upgrade", "--store", store_url, cwd=tmp_path)
    result = run("deliveries", "retry", "999999", "--store", store_url, cwd=tmp_path)
    assert result.returncode == 1
    assert "eventmap deliveries retry: no delivery 999999 in the store (nothing queued;" in result.stderr


def test_retrying_ids_queues_the_dead_ones_and_names_the_others(tmp_path):
    write_mappings(tmp_path, {"mini.yaml": MINI})
    (tmp_path / "eventmap.yaml").write_text("destinations:\n  mini: {settings: {api_key: k}}\n", encoding="utf-8")
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(dict(TRACK, messageId=f"m{n}")) + "\n"
                                                   for n in range(2)), encoding="utf-8")
    assert run("enqueue", "events.jsonl", "--config", "eventmap.yaml", cwd=tmp_path).returncode == 0
    with open_store(f"sqlite:///{tmp_path / 'eventmap.db'}") as store:
        first, second = store.lease("mini", 2, "test", time.time(), 60)
        store.finish([Finish(first.id, DEAD, reason="test")], "test", time.time())
    result = run("deliveries", "retry", first.id, second.id, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        "eventmap deliveries retry: 1 dead deliveries queued again",
        f"eventmap deliveries retry: not queued: {second.id} is queued (mini) (--state and --destination choose "
        "which are)"]
    every = run("deliveries", "retry", cwd=tmp_path)   # no ids: whatever matches, none is an error
    assert every.returncode == 0 and "0 dead deliveries queued again" in every.stderr


# --------------------------------------------------------------------------- serve and console

def test_serve_reports_every_missing_setting_in_one_run(tmp_path):
    (tmp_path / "eventmap.yaml").write_text(
        "sources:\n  web:\n    write_key: {env: TEST_UNSET_WRITE_KEY}\n"
        "destinations:\n  planhat: {}\n  crisp: {}\n", encoding="utf-8")
    result = run("serve", "--config", "eventmap.yaml", "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert [line.split(": ", 2)[:2] for line in result.stderr.splitlines()] == [
        ["eventmap.yaml:3", "sources.web.write_key"],
        ["eventmap.yaml:5", "destinations.planhat.settings.tenant_token"],
        ["eventmap.yaml:6", "destinations.crisp.settings.api_key"],
        ["eventmap.yaml:6", "destinations.crisp.settings.website_id"]]


def test_serve_reports_destination_and_webhook_source_settings_together(tmp_path):
    (tmp_path / "eventmap.yaml").write_text(
        "sources:\n  gladly:\n    webhook: gladly\n    auth: {headers: {X-Token: t}}\n"
        "destinations:\n  planhat: {}\n", encoding="utf-8")
    result = run("serve", "--config", "eventmap.yaml", "--port", "0", cwd=tmp_path)   # no fixed port: others may hold 8088
    assert result.returncode == 1
    paths = [line.split(": ", 2)[1] for line in result.stderr.splitlines()]
    assert paths[0] == "destinations.planhat.settings.tenant_token"
    assert "sources.gladly.settings.org" in paths and "sources.gladly.settings.api_token" in paths


def test_console_without_a_configuration_creates_no_store(tmp_path):
    result = run("console", "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert f"storage: no store at {tmp_path / 'eventmap.db'}" in result.stderr
    assert "'eventmap serve' (with no file) keeps here; or pass --config FILE" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_console_alone_reads_the_demo_store_and_logs_as_the_console(tmp_path):
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0   # ./eventmap.db, as a demo server leaves it
    console = Server(tmp_path)
    console.args[3] = "console"   # python -m engine console --port 0
    with console:
        assert requests.get(console.url + "/console/", timeout=10).status_code == 200
    output = console.output()
    assert "eventmap console: listening on http://" in output
    assert "eventmap serve" not in output
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO gunicorn\.error: Starting gunicorn", output, re.M)


def test_serve_writes_gunicorns_lines_in_its_own_json_format(tmp_path):
    config = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    config.write_text(config.read_text() + "logging: {format: json}\n", encoding="utf-8")
    server = Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only")
    with server:
        pass
    lines = [line for line in server.output().splitlines() if line.strip()]
    plain = [line for line in lines if not line.startswith("{")]
    assert plain == [line for line in lines if re.fullmatch(r"eventmap serve: listening on http://\S+", line)], plain
    records = [json.loads(line) for line in lines if line.startswith("{")]
    loggers = {record["logger"] for record in records}
    assert {"gunicorn.error", "uvicorn.error", "eventmap.serve"} <= loggers
    assert any(r["logger"] == "gunicorn.error" and r["message"].startswith("Starting gunicorn") for r in records)
