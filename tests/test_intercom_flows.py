"""Intercom through `eventmap enqueue` and `eventmap deliver` against a stateful stand-in on localhost
(tests/intercom_stand_in.py): a new person, the same person changed, a track for them, a track for someone Intercom
does not know, a 429 and a 409 in the middle of a flow, and a SIGKILL of deliver between two steps of one event.
Each ends with the stand-in holding exactly what Intercom would, and no dead letter but where Intercom says so."""
from __future__ import annotations

import time
from pathlib import Path

import flows_harness as flows
import pytest
from flows_harness import deliver, enqueue, kill_deliver_while_hanging, served, settle, states
from intercom_stand_in import IntercomStandIn
from vendor_server import Answer

from engine.store import DEAD, DELIVERED

TOKEN = "ic-flow-token-5521"
SECONDS = 1715678400   # 2024-05-14T09:20:00Z


@pytest.fixture
def intercom():
    with served(IntercomStandIn(TOKEN)) as stand_in:
        yield stand_in


def write_config(folder: Path, url: str, lease: str = "30s") -> Path:
    return flows.write_config(folder, "intercom", f'{{access_token: "{TOKEN}", base_url: "{url}"}}', lease)


def identify(n: int, user: str | None, email: str, **traits) -> dict:
    event = {"type": "identify", "messageId": f"id-{n}", "timestamp": "2024-05-14T09:20:00Z", "anonymousId": f"anon-{n}",
             "traits": {"email": email, **traits}}
    return {**event, "userId": user} if user else event


def track(n: int, user: str | None, email: str | None = None, name: str = "Order Completed", **properties) -> dict:
    event = {"type": "track", "messageId": f"tr-{n}", "event": name, "timestamp": f"2024-05-14T09:3{n % 10}:00Z",
             "anonymousId": f"anon-{n}", "properties": properties}
    if email:
        event["context"] = {"traits": {"email": email}}
    return {**event, "userId": user} if user else event


