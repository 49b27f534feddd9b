"""Multi-step actions: Crisp's create-or-update against a stateful stand-in, resuming between steps,
kills between steps, offline views, and load-time checks of bad steps."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import write_mappings
from vendor_server import Answer, VendorServer

from engine import ConfigError, Engine
from engine.cli import main
from engine.deliver import DestinationWorker, HttpClient, RetryPolicy, drain
from engine.intake import Intake
from engine.store import DEAD, DELIVERED, open_store

CRISP_KEY = "crisp-identifier:crisp-secret-key-4471"
SITE = "site-1"


class CrispStandIn:
    """Crisp's people API as far as eventmap uses it, with state: profiles keyed by email, their data
    and events. 409 people_exists on creating a known email, 404 on anything about an unknown one."""

    def __init__(self):
        self.profiles: dict[str, dict] = {}
        self.data: dict[str, dict] = {}
        self.events: dict[str, list] = {}
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, received) -> Answer:
        parts = unquote(received.path).strip("/").split("/")
        with self.lock:
            self.calls.append((received.method, "/".join(parts[3:])))
            if parts[:2] != ["website", SITE] or parts[2] != "people":
                return Answer(404, {"error": True, "reason": "website_not_found", "data": {}})
            kind, rest = parts[3], parts[4:]
            body = received.body or {}
            if kind == "profile" and not rest and received.method == "POST":
                email = body.get("email")
                if email in self.profiles:
                    return Answer(409, {"error": True, "reason": "people_exists", "data": {}})
                self.profiles[email] = {"email": email, **body}
                return Answer(201, {"error": False, "reason": "added", "data": {"people_id": f"pid-{email}"}})
            email = rest[0] if rest else None
            if email not in self.profiles:
                return Answer(404, {"error": True, "reason": "people_not_found", "data": {}})
            if kind == "profile" and received.method == "PATCH":
                self.profiles[email].update(body)
                return Answer(200, {"error": False, "reason": "updated", "data": {}})
            if kind == "data" and received.method == "PATCH":
                self.data.setdefault(email, {}).update(body["data"])
                return Answer(200, {"error": False, "reason": "updated", "data": {}})
            if kind == "events" and received.method == "POST":
                self.events.setdefault(email, []).append(body)
                return Answer(200, {"error": False, "reason": "added", "data": {}})
            return Answer(405, {"error": True, "reason": "not_allowed", "data": {}})


@pytest.fixture
def crisp():
    stand_in = CrispStandIn()
    with VendorServer() as server:
        server.answer(stand_in)
        stand_in.url = server.url
        stand_in.server = server
        yield stand_in


def write_config(folder: Path, url: str, lease: str = "30s", concurrency: int = 2) -> Path:
    config = folder / "eventmap.yaml"
    config.write_text(f"""
storage: sqlite:///{folder / 'outbox.db'}
delivery: {{lease: {lease}, timeout: 5s}}
destinations:
  crisp:
    settings: {{api_key: "{CRISP_KEY}", website_id: {SITE}, base_url: "{url}"}}
    limits: {{rate: 100/s, concurrency: {concurrency}}}
