"""The ``eventmap`` command, run for real as ``python -m engine``."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, write_mappings

TOKEN = "tok-9f3c1d7e"
SETTINGS = json.dumps({"tenant_token": TOKEN})

IDENTIFY = {"type": "identify", "userId": "u1", "messageId": "m1", "timestamp": "2024-01-01T00:00:00Z",
            "traits": {"email": "ann@example.com", "name": "Ann", "plan": "pro"}}

MINI = """\
name: Mini
settings:
  type: object
  required: [api_key]
  properties:
    api_key: {type: string, secret: true}
actions:
  track:
    vars:
      who: {"@path": [event.userId, event.anonymousId]}
    request:
      url: "https://mini.test/{{ settings.api_key }}/t"
      headers: {X-Key: "{{ settings.api_key }}"}
    body:
      user: "{{ vars.who }}"
      event: {"@path": event.event, "@filter": lower}
      props:
        "@merge": event.properties
        plan: {"@path": event.properties.plan, "@default": free}
      missing: {"@path": event.properties.nope}
      source: eventmap
"""


def run(*args, cwd, env=None, stdin=None):
    """Run the console script; EVENTMAP_* variables of the caller never leak in."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EVENTMAP_")}
    environ["PYTHONPATH"] = str(REPO) + os.pathsep + environ.get("PYTHONPATH", "")
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd, env=environ,
                          input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path):
    """A working folder with ./mappings holding the shipped Planhat file and a small 'mini' destination."""
    root = write_mappings(tmp_path, {"mini.yaml": MINI})
    shutil.copy(REPO / "mappings" / "destinations" / "planhat.yaml", root / "destinations" / "planhat.yaml")
    return tmp_path


def write_event(folder, event, name="event.json"):
    path = folder / name
    path.write_text(json.dumps(event), encoding="utf-8")
    return name


def no_traceback(result):
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


# --------------------------------------------------------------------------- help and validate

