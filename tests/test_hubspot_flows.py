"""HubSpot through `eventmap enqueue` and `eventmap deliver` against a stateful stand-in on localhost
(tests/hubspot_stand_in.py): a new person, the same person changed, a track for them, a track for someone HubSpot
does not know, a 429 and a 409 in the middle of a flow, and a SIGKILL of deliver between two steps of one event.
Each ends with the stand-in holding exactly what HubSpot would, and no dead letter but where HubSpot says so."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import flows_harness as flows
import pytest
from flows_harness import deliver, enqueue, kill_deliver_while_hanging, served, settle, states
from hubspot_stand_in import HubSpotStandIn
from vendor_server import Answer

from engine.map.filters import EVENTMAP_NAMESPACE
from engine.store import DEAD, DELIVERED

TOKEN = "pat-na1-flow-3318"
PORTAL = "4470011"


@pytest.fixture
def hubspot():
    with served(HubSpotStandIn(TOKEN, PORTAL, events=("order_completed", "signed_up"))) as stand_in:
        yield stand_in


def write_config(folder: Path, url: str, lease: str = "30s") -> Path:
    return flows.write_config(folder, "hubspot", f'{{access_token: "{TOKEN}", portal_id: "{PORTAL}", base_url: "{url}"}}',
                              lease)


def identify(n: int, email: str, **traits) -> dict:
    return {"type": "identify", "userId": f"u{n}", "messageId": f"id-{n}", "timestamp": "2024-05-14T09:20:00Z",
            "traits": {"email": email, **traits}}


def track(n: int, email: str, name: str = "Order Completed", **properties) -> dict:
    return {"type": "track", "userId": f"u{n}", "messageId": f"tr-{n}", "event": name, "timestamp": "2024-05-14T09:30:00Z",
            "context": {"traits": {"email": email}}, "properties": properties}


def test_people_their_events_and_their_company_end_as_hubspot_holds_them(tmp_path, hubspot):
    config = write_config(tmp_path, hubspot.url)
    ada = "ada@example.com"

    # 1. a new person: the update by email answers 404, so the contact is created
    enqueue(tmp_path, config, identify(1, ada, firstName="Ada", lastName="Lovelace", plan="pro"))
    deliver(config)
    assert hubspot.contacts == {"101": {"email": ada, "firstname": "Ada", "lastname": "Lovelace"}}

    # 2. the same person again with a change: updated, not duplicated; what was not sent stays
    enqueue(tmp_path, config, identify(2, ada, lastName="King", title="Countess"))
    deliver(config)
    assert hubspot.contacts == {"101": {"email": ada, "firstname": "Ada", "lastname": "King", "jobtitle": "Countess"}}

    # 3. a track for them: an occurrence of pe<portal>_order_completed on that contact
    enqueue(tmp_path, config, track(3, ada, order_id="o1", revenue=42.5, products=[{"sku": "s1"}]))
    deliver(config)
    assert hubspot.occurrences == [{"eventName": f"pe{PORTAL}_order_completed", "contact": "101",
                                    "occurredAt": "2024-05-14T09:30:00.000Z", "properties": {"order_id": "o1", "revenue": 42.5},
                                    "uuid": str(uuid.uuid5(EVENTMAP_NAMESPACE, "tr-3"))}]

    # 4. a track for someone HubSpot does not know: the occurrence's email makes the contact, and it is kept;
    # an event the portal has not defined is refused (400), a dead letter with HubSpot's reason
    enqueue(tmp_path, config, track(4, "bo@example.com", name="Signed Up", plan="free"),
            track(5, ada, name="Clicked Login Button"))
    deliver(config)
    assert hubspot.contacts["102"] == {"email": "bo@example.com"}
    assert [(o["eventName"], o["contact"]) for o in hubspot.occurrences] == [
        (f"pe{PORTAL}_order_completed", "101"), (f"pe{PORTAL}_signed_up", "102")]

    # the company, by its unique group id property, associated with the user's contact
    enqueue(tmp_path, config, {"type": "group", "groupId": "acme", "userId": "u1", "messageId": "gr-6",
                               "timestamp": "2024-05-14T09:40:00Z", "context": {"traits": {"email": ada}},
                               "traits": {"name": "Acme", "employees": 12}})
    deliver(config)
    assert hubspot.companies == {"103": {"segment_group_id": "acme", "name": "Acme", "numberofemployees": 12}}
    assert hubspot.associations == {("103", "101")}

    found = states(tmp_path)
    assert {m: r.state for m, r in found.items()} == {"id-1": DELIVERED, "id-2": DELIVERED, "tr-3": DELIVERED,
                                                      "tr-4": DELIVERED, "tr-5": DEAD, "gr-6": DELIVERED}
    assert "400 is final" in found["tr-5"].reason and "does not exist" in found["tr-5"].history[-1].error
    calls = [(m, s) for m, _, s in hubspot.calls]
    assert calls[:4] == [("PATCH", 404), ("POST", 201), ("PATCH", 200), ("POST", 204)]   # 1, 2, 3
    assert sorted(calls[4:6]) == [("POST", 204), ("POST", 400)]                           # 4, in either order
    assert calls[6:] == [("POST", 200), ("GET", 200), ("PUT", 200)]                       # the company


def test_a_429_in_the_middle_of_a_flow_resumes_at_the_step_that_did_not_complete(tmp_path, hubspot):
    config = write_config(tmp_path, hubspot.url)
    # HubSpot's rate limit answer: 429 (https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines)
    hubspot.server.answer(Answer(429, {"status": "error", "category": "RATE_LIMITS", "message": "You have reached your secondly limit."},
                                 headers={"Retry-After": "1"}),
                          when=lambda r: r.method == "POST" and r.path == "/crm/v3/objects/contacts", times=1)
    enqueue(tmp_path, config, identify(1, "cy@example.com", firstName="Cy"))
    found = settle(tmp_path, config)
    assert found["id-1"].state == DELIVERED and 429 in [a.status for a in found["id-1"].history]
    # the update's 404 was kept: the retry went on with the create, and did not ask again
    assert [(m, p) for m, p, _ in hubspot.calls] == [("PATCH", "/crm/v3/objects/contacts/cy%40example.com"),
                                                     ("POST", "/crm/v3/objects/contacts")]
    assert hubspot.contacts == {"101": {"email": "cy@example.com", "firstname": "Cy"}}


def test_a_409_in_the_middle_of_a_flow_updates_the_contact_made_meanwhile(tmp_path, hubspot):
    config = write_config(tmp_path, hubspot.url)

    def made_meanwhile(received):
        hubspot.contacts["90"] = {"email": "di@example.com", "lifecyclestage": "lead"}
        return hubspot(received)
    hubspot.server.answer(made_meanwhile, when=lambda r: r.method == "POST" and r.path == "/crm/v3/objects/contacts", times=1)
    enqueue(tmp_path, config, identify(1, "di@example.com", firstName="Di"))
    found = settle(tmp_path, config)
    assert found["id-1"].state == DELIVERED
    assert [(m, s) for m, _, s in hubspot.calls] == [("PATCH", 404), ("POST", 409), ("PATCH", 200)]
    assert hubspot.contacts == {"90": {"email": "di@example.com", "lifecyclestage": "lead", "firstname": "Di"}}


def test_sigkill_between_two_steps_then_a_rerun_loses_nothing_and_creates_nothing_twice(tmp_path, hubspot):
    people = [f"p{n}@example.com" for n in range(4)]
    config = write_config(tmp_path, hubspot.url, lease="2s")
    enqueue(tmp_path, config, *[identify(n, email, firstName=f"P{n}") for n, email in enumerate(people)])
    creates = []

    def second_create(received):
        if received.method == "POST" and received.path == "/crm/v3/objects/contacts":
            creates.append(received)
        return len(creates) == 2
    kill_deliver_while_hanging(hubspot, config, second_create)
    assert len(hubspot.contacts) == 2   # the stalled create was made before the kill

    time.sleep(2.1)  # the killed worker's lease runs out
    found = settle(tmp_path, config)
    assert {m: r.state for m, r in found.items()} == {f"id-{n}": DELIVERED for n in range(4)}
    assert sorted((c["email"], c["firstname"]) for c in hubspot.contacts.values()) == [
        (email, f"P{n}") for n, email in enumerate(people)]
    # the stalled event resumed after its update (404): created again (409: it exists), then updated
    assert [s for m, p, s in hubspot.calls if (m, p) == ("POST", "/crm/v3/objects/contacts")].count(409) == 1