""", encoding="utf-8")
    return config


def identify(n: int, email: str, **traits) -> dict:
    return {"type": "identify", "userId": f"u-{email}", "messageId": f"id-{n}", "traits": {"email": email, **traits}}


def track(n: int, email: str, name: str = "Order Completed", **properties) -> dict:
    return {"type": "track", "userId": f"u-{email}", "messageId": f"tr-{n}", "event": name,
            "context": {"traits": {"email": email}}, "properties": properties}


def enqueue_and_deliver(tmp_path: Path, config: Path, event: dict) -> None:
    events = tmp_path / f"{event['messageId']}.jsonl"
    events.write_text(json.dumps(event) + "\n", encoding="utf-8")
    assert main(["enqueue", str(events), "--config", str(config)]) == 0
    assert main(["deliver", "--config", str(config), "--until-idle"]) == 0


def deliveries(tmp_path: Path) -> dict:
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        return {r.message_id: store.get(r.id) for r in store.list(limit=1000)}


# --------------------------------------------------------------------------- Crisp, as the seed says

def test_crisp_creates_updates_stores_data_and_events_through_the_cli(tmp_path, crisp, capsys):
    config = write_config(tmp_path, crisp.url)
    ada = "ada@example.com"

    # 1. a new user: the update answers 404, so the profile is created; "plan" is a custom trait
    enqueue_and_deliver(tmp_path, config, identify(1, ada, name="Ada Lovelace", plan="pro"))
    assert crisp.profiles[ada]["person"] == {"nickname": "Ada Lovelace"}
    assert crisp.data[ada] == {"plan": "pro"}
    assert crisp.calls[:3] == [("PATCH", f"profile/{ada}"), ("POST", "profile"), ("PATCH", f"data/{ada}")]

    # 2. the same user with a changed name: updated, not created again (no 409, no dead letter)
    enqueue_and_deliver(tmp_path, config, identify(2, ada, name="Ada King"))
    assert crisp.profiles[ada]["person"] == {"nickname": "Ada King"}
    assert crisp.calls[3:] == [("PATCH", f"profile/{ada}")]  # nothing custom: no data request

    # 3. an Engage audience identify: the membership lands in the profile's data, as Crisp's types
    enqueue_and_deliver(tmp_path, config, identify(3, ada, order_completed_last_30days=True,
                                                   lifetime={"orders": 4}))
    assert crisp.data[ada] == {"plan": "pro", "order_completed_last_30days": True, "lifetime.orders": 4}

    # 4. a track lands on the profile
    enqueue_and_deliver(tmp_path, config, track(4, ada, revenue=42.99, shippingMethod="2-day"))
    assert crisp.events[ada] == [{"text": "Order Completed", "data": {"revenue": 42.99, "shippingMethod": "2-day"}}]

    # 5. a track for a user Crisp does not know: final at once, with the reason
    enqueue_and_deliver(tmp_path, config, track(5, "nobody@example.com"))
    found = deliveries(tmp_path)
    assert {m: r.state for m, r in found.items()} == {
        "id-1": DELIVERED, "id-2": DELIVERED, "id-3": DELIVERED, "tr-4": DELIVERED, "tr-5": DEAD}
    assert found["tr-5"].reason == "Crisp does not know this user: send an identify first"
    assert found["tr-5"].attempts == 1

    # every attempt of every step is recorded and shown
    capsys.readouterr()
    assert main(["deliveries", "show", str(found["id-1"].id), "--config", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(a["step"], a["status"]) for a in shown["attempts_log"]] == [("update", 404), ("create", 201),
                                                                         ("data", 200)]
    assert CRISP_KEY.split(":")[1] not in json.dumps(shown)


# --------------------------------------------------------------------------- faults between steps

class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def crisp_worker(tmp_path, crisp):
    engine = Engine()
    clock = FakeClock()
    route = engine.route("crisp", {"api_key": CRISP_KEY, "website_id": SITE, "base_url": crisp.url}, environ={})
    with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        intake = Intake(engine, [route], store, clock=clock)
        worker = DestinationWorker(route, store, HttpClient(timeout=5), owner="test-worker", clock=clock,
                                   policy=RetryPolicy(retry_for=3600, backoff=1, max_backoff=60), rng=random.Random(3))
        yield intake, worker, store, clock


def test_a_failing_second_step_is_retried_alone_the_first_is_not_repeated(crisp, crisp_worker):
    intake, worker, store, clock = crisp_worker
    crisp.profiles["bo@example.com"] = {"email": "bo@example.com"}
    crisp.server.answer(Answer(500, {"error": True, "reason": "server_error"}),
                        when=lambda r: "/people/data/" in r.path, times=1)
    intake.accept([identify(1, "bo@example.com", name="Bo", plan="pro")])

    drain([worker], store, clock, advance=clock.advance)

    record = store.get(store.list()[0].id)
    assert record.state == DELIVERED
    assert [(a.step, a.status) for a in record.history] == [("update", 200), ("data", 500), ("data", 200)]
    assert crisp.calls == [("PATCH", "profile/bo@example.com"), ("PATCH", "data/bo@example.com")]
    assert crisp.data["bo@example.com"] == {"plan": "pro"}
    assert record.progress["update"]["status"] == 200


def test_a_create_is_not_repeated_when_a_later_step_fails_for_good(crisp, crisp_worker):
    intake, worker, store, clock = crisp_worker
    crisp.server.answer(Answer(400, {"error": True, "reason": "invalid_data"}),
                        when=lambda r: "/people/data/" in r.path, times=1)
    intake.accept([identify(1, "cy@example.com", plan="pro")])
    drain([worker], store, clock, advance=clock.advance)
    record = store.get(store.list()[0].id)
    assert record.state == DEAD
    assert "step 'data' got HTTP 400" in record.reason and "invalid_data" in record.reason

    # the dead letter goes back to the queue: it resumes at the data step, the profile is not created twice
    store.requeue(clock())
    drain([worker], store, clock, advance=clock.advance)
    assert store.get(record.id).state == DELIVERED
    assert [c for c in crisp.calls if c[0] == "POST"] == [("POST", "profile")]


def test_a_profile_created_meanwhile_is_updated_not_dead_lettered(crisp, crisp_worker):
    """Update answers 404, but by the time create asks the profile exists (a parallel identify of the
    same new user, or a create a killed worker sent): Crisp answers 409 people_exists, and the
    profile is updated after all instead of the event going dead."""
    intake, worker, store, clock = crisp_worker
    crisp.profiles["di@example.com"] = {"email": "di@example.com", "person": {"nickname": "Old"}}
    crisp.server.answer(Answer(404, {"error": True, "reason": "people_not_found", "data": {}}),
                        when=lambda r: r.method == "PATCH" and "/people/profile/" in r.path, times=1)
    intake.accept([identify(1, "di@example.com", name="Di")])

    drain([worker], store, clock, advance=clock.advance)

    record = store.get(store.list()[0].id)
    assert record.state == DELIVERED, record.reason
    assert [(a.step, a.status) for a in record.history] == [("update", 404), ("create", 409), ("update_existing", 200)]
    assert crisp.profiles["di@example.com"]["person"]["nickname"] == "Di"


# --------------------------------------------------------------------------- SIGKILL between steps

def test_sigkill_between_steps_loses_nothing_and_repeats_no_completed_step(tmp_path, crisp):
    people = [f"p{n}@example.com" for n in range(6)]
    # one thread: the kill lands while it waits in the stalled data step, never between another
    # event's answer and its record (a step that at-least-once may send again; see the 409 test below)
    config = write_config(tmp_path, crisp.url, lease="2s", concurrency=1)
    lines = [json.dumps(identify(n, email, plan="pro")) for n, email in enumerate(people)]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["enqueue", str(tmp_path / "events.jsonl"), "--config", str(config)]) == 0
    # the first data step stalls: the worker is killed while it waits between creating and saving data
    stalled = threading.Event()

    def stall(received):
        stalled.set()
        return Answer(200, {"error": False}, delay=30)
    crisp.server.answer(stall, when=lambda r: "/people/data/" in r.path, times=1)

    worker = subprocess.Popen([sys.executable, "-m", "engine", "deliver", "--config", str(config), "--progress", "0"],
                              cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert stalled.wait(60), "the worker never reached a data step"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    created_before = sorted(crisp.profiles)
    assert created_before  # the kill came after the first profile was created

    time.sleep(2.1)  # the killed worker's lease (2s) runs out
    assert main(["deliver", "--config", str(config), "--until-idle"]) == 0
    found = deliveries(tmp_path)
    assert {r.state for r in found.values()} == {DELIVERED}, [(r.reason, [(a.step, a.status) for a in r.history]) for r in found.values() if r.state != DELIVERED]
    assert sorted(crisp.profiles) == sorted(people)
    assert all(crisp.data[p] == {"plan": "pro"} for p in people)
    # each profile created exactly once: the killed event resumed after its completed steps
    assert sorted(path for method, path in crisp.calls if method == "POST") == ["profile"] * len(people)


# --------------------------------------------------------------------------- offline views

def test_render_offline_shows_every_step_sure_to_run_and_the_plan(tmp_path, capsys):
    """update and data run whatever update answers (404 runs create first, then data): both are shown."""
    settings = json.dumps({"api_key": CRISP_KEY, "website_id": SITE})
    event = Path(__file__).resolve().parents[1] / "fixtures" / "events" / "identify-full.json"
    assert main(["render", "crisp", str(event), "--settings", settings]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["url"].split("/people/")[1]) for r in shown["requests"]] == [
        ("PATCH", "profile/ada.lovelace%40example.com"), ("PATCH", "data/ada.lovelace%40example.com")]
    assert shown["requests"][1]["body"] == {"data": {"plan": "enterprise", "createdAt": "2023-11-02T08:00:00.000Z"}}
    assert [(s["step"], s.get("on_status"), s.get("sent")) for s in shown["steps"]] == [
        ("update", {"404": "run create"}, "requests[0]"), ("create", {"409": "run update_existing"}, None),
        ("update_existing", None, None), ("data", None, "requests[1]")]
    assert shown["steps"][3]["when"] == "vars.custom"

    # no custom traits: data's `when` is false, and only update is shown
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(identify(1, "a@b.test", name="A")), encoding="utf-8")
    assert main(["render", "crisp", str(plain), "--settings", settings]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in shown["requests"]] == ["PATCH"]
    assert [s.get("sent") for s in shown["steps"]] == ["requests[0]", None, None, None]


def test_render_with_saved_responses_shows_exactly_what_would_be_sent(tmp_path, capsys):
    saved = tmp_path / "saved" / "v1" / "website" / SITE / "people"
    (saved / "profile").mkdir(parents=True)
    (saved / "data").mkdir(parents=True)
    # the profile is unknown (PATCH answers 404), creating it works, saving data works
    (saved / "profile" / "ada.lovelace@example.com.patch.404.json").write_text('{"reason": "people_not_found"}')
    (saved / "profile.post.json").write_text('{"data": {"people_id": "p-1"}}')
    (saved / "data" / "ada.lovelace@example.com.patch.json").write_text('{"error": false}')
    settings = json.dumps({"api_key": CRISP_KEY, "website_id": SITE, "base_url": "https://crisp.test/v1"})
    event = Path(__file__).resolve().parents[1] / "fixtures" / "events" / "identify-full.json"
    assert main(["render", "crisp", str(event), "--settings", settings, "--responses", str(tmp_path / "saved")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["url"].split("/people/")[1]) for r in shown["requests"]] == [
        ("PATCH", "profile/ada.lovelace%40example.com"), ("POST", "profile"),
        ("PATCH", "data/ada.lovelace%40example.com")]
    assert [(s["step"], s["status"], s["then"]) for s in shown["steps"]] == [
        ("update", 404, "run create"), ("create", 200, "continue"), ("data", 200, "continue")]
    assert shown["requests"][2]["body"] == {"data": {"plan": "enterprise", "createdAt": "2023-11-02T08:00:00.000Z"}}


def test_explain_and_batch_show_steps_offline(tmp_path, capsys):
    settings = json.dumps({"api_key": CRISP_KEY, "website_id": SITE})
    event = identify(1, "ada@example.com", name="Ada", plan="pro")
    (tmp_path / "event.json").write_text(json.dumps(event), encoding="utf-8")
    assert main(["explain", "crisp", str(tmp_path / "event.json"), "--settings", settings]) == 0
    shown = capsys.readouterr().out
    assert "steps.update.person.nickname" in shown and "steps.data.data" in shown and '{"plan": "pro"}' in shown
    assert CRISP_KEY.split(":")[1] not in shown

    (tmp_path / "events.jsonl").write_text(json.dumps(event) + "\n" + json.dumps(track(2, "ada@example.com")) + "\n")
    assert main(["batch", str(tmp_path / "events.jsonl"), "--destination", "crisp", "--settings", settings]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["requests"][0]["method"], [s["step"] for s in line["steps"]]) for line in lines] == [
        ("PATCH", ["update", "create", "update_existing", "data"]), ("POST", ["event"])]


# --------------------------------------------------------------------------- bad steps files

FILE = "mappings/destinations/x.yaml"
HEAD = """\
name: X
settings:
  type: object
  properties:
    token: {type: string}