def test_people_their_events_and_their_company_end_as_intercom_holds_them(tmp_path, intercom):
    config = write_config(tmp_path, intercom.url)
    ada = "ada@example.com"

    # 1. a new person: not found by external_id, so created as a user
    enqueue(tmp_path, config, identify(1, "u-ada", ada, name="Ada Lovelace", plan="pro"))
    deliver(config)
    assert intercom.contacts == {"66000001": {"type": "contact", "id": "66000001", "role": "user", "external_id": "u-ada",
                                              "email": ada, "name": "Ada Lovelace", "last_seen_at": SECONDS}}

    # 2. the same person again with a change: found, updated, not duplicated; what was not sent stays
    enqueue(tmp_path, config, identify(2, "u-ada", ada, name="Ada King", phone="+44 20 7946 0958"))
    deliver(config)
    assert intercom.contacts == {"66000001": {"type": "contact", "id": "66000001", "role": "user", "external_id": "u-ada",
                                              "email": ada, "name": "Ada King", "phone": "+442079460958",
                                              "last_seen_at": SECONDS}}

    # 3. a track for them: a data event on that contact; a redelivery of it is the same event (same created_at)
    enqueue(tmp_path, config, track(3, "u-ada", order_id="o1", revenue=42.5, currency="EUR"))
    deliver(config)
    assert intercom.events == [{"contact": "66000001", "event_name": "Order Completed", "created_at": SECONDS + 13 * 60,   # 09:33:00
                                "metadata": {"order_id": "o1", "currency": "EUR", "price": {"amount": 4250, "currency": "EUR"}}}]

    # an identify by email alone finds the same contact through the search
    enqueue(tmp_path, config, identify(4, None, ada, title="Countess"))
    deliver(config)
    assert len(intercom.contacts) == 1 and intercom.contact(email=ada)["external_id"] == "u-ada"

    # the company, with the contact attached
    enqueue(tmp_path, config, {"type": "group", "groupId": "acme", "userId": "u-ada", "messageId": "gr-5",
                               "timestamp": "2024-05-14T09:40:00Z", "traits": {"name": "Acme", "employees": 12}})
    deliver(config)
    assert intercom.companies == {"77000002": {"type": "company", "id": "77000002", "company_id": "acme", "name": "Acme", "size": 12}}
    assert intercom.attached == {("66000001", "77000002")}

    # 4. tracks for people Intercom does not know: "Events sent about users that cannot be found will return a
    # 404 Not Found", and the email search finds nobody: both final, with the reason; nothing recorded
    enqueue(tmp_path, config, track(6, "u-nobody"), track(7, None, "bo@example.com", name="Signed Up"))
    deliver(config)
    found = states(tmp_path)
    assert {m: r.state for m, r in found.items()} == {"id-1": DELIVERED, "id-2": DELIVERED, "tr-3": DELIVERED, "id-4": DELIVERED,
                                                      "gr-5": DELIVERED, "tr-6": DEAD, "tr-7": DEAD}
    assert "404 is final" in found["tr-6"].reason and "User Not Found" in found["tr-6"].history[-1].error
    assert "Intercom has no contact with the email bo@example.com" in found["tr-7"].reason
    assert len(intercom.events) == 1 and len(intercom.contacts) == 1
    calls = [(m, p, s) for m, p, s in intercom.calls]
    assert calls[:10] == [
        ("GET", "/contacts/find_by_external_id/u-ada", 404), ("POST", "/contacts", 200),          # 1: find, create
        ("GET", "/contacts/find_by_external_id/u-ada", 200), ("PUT", "/contacts/66000001", 200),  # 2: find, update
        ("POST", "/events", 202),                                                                # 3: the event
        ("POST", "/contacts/search", 200), ("PUT", "/contacts/66000001", 200),                   # by email: search, update
        ("POST", "/companies", 200), ("GET", "/contacts/find_by_external_id/u-ada", 200),       # group: company, find,
        ("POST", "/contacts/66000001/companies", 200)]                                           # attach
    assert sorted(calls[10:]) == [("POST", "/contacts/search", 200), ("POST", "/events", 404)]   # 4, in either order


def test_a_429_in_the_middle_of_a_flow_resumes_at_the_step_that_did_not_complete(tmp_path, intercom):
    config = write_config(tmp_path, intercom.url)
    # Intercom's rate limit answer: 429 with the time the window resets
    # (https://developers.intercom.com/docs/references/rest-api/errors/rate-limiting)
    intercom.server.answer(Answer(429, {"type": "error.list", "errors": [{"code": "rate_limit_exceeded"}]},
                                  headers={"Retry-After": "1"}),
                           when=lambda r: r.method == "POST" and r.path == "/contacts", times=1)
    enqueue(tmp_path, config, identify(1, "u-cy", "cy@example.com", name="Cy"))
    found = settle(tmp_path, config)
    assert found["id-1"].state == DELIVERED
    assert 429 in [a.status for a in found["id-1"].history]
    # the find was not asked again: its answer (404) was kept, and the retry went on with the create
    assert [(m, p) for m, p, _ in intercom.calls] == [("GET", "/contacts/find_by_external_id/u-cy"), ("POST", "/contacts")]
    assert [c["external_id"] for c in intercom.contacts.values()] == ["u-cy"]


