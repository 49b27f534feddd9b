"""The tracking-plan commands as a user meets them: ``validate`` on plan files (file:line), ``enqueue`` in each
mode, ``violations``, ``plan infer`` (on the sample events fixture) and ``plan diff``."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.load.plan import load_plan
from engine.store import INTAKE, QUEUED, REJECTED, EventQuery, open_store
from engine.validate.plan import SourcePlan
from engine.validate.profile import Profile, differences, plan_of

PLAN = REPO / "fixtures" / "plans" / "shop.yaml"
SAMPLE = REPO / "fixtures" / "sample-events.jsonl"
SNAPSHOTS = Path(__file__).parent / "snapshots" / "plans"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config(folder: Path, unplanned: str = "warn", invalid: str = "warn", more_sources: str = "") -> Path:
    return write(folder, "eventmap.yaml", f"""\
        storage: sqlite:///events.db
        sources:
          web:
            write_key: key-web
            plan: {{file: {PLAN}, unplanned: {unplanned}, invalid: {invalid}}}
        {more_sources}
        destinations:
          segment:
            settings: {{write_key: seg-key, base_url: "http://127.0.0.1:9"}}
        """)


def jsonl(folder: Path, events: list) -> Path:
    path = folder / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def track(name: str, properties: dict, message_id: str) -> dict:
    return {"type": "track", "event": name, "userId": "u1", "messageId": message_id, "properties": properties}


GOOD_ORDER = {"order_id": "o-1", "total": 10, "currency": "EUR"}
BAD_ORDER = {"order_id": "o-2", "total": "ten", "currency": "EUR", "coupon": "X"}


# --------------------------------------------------------------------------- validate: file:line

def test_the_shipped_example_plan_validates(capsys):
    assert main(["validate", "--plan", str(PLAN)]) == 0
    assert f"plan {PLAN}" in capsys.readouterr().out


BROKEN_PLANS = {
    "unknown key": ("events:\n  Signed Up:\n    propertys: {}\n",
                    "3: events.Signed Up.propertys: unknown key 'propertys' (expected one of: description, properties)"),
    "no events": ("name: shop\n", "1: 'events' is required"),
    "a type JSON Schema does not have": ("events:\n  A:\n    properties:\n      type: objekt\n",
                                         "4: events.A.properties.type: 'objekt' is not valid under any of the given schemas"),
    "a keyword's value of the wrong type": ("events:\n  A:\n    properties:\n      properties:\n        n: {minimum: low}\n",
                                            "5: events.A.properties.properties.n.minimum: expected a number, got a string"),
    "a pattern no regex engine reads": ("events:\n  A:\n    properties:\n      properties:\n        c: {pattern: '(x'}\n",
                                        "5: events.A.properties.properties.c.pattern: not a regular expression: "
                                        "missing ), unterminated subpattern at position 0"),
    "a $ref to nothing": ("events:\n  A:\n    properties: {$ref: '#/$defs/money'}\n",
                          "3: events.A.properties: not a usable JSON Schema: Pointer '/$defs/money' does not exist"),
    "an event named twice": ("events:\n  A: {}\n  A: {}\n", "3: events.A: duplicate key 'A' (first on line 2)"),
    "not YAML": ("events: [\n", "2: invalid YAML:"),
    "identify with events' key": ("events: {}\nidentify:\n  properties: {}\n",
                                  "3: identify.properties: unknown key 'properties' (expected one of: description, traits)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_PLANS))
def test_validate_names_each_problem_of_a_plan_file_with_its_line(tmp_path, capsys, case):
    text, expected = BROKEN_PLANS[case]
    plan = write(tmp_path, "plan.yaml", text)
    assert main(["validate", "--plan", str(plan)]) == 1
    err = capsys.readouterr().err
    assert f"{plan}:{expected}" in err, err
    assert "Traceback" not in err


def test_validate_checks_a_configurations_plans_and_where_it_names_them(tmp_path, capsys):
    write(tmp_path, "plan.yaml", "events:\n  A:\n    properties: {type: objekt}\n")
    path = write(tmp_path, "eventmap.yaml", """\
        sources:
          web:
            write_key: k1
            plan: {file: plan.yaml}
          app:
            write_key: k2
            plan: {file: missing.yaml}
          shop:
            write_key: k3
            plan: {file: plan.yaml, unplanned: drop_properties}
          gladly:
            webhook: gladly
            auth: {headers: {X-Token: t}}
            plan: {file: plan.yaml}
        destinations:
          segment: {settings: {write_key: w}}
        """)
    assert main(["validate", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f'{path}:10: sources.shop.plan.unplanned: "drop_properties" is not one of: "allow", "warn", "block"' in err
    path.write_text(path.read_text().replace("plan.yaml, unplanned: drop_properties", "plan.yaml"))
    assert main(["validate", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/plan.yaml:3: events.A.properties.type: 'objekt' is not valid" in err
    assert f"{path}:7: sources.app.plan.file: no plan file at {tmp_path}/missing.yaml" in err
    assert f"{path}:14: sources.gladly.plan: 'plan' belongs to SDK sources (with write_key) only" in err
    assert err.count("plan.yaml:3:") == 1   # two sources share the file: its problems are told once


# --------------------------------------------------------------------------- enqueue in each mode

def enqueue(folder: Path, events: list, *extra: str) -> int:
    return main(["enqueue", str(jsonl(folder, events)), "--config", str(folder / "eventmap.yaml"), *extra])


def stored(folder: Path, message_id: str):
    with open_store("sqlite:///events.db", base=folder) as store:
        found = store.events(EventQuery(message_id=message_id))
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("invalid, state, properties", [
    ("allow", QUEUED, BAD_ORDER),
    ("warn", QUEUED, BAD_ORDER),
    ("drop_properties", QUEUED, {"order_id": "o-2", "currency": "EUR", "coupon": "X"}),
    ("block", REJECTED, BAD_ORDER),
])
def test_enqueue_applies_the_sources_plan_in_each_mode(tmp_path, capsys, invalid, state, properties):
    config(tmp_path, "block", invalid)
    code = enqueue(tmp_path, [track("Order Completed", GOOD_ORDER, "good"), track("Order Completed", BAD_ORDER, "bad"),
                              track("Nope", {}, "unplanned")])
    out, err = capsys.readouterr()
    assert code == 2   # something was rejected: the unplanned event, blocked
    lines = {line["messageId"]: line for line in map(json.loads, out.splitlines())}
    assert lines["unplanned"]["errors"] == [{"path": "event", "message": "'Nope' is not in the tracking plan 'shop'"}]
    assert stored(tmp_path, "good").deliveries[0].state == QUEUED
    bad = stored(tmp_path, "bad")
    assert [d.state for d in bad.deliveries] == [state] and bad.event["properties"] == properties
    if invalid == "allow":
        assert "bad" not in lines
    else:
        assert lines["bad"]["violations"] == [{"path": "properties.total", "rule": "type", "action": invalid,
                                               "message": "expected a number, got a string"}]
        assert "2 broke the tracking plan of source 'web' (eventmap violations)" in err
    if invalid == "block":
        assert bad.deliveries[0].destination == INTAKE
        assert lines["bad"]["errors"] == [{"path": "properties.total", "message": "expected a number, got a string"}]


def test_enqueue_needs_to_know_the_source_when_the_configuration_has_several(tmp_path, capsys):
    config(tmp_path, "block", "block", more_sources="  app:\n            write_key: key-app")
    assert enqueue(tmp_path, [track("Nope", {}, "m1")]) == 1
    assert "say which source these events come from with --source NAME (one of web, app)" in capsys.readouterr().err
    assert enqueue(tmp_path, [track("Nope", {}, "m1")], "--source", "mobile") == 1
    assert "--source: no SDK source named 'mobile'" in capsys.readouterr().err
    assert enqueue(tmp_path, [track("Nope", {}, "m1")], "--source", "app") == 0    # app has no plan
    assert enqueue(tmp_path, [track("Nope", {}, "m2")], "--source", "web") == 2


# --------------------------------------------------------------------------- violations

def test_violations_lists_what_intake_recorded_with_filters(tmp_path, capsys):
    config(tmp_path, "warn", "warn")
    enqueue(tmp_path, [track("Order Completed", BAD_ORDER, "bad"), track("Nope", {}, "unplanned"),
                       {"type": "identify", "userId": "u", "messageId": "i1", "traits": {"email": "nope"}}])
    capsys.readouterr()
    assert main(["violations", "--config", str(tmp_path / "eventmap.yaml"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((r["event"], r["rule"], r["path"], r["count"]) for r in rows) == [
        ("(identify traits)", "format", "traits.email", 1), ("Nope", "unplanned", "event", 1),
        ("Order Completed", "type", "properties.total", 1)]
    order = next(r for r in rows if r["event"] == "Order Completed")
    assert order["example"]["properties"] == BAD_ORDER and order["messageId"] == "bad" and order["source"] == "web"
    assert main(["violations", "--config", str(tmp_path / "eventmap.yaml"), "--event", "Nope", "--since", "1h"]) == 0
    assert [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()] == ["Nope"]
    assert main(["violations", "--config", str(tmp_path / "eventmap.yaml"), "--source", "app"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["violations", "--config", str(tmp_path / "eventmap.yaml"), "--since", "2024"]) == 1
    assert "--since: expected a moment such as 2024-05-02" in capsys.readouterr().err


# --------------------------------------------------------------------------- plan infer and plan diff

def test_plan_infer_writes_a_plan_of_the_sample_events(tmp_path, capsys, snapshot):
    output = tmp_path / "inferred.yaml"
    assert main(["plan", "infer", str(SAMPLE), "--name", "sample", "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    assert text.startswith("# Inferred by 'eventmap plan infer' from 7 events on ")
    snapshot.snapshot_dir = SNAPSHOTS
    snapshot.assert_match(text.split("\n", 1)[1], "infer-sample-events.yaml")   # without the line with the date
    assert main(["validate", "--plan", str(output)]) == 0
    capsys.readouterr()
    assert main(["plan", "diff", str(output), "--events", str(SAMPLE), "--json"]) == 0
    assert capsys.readouterr().out == ""   # the plan describes its own sample


def test_plan_infer_and_diff_read_the_store_since_a_moment(tmp_path, capsys):
    config(tmp_path, "warn", "warn")
    enqueue(tmp_path, [track("Order Completed", BAD_ORDER, "bad"), track("Nope", {"x": 1}, "unplanned")])
    capsys.readouterr()
    cfg = str(tmp_path / "eventmap.yaml")
    assert main(["plan", "diff", str(PLAN), "--since", "1h", "--config", cfg]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["kind"], d["event"], d["path"], d["seen"]) for d in found] == [
        ("unplanned event", "Nope", "event", 1),
        ("type differs", "Order Completed", "properties.total", 1),
        ("not seen", "Clicked Login Button", "event", 0), ("not seen", "Order Refunded", "event", 0),
        ("not seen", "Product Viewed", "event", 0), ("not seen", "Signed Up", "event", 0)]
    assert found[1]["detail"] == "the plan allows number; traffic had string (1)"
    assert main(["plan", "infer", "--from-store", "--since", "1h", "--config", cfg]) == 0
    inferred = yaml.safe_load(capsys.readouterr().out)
    assert sorted(inferred["events"]) == ["Nope", "Order Completed"]
    assert main(["plan", "diff", str(PLAN), "--since", "2099-01-01", "--config", cfg]) == 0
    assert [json.loads(line)["kind"] for line in capsys.readouterr().out.splitlines()] == ["not seen"] * 5


def test_plan_diff_names_unplanned_properties_and_types_deep_inside(tmp_path, capsys):
    events = jsonl(tmp_path, [track("Order Completed", {**GOOD_ORDER, "products": [{"product_id": "p", "price": "9",
                                                                                   "colour": "red"}]}, "m1"),
                              {"type": "group", "userId": "u", "groupId": "g", "traits": {"name": "A", "tier": 1}}])
    assert main(["plan", "diff", str(PLAN), "--events", str(events)]) == 0
    found = [(d["kind"], d["path"]) for d in map(json.loads, capsys.readouterr().out.splitlines())]
    assert ("unplanned property", "properties.products[].colour") in found
    assert ("type differs", "properties.products[].price") in found
    assert ("unplanned property", "traits.tier") in found


# Events as SDKs send them: names, and properties of every JSON type, nested.
values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(-1e6, 1e6, allow_nan=False)
                      | st.text(max_size=5),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=4),
                                                                                   inner, max_size=3), max_leaves=8)
events_strategy = st.lists(st.builds(
    lambda name, props: track(name, props, "m"),
    st.sampled_from(["A", "B", "C"]), st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), values, max_size=4)),
    min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events_strategy)
def test_every_event_follows_the_plan_inferred_from_it_and_diff_finds_nothing(tmp_path, events):
    profile = Profile()
    for event in events:
        profile.add(event)
    path = tmp_path / "inferred.yaml"
    path.write_text(yaml.safe_dump(plan_of(profile, "p"), sort_keys=False), encoding="utf-8")
    plan, problems = load_plan(path)
    assert not problems
    check = SourcePlan("web", plan, "block", "block")
    for event in events:
        assert check.check(event) is None, (event, check.check(event))
    assert differences(profile, plan) == []