actions:
  identify:
    steps:
"""


@pytest.fixture
def load_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def run(steps: str) -> list[str]:
        root = write_mappings(tmp_path, {"x.yaml": HEAD + steps})
        with pytest.raises(ConfigError) as info:
            Engine(root)
        return [str(p) for p in info.value.problems]

    return run


def test_a_step_naming_an_unknown_step(load_errors):
    assert load_errors("""\
      first:
        request: {url: "https://x.test/a"}
        on_status:
          404: {run: second}
""") == [f"{FILE}:12: actions.identify.steps.first.on_status.404.run: unknown step 'second' (declared: first)"]


def test_steps_running_each_other_in_a_cycle(load_errors):
    problems = load_errors("""\
      a:
        request: {url: "https://x.test/a"}
      b:
        request: {url: "https://x.test/b"}
        on_status:
          404: {run: c}
      c:
        request: {url: "https://x.test/c"}
        on_status:
          409: {run: b}
""")
    assert problems == [f"{FILE}:13: actions.identify.steps.b.on_status: the steps run each other in a cycle: b -> c -> b"]


def test_a_read_of_a_step_that_may_not_have_run(load_errors):
    problems = load_errors("""\
      look:
        when: event.userId
        request: {url: "https://x.test/a"}
      write:
        request: {url: "https://x.test/{{ steps.look.body.id }}"}
      later:
        request: {url: "https://x.test/c"}
        body: {id: {"@path": steps.after.body.id}}
      after:
        request: {url: "https://x.test/d"}
