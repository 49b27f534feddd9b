"""Intercom's contacts, data events and companies (API 2.14) as far as eventmap uses them, with state, on a real local
HTTP server (tests/vendor_server.py). What it holds and answers follows the operations' descriptions in Intercom's
OpenAPI 2.14 (fixtures/contracts/intercom/):

- GET /contacts/find_by_external_id/{external_id}: the user with that external_id, else 404 ("User Not Found").
- POST /contacts/search {query: {field, operator: "=", value}}: 200 {type: list, total_count, data} whatever it finds.
- POST /contacts: a new contact; 409 conflict when one with the external_id, or a user with the email, exists.
- PUT /contacts/{id}: fields given replace the stored ones, fields left out stay; 404 for an unknown id.
- POST /events {event_name, created_at, user_id | id | email, metadata}: 202 with an empty body; 404 "User Not Found"
  for a contact it cannot find; an event with the same contact, name and created_at as one it has is ignored
  ("Duplicated events are responded to using the normal 202 Accepted code").
- POST /companies: "Companies are looked up via company_id ... if not found via company_id, the new company will be
  created, if found, that company will be updated".
- POST /contacts/{id}/companies {id}: the company attached to the contact; 404 for an unknown contact or company.
- A request without `Authorization: Bearer <token>` is 401.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from vendor_server import Answer, Received, StandIn

CONTACT_FIELDS = ("role", "external_id", "email", "phone", "name", "avatar", "signed_up_at", "last_seen_at")
COMPANY_FIELDS = ("company_id", "name", "plan", "size", "website", "industry", "monthly_spend", "remote_created_at")


class IntercomStandIn(StandIn):
    def __init__(self, token: str):
        super().__init__()
        self.token = token
        self.contacts: dict[str, dict] = {}     # Intercom id -> the contact's fields
        self.companies: dict[str, dict] = {}    # Intercom id -> the company's fields
        self.events: list[dict] = []            # {contact, event_name, created_at, metadata}
        self.attached: set[tuple[str, str]] = set()   # (contact id, company id)
        self._ids = 0

    # ------------------------------------------------------------------ requests
    def _answer(self, received: Received) -> Answer:
        headers = {k.lower(): v for k, v in received.headers.items()}
        if headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "unauthorized", "Access Token Invalid")
        path = [unquote(part) for part in urlsplit(received.path).path.strip("/").split("/")]
        body = received.body if isinstance(received.body, dict) else {}
        method = received.method
        if method == "GET" and path[:2] == ["contacts", "find_by_external_id"] and len(path) == 3:
            found = [c for c in self.contacts.values() if c.get("external_id") == path[2] and c.get("role") == "user"]
            return Answer(200, found[0]) if found else _error(404, "not_found", "User Not Found")
        if method == "POST" and path == ["contacts", "search"]:
            return self._search(body.get("query") or {})
        if method == "POST" and path == ["contacts"]:
            return self._create(body)
        if method == "PUT" and path[0] == "contacts" and len(path) == 2:
            if path[1] not in self.contacts:
                return _error(404, "not_found", "Contact Not Found")
            self.contacts[path[1]].update({k: body[k] for k in CONTACT_FIELDS if k in body})
            return Answer(200, self.contacts[path[1]])
        if method == "POST" and path == ["events"]:
            return self._event(body)
        if method == "POST" and path == ["companies"]:
            return self._company(body)
        if method == "POST" and path[0] == "contacts" and len(path) == 3 and path[2] == "companies":
            if path[1] not in self.contacts or body.get("id") not in self.companies:
                return _error(404, "not_found", "Contact or company not found")
            self.attached.add((path[1], body["id"]))
            return Answer(200, self.companies[body["id"]])
        return _error(404, "not_found", f"{method} {received.path}")

    def _search(self, query: dict) -> Answer:
        if query.get("operator") != "=" or query.get("field") not in ("email", "external_id"):
            return _error(400, "parameter_invalid", "this stand-in searches by email or external_id with =")
        found = [c for c in self.contacts.values() if c.get(query["field"]) == query.get("value")]
        return Answer(200, {"type": "list", "data": found, "total_count": len(found),
                            "pages": {"type": "pages", "page": 1, "per_page": 50, "total_pages": 1 if found else 0}})

    def _create(self, body: dict) -> Answer:
        if not any(body.get(k) for k in ("email", "external_id", "role")):
            return _error(400, "parameter_invalid", "email, external_id or role is required")
        clash = [c for c in self.contacts.values()
                 if (body.get("external_id") and c.get("external_id") == body["external_id"])
                 or (body.get("email") and c.get("email") == body["email"] and c.get("role") == "user")]
        if clash:
            return _error(409, "conflict", f"A contact matching those details already exists with id={clash[0]['id']}")
        self._ids += 1
        contact_id = f"6600{self._ids:04d}"
        self.contacts[contact_id] = {"type": "contact", "id": contact_id, "role": body.get("role") or "lead",
                                     **{k: body[k] for k in CONTACT_FIELDS if k in body and k != "role"}}
        return Answer(200, self.contacts[contact_id])

    def _event(self, body: dict) -> Answer:
        if not body.get("event_name") or not isinstance(body.get("created_at"), int):
            return _error(400, "parameter_invalid", "event_name and created_at are required")
        if body.get("id"):
            found = [body["id"]] if body["id"] in self.contacts else []
        elif body.get("user_id"):
            found = [i for i, c in self.contacts.items() if c.get("external_id") == body["user_id"]]
        else:
            found = [i for i, c in self.contacts.items() if body.get("email") and c.get("email") == body["email"]]
        if not found:
            return _error(404, "not_found", "User Not Found")
        event = {"contact": found[0], "event_name": body["event_name"], "created_at": body["created_at"],
                 "metadata": body.get("metadata") or {}}
        if not any((e["contact"], e["event_name"], e["created_at"]) == (event["contact"], event["event_name"], event["created_at"])
                   for e in self.events):
            self.events.append(event)
        return Answer(202, None)

    def _company(self, body: dict) -> Answer:
        found = [i for i, c in self.companies.items() if body.get("company_id") and c.get("company_id") == body["company_id"]]
        if found:
            company_id = found[0]
        else:
            self._ids += 1
            company_id = f"7700{self._ids:04d}"
            self.companies[company_id] = {"type": "company", "id": company_id}
        self.companies[company_id].update({k: body[k] for k in COMPANY_FIELDS if k in body})
        return Answer(200, self.companies[company_id])

    # ------------------------------------------------------------------ state, for assertions
    def contact(self, **identifier) -> dict:
        (key, value), = identifier.items()
        (found,) = [c for c in self.contacts.values() if c.get(key) == value]
        return found

    def events_of(self, **identifier) -> list[dict]:
        contact_id = self.contact(**identifier)["id"]
        return [e for e in self.events if e["contact"] == contact_id]


def _error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"type": "error.list", "request_id": "stand-in", "errors": [{"code": code, "message": message}]})