def test_a_409_in_the_middle_of_a_flow_updates_the_contact_made_meanwhile(tmp_path, intercom):
    """Between the find (404) and the create, the same user is created elsewhere: Intercom answers the create 409,
    and the contact is found again and updated; nothing is duplicated and nothing is dead."""
    config = write_config(tmp_path, intercom.url)

    def made_meanwhile(received):
        intercom.contacts["65000099"] = {"type": "contact", "id": "65000099", "role": "user", "external_id": "u-di",
                                         "email": "di@example.com"}
        return intercom(received)
    intercom.server.answer(made_meanwhile, when=lambda r: r.method == "POST" and r.path == "/contacts", times=1)
    enqueue(tmp_path, config, identify(1, "u-di", "di@example.com", name="Di"))
    found = settle(tmp_path, config)
    assert found["id-1"].state == DELIVERED
    assert [(m, s) for m, _, s in intercom.calls] == [("GET", 404), ("POST", 409), ("GET", 200), ("PUT", 200)]
    assert intercom.contacts == {"65000099": {"type": "contact", "id": "65000099", "role": "user", "external_id": "u-di",
                                              "email": "di@example.com", "name": "Di", "last_seen_at": SECONDS}}


def test_a_contact_the_search_does_not_list_yet_is_tried_again_until_it_does(tmp_path, intercom):
    """By email: the search finds none, the create answers 409 (the contact was made meanwhile) and the search
    again still finds none, as Intercom's search can lag a new contact by minutes: the event is retried, not a
    dead letter, and once the search lists the contact it is updated. Nothing is duplicated."""
    config = write_config(tmp_path, intercom.url)

    def made_meanwhile(received):
        intercom.contacts["65000077"] = {"type": "contact", "id": "65000077", "role": "user", "email": "ed@example.com"}
        return intercom(received)
    intercom.server.answer(made_meanwhile, when=lambda r: r.method == "POST" and r.path == "/contacts", times=1)
    intercom.server.answer(Answer(200, {"type": "list", "data": [], "total_count": 0}),   # not listed yet
                           when=lambda r: r.method == "POST" and r.path == "/contacts/search", times=2)
    enqueue(tmp_path, config, identify(1, None, "ed@example.com", name="Ed"))
    found = settle(tmp_path, config)
    assert found["id-1"].state == DELIVERED, found["id-1"].reason
    retried = [a for a in found["id-1"].history if a.error and "tried again later" in a.error]
    assert len(retried) == 1 and retried[0].status == 200   # the search answered: Intercom was not failing
    # the first search and the create were not asked again (their answers were kept): only the search again was
    searches = [r for r in intercom.server.received if r.path == "/contacts/search"]
    assert len(searches) == 3   # the first, the one that did not list the contact yet, the one that did
    assert [(m, p, s) for m, p, s in intercom.calls] == [("POST", "/contacts", 409), ("POST", "/contacts/search", 200),
                                                         ("PUT", "/contacts/65000077", 200)]
    assert list(intercom.contacts) == ["65000077"] and intercom.contacts["65000077"]["name"] == "Ed"


def test_sigkill_between_two_steps_then_a_rerun_loses_nothing_and_creates_nothing_twice(tmp_path, intercom):
    people = [(f"u{n}", f"p{n}@example.com") for n in range(4)]
    config = write_config(tmp_path, intercom.url, lease="2s")
    enqueue(tmp_path, config, *[identify(n, user, email, name=f"Person {n}") for n, (user, email) in enumerate(people)])
    # the second create is recorded by Intercom, but its answer never comes: deliver is killed between that
    # event's create and whatever would follow it
    creates = []

    def second_create(received):
        if received.method == "POST" and received.path == "/contacts":
            creates.append(received)
        return len(creates) == 2
    kill_deliver_while_hanging(intercom, config, second_create)
    assert len(intercom.contacts) == 2   # the stalled create was made before the kill

    time.sleep(2.1)  # the killed worker's lease runs out
    found = settle(tmp_path, config)
    assert {m: r.state for m, r in found.items()} == {f"id-{n}": DELIVERED for n in range(4)}
    # one contact per person, with its fields: the stalled event resumed after its find (404), created again
    # (409: it exists), found it again and updated it
    assert sorted((c["external_id"], c["email"], c["name"]) for c in intercom.contacts.values()) == [
        (user, email, f"Person {n}") for n, (user, email) in enumerate(people)]
    assert [s for m, p, s in intercom.calls if (m, p) == ("POST", "/contacts")].count(409) == 1