""")
    assert problems == [
        f"{FILE}:13: actions.identify.steps.write.request.url: 'steps.look' may not have run before step 'write': "
        "read only steps that always run earlier (no 'when', not a fallback), or the step that ran this one",
        f"{FILE}:16: actions.identify.steps.later.body.id: 'steps.after' may not have run before step 'later': "
        "read only steps that always run earlier (no 'when', not a fallback), or the step that ran this one"]


def test_a_fallback_may_read_the_step_that_ran_it(tmp_path):
    engine = Engine(write_mappings(tmp_path, {"x.yaml": HEAD + """\
      find:
        request: {url: "https://x.test/find"}
        on_status:
          404: {run: create}
      create:
        request: {url: "https://x.test/create/{{ steps.find.status }}"}
"""}))
    action = engine.destination("x").actions["identify"]
    assert action.sequence == ["find"] and action.steps["create"].fallback


def test_a_steps_condition_reads_the_same_scopes_as_every_other_read(tmp_path):
    """`when: event.traits.plan == 'pro'` reads the event (not a field named 'event' of it), and a
    condition naming no scope is refused at load, as a @path would be."""
    engine = Engine(write_mappings(tmp_path, {"x.yaml": HEAD + """\
      pro:
        when: "event.traits.plan == 'pro'"
        request: {url: "https://x.test/pro/{{ event.userId }}"}