def test_help_mentions_every_command():
    result = run("--help", cwd=REPO)
    assert result.returncode == 0
    for command in ("validate", "render", "explain", "batch"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command
    assert "EVENTMAP_PLANHAT_TENANT_TOKEN" in result.stdout


def test_no_command_prints_help_and_exits_1():
    result = run(cwd=REPO)
    assert result.returncode == 1
    assert result.stdout.startswith("usage: eventmap")


def test_validate_the_shipped_mappings():
    result = run("validate", cwd=REPO)
    assert result.returncode == 0, result.stderr
    match = re.match(r"ok: (\d+) destinations \(([^)]*)\)", result.stdout)
    assert match, result.stdout
    shipped = sorted(p.stem for p in (REPO / "mappings" / "destinations").glob("*.y*ml"))
    assert int(match.group(1)) == len(shipped)
    assert match.group(2).split(", ") == shipped
    assert "planhat" in shipped


def test_validate_a_good_folder(tmp_path):
    write_mappings(tmp_path, {"mini.yaml": MINI})
    result = run("validate", "mappings", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 destinations (mini)")
    assert result.stderr == ""


def test_validate_a_broken_folder_prints_every_problem(tmp_path):
    write_mappings(tmp_path, {
        "a.yaml": MINI.replace("{{ vars.who }}", "{{ vars.whom }}"),
        "b.yaml": MINI.replace("name: Mini", "name: B").replace('"@filter": lower', '"@filter": lowercase'),
        "c.yaml": "name: [\n",
    })
    result = run("validate", "mappings", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == ("mappings/destinations/a.yaml:15: actions.track.body.user: "
                        "unknown variable 'vars.whom' (defined before this point: who)")
    assert lines[1].startswith("mappings/destinations/b.yaml:16: actions.track.body.event.@filter: "
                               "unknown filter 'lowercase' (known: ")
    assert lines[2].startswith("mappings/destinations/c.yaml:2: invalid YAML: ")
    assert len(lines) == 3
    for line in lines:
        assert re.match(r"^mappings/destinations/\w\.yaml:\d+: ", line)


# --------------------------------------------------------------------------- render

OUTCOME_KEYS = {"destination", "status", "requests", "reason", "errors"}


def test_render_prints_the_outcome_with_secrets_masked(project):
    result = run("render", "planhat", write_event(project, IDENTIFY), "--settings", SETTINGS, cwd=project)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert OUTCOME_KEYS <= set(outcome)
    assert outcome["destination"] == "Planhat"
    assert outcome["status"] == "send"
    assert outcome["reason"] is None
    assert outcome["errors"] == []
    assert len(outcome["requests"]) == 1
    request = outcome["requests"][0]
    assert set(request) == {"method", "url", "headers", "query", "body"}
    assert request["method"] == "POST"
    assert request["url"] == "https://api.planhat.com/analytics/***"
    assert request["headers"] == {"Content-Type": "application/json"}
    assert request["query"] == {}
    assert request["body"] == {"externalId": "u1", "email": "ann@example.com", "name": "Ann",
                               "source": "Segment", "info": {"plan": "pro"}}
    assert TOKEN not in result.stdout
    assert TOKEN not in result.stderr


def test_render_show_secrets_prints_the_token(project):
    result = run("render", "planhat", write_event(project, IDENTIFY), "--settings", SETTINGS, "--show-secrets",
                 cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["requests"][0]["url"] == f"https://api.planhat.com/analytics/{TOKEN}"


def test_render_masks_secrets_in_url_and_headers_of_any_destination(project):
    event = {"type": "track", "event": "Signed Up", "anonymousId": "a1", "properties": {"seats": 3}}
    result = run("render", "Mini", write_event(project, event), "--settings", '{"api_key": "K3Y-secret-1"}',
                 cwd=project)
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)["requests"][0]
    assert request["url"] == "https://mini.test/***/t"
    assert request["headers"] == {"X-Key": "***", "Content-Type": "application/json"}
    assert request["body"] == {"user": "a1", "event": "signed up", "props": {"seats": 3, "plan": "free"},
                               "source": "eventmap"}
    assert "K3Y-secret-1" not in result.stdout


def test_render_settings_from_the_environment(project):
    result = run("render", "planhat", write_event(project, IDENTIFY), cwd=project,
                 env={"EVENTMAP_PLANHAT_TENANT_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["requests"][0]["url"] == "https://api.planhat.com/analytics/***"
    assert TOKEN not in result.stdout


@pytest.mark.parametrize("name, text", [
    ("settings.json", json.dumps({"tenant_token": TOKEN, "subdomain": "analytics"})),
    ("settings.yaml", f"tenant_token: {TOKEN}\nsubdomain: analytics\n"),
])
def test_render_settings_from_a_file(project, name, text):
    (project / name).write_text(text, encoding="utf-8")
    result = run("render", "planhat", write_event(project, IDENTIFY), "--settings", name, "--show-secrets",
                 cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["requests"][0]["url"] == f"https://analytics.planhat.com/analytics/{TOKEN}"


def test_render_reads_the_event_from_stdin(project):
    result = run("render", "planhat", "--settings", SETTINGS, cwd=project, stdin=json.dumps(IDENTIFY))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["requests"][0]["body"]["externalId"] == "u1"


def test_render_missing_setting_exits_1_naming_the_variable(project):
    result = run("render", "planhat", write_event(project, IDENTIFY), cwd=project)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == ("settings.tenant_token: planhat: 'tenant_token' is required: pass it in the settings "
                             "or set EVENTMAP_PLANHAT_TENANT_TOKEN\n")


def test_render_rejected_by_a_required_rule_exits_2(project):
    event = {"type": "track", "event": "Signed Up", "anonymousId": "a1", "messageId": "m2"}
    result = run("render", "planhat", write_event(project, event), "--settings", SETTINGS, cwd=project)
    assert result.returncode == 2
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "rejected"
    assert outcome["requests"] == []
    assert outcome["reason"] == "required fields are missing"
    assert outcome["errors"] == [{"path": "externalId || email", "message": (
        "Planhat track: 'externalId' (from userId) or 'email' is required; Planhat ignores calls with neither")}]
    assert outcome["messageId"] == "m2"


def test_render_event_against_the_spec_exits_2(project):
    event = {"type": "track", "userId": "u1"}  # no event name
    result = run("render", "planhat", write_event(project, event), "--settings", SETTINGS, cwd=project)
    assert result.returncode == 2
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "rejected"
    assert outcome["reason"] == "the event does not follow the Segment spec"
    assert outcome["errors"], outcome
    assert all(set(error) == {"path", "message"} for error in outcome["errors"])
    assert "event" in [error["path"] for error in outcome["errors"]]


def test_render_skipped_by_integrations_exits_0(project):
    event = dict(IDENTIFY, integrations={"All": True, "Planhat": False})
    result = run("render", "planhat", write_event(project, event), "--settings", SETTINGS, cwd=project)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "skipped"
    assert outcome["requests"] == []
    assert outcome["errors"] == []
    assert outcome["reason"] == 'disabled in integrations ({"Planhat": false})'


def test_render_unknown_destination_exits_1(project):
    result = run("render", "nope", write_event(project, IDENTIFY), "--settings", SETTINGS, cwd=project)
    assert result.returncode == 1
    assert result.stdout == ""
    first, note = result.stderr.splitlines()
    assert first == "destination: unknown destination 'nope' (known: mini, planhat)"
    assert note.startswith(f"eventmap: looked in mappings (./mappings, in {project}); mapping files come from "
                           "--mappings DIR, else the configuration's mappings:")


def test_render_reads_the_named_destination_file_alone(project):
    """A broken file beside it is validate's to report: rendering planhat neither reads nor refuses it."""
    (project / "mappings" / "destinations" / "broken.yaml").write_text("name: Broken\nactions: [\n", encoding="utf-8")
    result = run("render", "planhat", write_event(project, IDENTIFY), "--settings", SETTINGS, cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "send"
    assert "broken.yaml" not in result.stderr
    assert run("validate", cwd=project).returncode != 0


def test_render_finds_a_destination_by_its_display_name_from_every_file(project):
    (project / "mappings" / "destinations" / "broken.yaml").write_text("name: Broken\nactions: [\n", encoding="utf-8")
    result = run("render", "Planhat", write_event(project, IDENTIFY), "--settings", SETTINGS, cwd=project)
    assert result.returncode == 1  # a name that is no file name: every file is read, the broken one refused
    assert "broken.yaml" in result.stderr
    (project / "mappings" / "destinations" / "broken.yaml").unlink()
    result = run("render", "Planhat", write_event(project, IDENTIFY), "--settings", SETTINGS, cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["destination"] == "Planhat"


def test_render_invalid_json_event_names_file_and_line(project):
    (project / "bad.json").write_text('{"type": "identify",\n "userId": }\n', encoding="utf-8")
    result = run("render", "planhat", "bad.json", "--settings", SETTINGS, cwd=project)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "eventmap: bad.json:2: not valid JSON: Expecting value\n"
    no_traceback(result)


def test_render_unreadable_event_file(project):
    result = run("render", "planhat", "missing.json", "--settings", SETTINGS, cwd=project)
    assert result.returncode == 1
    assert result.stderr == "eventmap: cannot read missing.json: No such file or directory\n"
    no_traceback(result)


def test_render_settings_that_are_neither_json_nor_a_file(project):
    result = run("render", "planhat", write_event(project, IDENTIFY), "--settings", "nofile.json", cwd=project)
    assert result.returncode == 1
    assert result.stderr == "eventmap: --settings: 'nofile.json' is neither a JSON object nor a file\n"


def test_render_event_file_that_is_not_utf8(project):
    (project / "latin1.json").write_bytes(b'{"type": "identify", "userId": "J\xf6rg"}')
    result = run("render", "planhat", "latin1.json", "--settings", SETTINGS, cwd=project)
    no_traceback(result)
    assert result.returncode == 1
    assert result.stderr.startswith("eventmap: latin1.json")


def test_render_never_prints_a_traceback_for_event_data(project):
    # regression: {{ properties.items }} used to yield dict.items and crash print_json
    (project / "mappings" / "destinations" / "mini.yaml").write_text(
        MINI.replace('source: eventmap', 'lines: "{{ event.properties.items }}"'), encoding="utf-8")
    event = {"type": "track", "event": "Signed Up", "userId": "u1", "properties": {"items": [1, 2]}}
    result = run("render", "mini", write_event(project, event), "--settings", '{"api_key": "k"}', cwd=project)
    no_traceback(result)
    assert json.loads(result.stdout)["requests"][0]["body"]["lines"] == [1, 2]


# --------------------------------------------------------------------------- explain

def test_explain_prints_paths_expressions_and_values(project):
    event = {"type": "track", "event": "Signed Up", "userId": "u1", "properties": {"seats": 3}}
    result = run("explain", "mini", write_event(project, event), "--settings", '{"api_key": "k3y"}', cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == textwrap.dedent("""\
        vars.who     path event.userId | else event.anonymousId
                     = "u1"
        user         template {{ vars.who }}
                     = "u1"
        event        path event.event | lower
                     = "signed up"
        props.seats  from @merge path event.properties
                     = 3
        props.plan   path event.properties.plan (default "free")
                     = "free"
        missing      path event.properties.nope
                     = (left out: no value)
        source       "eventmap"
                     = "eventmap"
        """)


def test_explain_planhat_track(project):
    event = {"type": "track", "event": "Signed Up", "userId": "u1", "timestamp": "2024-01-01T00:00:00Z"}
    result = run("explain", "planhat", write_event(project, event), "--settings", SETTINGS, cwd=project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(re.fullmatch(r"action +path event.event", line) for line in lines)
    pairs = {lines[i].split()[0]: lines[i + 1].strip() for i in range(0, len(lines), 2)}
    assert pairs["action"] == '= "Signed Up"'
    assert pairs["externalId"] == '= "u1"'
    assert pairs["date"] == '= "2024-01-01T00:00:00.000Z"'
    assert pairs["email"] == "= (left out: no value)"


def test_explain_of_a_skipped_event_prints_the_outcome(project):
    event = {"type": "identify", "userId": "u1"}
    result = run("explain", "mini", write_event(project, event), "--settings", '{"api_key": "k"}', cwd=project)
    assert result.returncode == 0
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "skipped"
    assert outcome["reason"] == "call type 'identify' is not accepted by Mini (accepts: track)"


def test_explain_masks_secrets(project):
    (project / "mappings" / "destinations" / "mini.yaml").write_text(
        MINI.replace('source: eventmap', 'key: "{{ settings.api_key }}"'), encoding="utf-8")
    event = {"type": "track", "event": "Signed Up", "userId": "u1"}
    result = run("explain", "mini", write_event(project, event), "--settings", '{"api_key": "K3Y-secret-2"}',
                 cwd=project)
    assert result.returncode == 0
    assert "K3Y-secret-2" not in result.stdout


# --------------------------------------------------------------------------- batch

JSONL = "\n".join([
    json.dumps({"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "a"}),
    "",
    '{"type": broken',
    json.dumps({"type": "identify", "userId": "u2", "messageId": "b", "integrations": {"Planhat": False}}),
    json.dumps({"type": "track", "event": "Other", "userId": "u3", "messageId": "c"}),
    "   ",
    json.dumps({"type": "track", "event": "Signed Up", "anonymousId": "x", "messageId": "d"}),
]) + "\n"


def lines_of(stdout):
    return [json.loads(line) for line in stdout.splitlines()]


def test_batch_with_one_destination(project):
    (project / "events.jsonl").write_text(JSONL, encoding="utf-8")
    result = run("batch", "events.jsonl", "--destination", "planhat", cwd=project,
                 env={"EVENTMAP_PLANHAT_TENANT_TOKEN": TOKEN})
    assert result.returncode == 0  # rejected lines are data, reported per line; --strict makes them fail
    assert result.stderr == "eventmap batch: 2 send, 1 skipped, 2 rejected\n"
    assert TOKEN not in result.stdout
    out = lines_of(result.stdout)
    assert [(o["line"], o["destination"], o["status"]) for o in out] == [
        (1, "Planhat", "send"), (3, "Planhat", "rejected"), (4, "Planhat", "skipped"),
        (5, "Planhat", "send"), (7, "Planhat", "rejected")]
    assert out[0]["requests"][0]["body"] == {"externalId": "u1", "action": "Signed Up", "source": "Segment"}
    assert out[0]["requests"][0]["url"] == "https://api.planhat.com/analytics/***"
    assert out[1]["reason"] == "unreadable line"
    assert out[1]["requests"] == []
    assert out[1]["errors"] == [{"path": "", "message": "events.jsonl:3: not valid JSON: Expecting value (column 10)"}]
    assert out[2]["reason"] == 'disabled in integrations ({"Planhat": false})'
    assert out[3]["requests"][0]["body"]["action"] == "Other"
    assert out[4]["errors"][0]["path"] == "externalId || email"
    for o in out:
        assert OUTCOME_KEYS <= set(o)


def test_batch_reports_valid_json_that_python_cannot_read_and_goes_on(project):
    huge = '{"type": "track", "event": "Signed Up", "userId": "u1", "properties": {"n": ' + "1" * 5000 + "}}"
    deep = '{"type": "track", "event": "Signed Up", "userId": "u1", "properties": ' + "[" * 5000 + "]" * 5000 + "}"
    good = '{"type": "track", "event": "Signed Up", "userId": "u1"}'
    # json.loads reads 900 levels, and then masking and writing the outcome ran out of Python's stack
    readable = '{"type": "track", "event": "Signed Up", "userId": "u1", "properties": {"a": ' + "[" * 900 + "]" * 900 + "}}"
    # 100 levels are read and sent
    allowed = '{"type": "track", "event": "Signed Up", "userId": "u1", "properties": {"a": ' + "[" * 98 + "]" * 98 + "}}"
    (project / "events.jsonl").write_text("\n".join([huge, deep, good, readable, allowed]) + "\n", encoding="utf-8")
    result = run("batch", "events.jsonl", "--destination", "planhat", cwd=project,
                 env={"EVENTMAP_PLANHAT_TENANT_TOKEN": TOKEN})
    assert result.returncode == 0 and "Traceback" not in result.stderr
    out = lines_of(result.stdout)
    assert [(o["line"], o["status"]) for o in out] == [(1, "rejected"), (2, "rejected"), (3, "send"), (4, "rejected"),
                                                       (5, "send")]
    assert out[0]["errors"][0]["message"] == \
        "events.jsonl:1: not valid JSON: an integer longer than Python reads (over 4300 digits) (column 1)"
    deeper = "not valid JSON: nested deeper than eventmap reads (over 100 levels) (column 1)"
    assert out[1]["errors"][0]["message"] == f"events.jsonl:2: {deeper}"
    assert out[3]["errors"][0]["message"] == f"events.jsonl:4: {deeper}"


def test_batch_strict_exits_2_when_a_line_is_rejected(project):
    (project / "events.jsonl").write_text(JSONL, encoding="utf-8")
    result = run("batch", "events.jsonl", "--destination", "planhat", "--strict", cwd=project,
                 env={"EVENTMAP_PLANHAT_TENANT_TOKEN": TOKEN})
    assert result.returncode == 2
    assert [o["status"] for o in lines_of(result.stdout)] == ["send", "rejected", "skipped", "send", "rejected"]


def test_batch_all_sent_exits_0_and_reads_stdin(project):
    events = "\n".join(json.dumps({"type": "track", "event": f"E{i}", "userId": f"u{i}"}) for i in range(3))
    result = run("batch", "--destination", "mini", "--settings", '{"api_key": "k3y-k3y"}', "--strict", cwd=project,
                 stdin=events)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "eventmap batch: 3 send, 0 skipped, 0 rejected\n"
    out = lines_of(result.stdout)
    assert [(o["line"], o["status"], o["requests"][0]["body"]["event"]) for o in out] == [
        (1, "send", "e0"), (2, "send", "e1"), (3, "send", "e2")]


def test_batch_with_a_routes_file(project):
    (project / "events.jsonl").write_text(JSONL, encoding="utf-8")
    (project / "routes.yaml").write_text(textwrap.dedent(f"""\
        destinations:
          planhat:
            settings: {{tenant_token: {TOKEN}}}
            types: [track]
          Mini:
            settings: {{api_key: k3y-k3y}}
            events: [Signed Up]
        """), encoding="utf-8")
    result = run("batch", "events.jsonl", "--config", "routes.yaml", cwd=project)
    assert result.returncode == 0
    assert result.stderr == "eventmap batch: 4 send, 3 skipped, 3 rejected\n"
    assert TOKEN not in result.stdout
    out = lines_of(result.stdout)
    assert [(o["line"], o["destination"], o["status"], o["reason"]) for o in out] == [
        (1, "Planhat", "send", None),
        (1, "Mini", "send", None),
        (3, "Planhat", "rejected", "unreadable line"),
        (3, "Mini", "rejected", "unreadable line"),
        (4, "Planhat", "skipped", 'disabled in integrations ({"Planhat": false})'),
        (4, "Mini", "skipped", "call type 'identify' is not accepted by Mini (accepts: track)"),
        (5, "Planhat", "send", None),
        (5, "Mini", "skipped", "not subscribed: 'Other' is not in this route's events"),
        (7, "Planhat", "rejected", "required fields are missing"),
        (7, "Mini", "send", None),
    ]
    assert out[1]["requests"][0]["body"] == {"user": "u1", "event": "signed up", "props": {"plan": "free"},
                                             "source": "eventmap"}
    assert out[9]["requests"][0]["body"]["user"] == "x"


def test_batch_routes_file_types_filter(project):
    (project / "events.jsonl").write_text(json.dumps(IDENTIFY) + "\n", encoding="utf-8")
    (project / "routes.yaml").write_text(f"destinations:\n  planhat:\n    settings: {{tenant_token: {TOKEN}}}\n"
                                         "    types: [track]\n", encoding="utf-8")
    result = run("batch", "events.jsonl", "--config", "routes.yaml", cwd=project)
    assert result.returncode == 0, result.stderr
    assert [(o["line"], o["status"], o["reason"]) for o in lines_of(result.stdout)] == [
        (1, "skipped", "not subscribed: call type 'identify' is not in this route's types (track)")]


def test_batch_routes_file_with_a_missing_setting_exits_1(project):
    (project / "events.jsonl").write_text(json.dumps(IDENTIFY) + "\n", encoding="utf-8")
    (project / "routes.yaml").write_text("destinations:\n  planhat: {}\n", encoding="utf-8")
    result = run("batch", "events.jsonl", "--config", "routes.yaml", cwd=project)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == ("routes.yaml:2: destinations.planhat.settings.tenant_token: planhat: 'tenant_token' is "
                             "required: pass it in the settings or set EVENTMAP_PLANHAT_TENANT_TOKEN\n")


def test_batch_missing_events_file(project):
    result = run("batch", "nope.jsonl", "--destination", "mini", "--settings", '{"api_key": "k"}', cwd=project)
    no_traceback(result)
    assert result.returncode == 1
    assert result.stderr == "eventmap: cannot read nope.jsonl: No such file or directory\n"


def test_batch_routes_file_mappings_key(tmp_path):
    # the routes file names its own mappings folder, relative to the file, not to the working directory
    conf = tmp_path / "conf"
    write_mappings(conf, {"mini.yaml": MINI})
    (conf / "routes.yaml").write_text("mappings: mappings\ndestinations:\n  mini:\n    settings: {api_key: k}\n",
                                      encoding="utf-8")
    event = json.dumps({"type": "track", "event": "E", "userId": "u1"})
    result = run("batch", "-", "--config", conf / "routes.yaml", cwd=tmp_path, stdin=event)
    assert result.returncode == 0, result.stderr
    assert [o["status"] for o in lines_of(result.stdout)] == ["send"]