"""}))
    route = engine.route("x", {})
    pro = {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "m1"}
    free = {"type": "identify", "userId": "u2", "traits": {"plan": "free"}, "messageId": "m2"}
    assert [r.url for r in engine.render(pro, route).requests] == ["https://x.test/pro/u1"]
    skipped = engine.render(free, route)
    assert skipped.status == "skipped" and not skipped.requests

    with pytest.raises(ConfigError) as refused:
        Engine(write_mappings(tmp_path / "bad", {"x.yaml": HEAD + """\
      pro:
        when: "traits.plan == 'pro'"
        request: {url: "https://x.test/pro"}
"""}))
    assert "write event.traits" in str(refused.value)


# --------------------------------------------------------------------------- rules on the answer's body

INTERCOM = """\
name: Intercom
settings:
  type: object
  properties:
    base_url: {type: string}
actions:
  identify:
    vars:
      email: {"@path": event.traits.email}
    required: [vars.email]
    steps:
      search:
        request: {url: "{{ settings.base_url }}/contacts/search"}
        body: {query: {field: email, operator: "=", value: "{{ vars.email }}"}}
        on_answer:
          - when: "steps.search.body.total_count == `0`"
            then: {run: create}
          - when: "steps.search.body.total_count > `1`"
            then: {reject: "{{ steps.search.body.total_count }} contacts have the email {{ vars.email }}"}
      create:
        request: {url: "{{ settings.base_url }}/contacts"}
        body: {email: "{{ vars.email }}", name: {"@path": event.traits.name}}
      update:
        when: "steps.search.body.total_count == `1`"
        request: {method: PUT, url: "{{ settings.base_url }}/contacts/{{ steps.search.body.data[0].id }}"}
        body: {name: {"@path": event.traits.name}}
"""


class IntercomStandIn:
    """Contacts by email (duplicates allowed, as Intercom allows them), searched and written."""

    def __init__(self):
        self.contacts: list[dict] = []
        self.calls: list[tuple[str, str]] = []

    def __call__(self, received) -> Answer:
        self.calls.append((received.method, received.path))
        if received.path == "/contacts/search":
            found = [c for c in self.contacts if c["email"] == received.body["query"]["value"]]
            return Answer(200, {"type": "list", "total_count": len(found), "data": found})
        if received.path == "/contacts" and received.method == "POST":
            self.contacts.append({"id": f"c{len(self.contacts) + 1}", **received.body})
            return Answer(200, self.contacts[-1])
        contact = next(c for c in self.contacts if received.path == f"/contacts/{c['id']}")
        contact.update(received.body)
        return Answer(200, contact)


def test_a_rule_on_the_answers_body_creates_updates_or_rejects(tmp_path):
    engine = Engine(write_mappings(tmp_path, {"intercom.yaml": INTERCOM}))
    stand_in = IntercomStandIn()
    with VendorServer() as server:
        server.answer(stand_in)
        route = engine.route("intercom", {"base_url": server.url})
        client = HttpClient(timeout=5)

        def render(name: str, email: str = "ada@example.com"):
            event = {"type": "identify", "userId": "u1", "messageId": f"m-{name}",
                     "traits": {"email": email, "name": name}}
            return engine.render(event, route, responses=client)

        # nobody has the email: search answers total_count 0, so create runs (update's `when` is false)
        created = render("Ada")
        assert created.status == "send" and created.reason is None
        assert [(s["step"], s["then"]) for s in created.steps] == [("search", "run create"), ("create", "continue")]
        # one contact has it: update it by the id the search found
        updated = render("Ada King")
        assert [(s["step"], s["then"]) for s in updated.steps] == [("search", "continue"), ("update", "continue")]
        assert stand_in.contacts == [{"id": "c1", "email": "ada@example.com", "name": "Ada King"}]
        # two contacts have it: rejected with the message, after the search (shown with its answer)
        stand_in.contacts.append({"id": "c2", "email": "ada@example.com", "name": "Other"})
        rejected = render("Ada Lovelace")
        assert rejected.status == "rejected"
        assert [e.as_dict() for e in rejected.errors] == [
            {"path": "steps.search", "message": "2 contacts have the email ada@example.com"}]
        assert [r.url.rsplit("/", 2)[-2:] for r in rejected.requests] == [["contacts", "search"]]
        assert rejected.steps[0]["answer"]["total_count"] == 2
        assert [c["name"] for c in stand_in.contacts] == ["Ada King", "Other"]
    assert stand_in.calls == [("POST", "/contacts/search"), ("POST", "/contacts"),
                              ("POST", "/contacts/search"), ("PUT", "/contacts/c1"),
                              ("POST", "/contacts/search")]


def test_offline_a_rule_on_the_answer_ends_what_is_shown_and_is_in_the_plan(tmp_path):
    engine = Engine(write_mappings(tmp_path, {"intercom.yaml": INTERCOM}))
    outcome = engine.render({"type": "identify", "userId": "u1", "messageId": "m1", "traits": {"email": "a@b.test"}},
                            engine.route("intercom", {"base_url": "https://intercom.test"}))
    assert [r.url for r in outcome.requests] == ["https://intercom.test/contacts/search"]
    assert outcome.steps[0] == {
        "step": "search", "request": "POST {{ settings.base_url }}/contacts/search", "sent": "requests[0]",
        "on_answer": [{"when": "steps.search.body.total_count == `0`", "then": "run create"},
                      {"when": "steps.search.body.total_count > `1`",
                       "then": "reject: template {{ steps.search.body.total_count }} contacts have the email "
                               "{{ vars.email }}"}]}


def test_rules_on_the_answer_are_checked_at_load(load_errors):
    problems = load_errors("""\
      first:
        request: {url: "https://x.test/a"}
        on_answer:
          - {when: "steps.first.body.ok", then: {run: nowhere}}
          - {when: "steps.later.body.ok", then: {skip: "no"}}
      later:
        request: {url: "https://x.test/b"}
""")
    assert problems == [
        f"{FILE}:12: actions.identify.steps.first.on_answer[0].then.run: unknown step 'nowhere' (declared: first, later)",
        f"{FILE}:13: actions.identify.steps.first.on_answer[1].when: 'steps.later' may not have run before step "
        "'first': read only steps that always run earlier (no 'when', not a fallback), or the step that ran this one"]


# --------------------------------------------------------------------------- what is sent before a rejection

LOOKUP_THEN_WRITE = HEAD.replace("    token: {type: string}", "    base_url: {type: string}") + """\
      lookup:
        request: {method: GET, url: "{{ settings.base_url }}/users/{{ event.userId }}"}
      write:
        request: {url: "{{ settings.base_url }}/accounts/{{ steps.lookup.body.account }}/events"}
        body: {account: {"@path": steps.lookup.body.account}, user: {"@path": event.userId}}
        required: [account]
"""


def test_responses_show_every_request_made_before_a_later_step_rejects(tmp_path, capsys):
    """Issue 22 item 6: the lookup was sent and answered; the write's required field (from that answer)
    is missing. The outcome shows the lookup's request and answer, and where it stopped."""
    root = write_mappings(tmp_path, {"x.yaml": LOOKUP_THEN_WRITE})
    saved = tmp_path / "saved" / "users"
    saved.mkdir(parents=True)
    (saved / "u1.json").write_text('{"name": "Ada"}', encoding="utf-8")
    (tmp_path / "event.json").write_text(json.dumps({"type": "identify", "userId": "u1", "messageId": "m1"}))
    settings = json.dumps({"base_url": "https://x.test"})
    assert main(["render", "x", str(tmp_path / "event.json"), "--settings", settings, "--mappings", str(root),
                 "--responses", str(tmp_path / "saved")]) == 2   # rejected
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "rejected" and shown["reason"] == "step 'write' rejected the event"
    assert [(r["method"], r["url"]) for r in shown["requests"]] == [("GET", "https://x.test/users/u1")]
    assert shown["steps"] == [{"step": "lookup", "status": 200, "then": "continue", "answer": {"name": "Ada"}},
                              {"step": "write", "status": None, "then": "reject (not sent)"}]
    assert shown["errors"][0]["path"] == "steps.write.account"


def test_a_later_step_that_reads_no_answer_is_checked_before_anything_is_sent(tmp_path):
    """A required field the event lacks rejects the event before the first request, offline, with
    answers and in the worker alike: nothing half-written at the vendor."""
    text = LOOKUP_THEN_WRITE.replace('body: {account: {"@path": steps.lookup.body.account}, user: {"@path": event.userId}}',
                                     'body: {user: {"@path": event.userId}, plan: {"@path": event.traits.plan}}'
                                     ).replace("required: [account]", "required: [plan]").replace(
        "{{ steps.lookup.body.account }}", "x")
    engine = Engine(write_mappings(tmp_path, {"x.yaml": text}))
    event = {"type": "identify", "userId": "u1", "messageId": "m1", "traits": {}}
    with VendorServer() as server:
        route = engine.route("x", {"base_url": server.url})
        offline = engine.render(event, route)
        live = engine.render(event, route, responses=HttpClient(timeout=5))
        with open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
            Intake(engine, [route], store).accept([event])
            drain([DestinationWorker(route, store, HttpClient(timeout=5), owner="t")], store)
            record = store.get(store.list()[0].id)
        assert server.received == [] and server.refused == []
    for outcome in (offline, live):
        assert (outcome.status, outcome.requests, outcome.reason) == ("rejected", [], "required fields are missing")
        assert [e.path for e in outcome.errors] == ["steps.write.plan"]
    assert record.state == "rejected" and record.reason == "required fields are missing"


@pytest.mark.parametrize("rules", ["on_status: {201: {done: true}}",
                                   "on_answer: [{when: 'steps.check.body.known', then: {skip: known}}]",
                                   "on_status: {2xx: {run: other}}"])
def test_offline_shows_no_step_after_one_whose_success_may_end_or_redirect_the_run(tmp_path, rules):
    """After such a step, what runs depends on its answer: the later step is in the plan, not shown as sent,
    and not checked before the first request (its missing field is no reason to reject yet)."""
    engine = Engine(write_mappings(tmp_path, {"x.yaml": HEAD + f"""\
      check:
        request: {{url: "https://x.test/check"}}
        {rules}
      write:
        request: {{url: "https://x.test/write"}}
        body: {{plan: {{"@path": event.traits.plan}}}}
        required: [plan]
      other:
        request: {{url: "https://x.test/other"}}
"""}))
    outcome = engine.render({"type": "identify", "userId": "u1", "messageId": "m1", "traits": {}}, engine.route("x", {}))
    assert (outcome.status, [r.url for r in outcome.requests]) == ("send", ["https://x.test/check"])
    assert [s.get("sent") for s in outcome.steps][:2] == ["requests[0]", None]
