"""HubSpot's CRM contacts and companies, v4 associations and custom behavioral events, as far as eventmap uses them,
with state, on a real local HTTP server (tests/vendor_server.py). What it holds and answers follows HubSpot's docs:

- PATCH /crm/v3/objects/contacts/{email}?idProperty=email: the contact with that email updated (200), properties
  given replace the stored ones; 404 when there is none.
  https://developers.hubspot.com/docs/api-reference/crm-contacts-v3/guide
- POST /crm/v3/objects/contacts: a new contact (201); 409 "Contact already exists. Existing ID: N" for an email HubSpot
  has ("HubSpot does not allow you to create duplicate contacts based on email").
- GET /crm/v3/objects/contacts/{email}?idProperty=email: the contact (200), else 404.
- POST /crm/v3/objects/companies/batch/upsert: each input's company found by its idProperty's value, updated, else
  created with it; 200 {status: COMPLETE, results: [{id, properties, new}]}.
- PUT /crm/v4/objects/companies/{id}/associations/default/contacts/{id}: the default association (200); 404 for an
  unknown record.
- POST /events/v3/send: 204; the occurrence goes to the contact with its email, a contact HubSpot creates when it has
  none; an eventName that is not pe<portal>_<a defined event> is 400, as are property names or values past HubSpot's
  limits ("If these limits are exceeded when making an HTTP API request, the request will fail"); an occurrence whose
  uuid HubSpot has seen for that event is not kept again ("the first will be accepted and all others will be
  rejected"; how the refusal is answered is not documented, so it is answered 204 here and not recorded).
- A request without `Authorization: Bearer <token>` is 401.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

from vendor_server import Answer, Received, StandIn

PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")


class HubSpotStandIn(StandIn):
    def __init__(self, token: str, portal_id: str, events: tuple[str, ...] = (), group_property: str = "segment_group_id"):
        super().__init__()
        self.token, self.portal_id, self.group_property = token, portal_id, group_property
        self.defined = {f"pe{portal_id}_{name}" for name in events}   # the event definitions the portal has
        self.contacts: dict[str, dict] = {}     # record id -> properties
        self.companies: dict[str, dict] = {}    # record id -> properties
        self.associations: set[tuple[str, str]] = set()   # (company id, contact id)
        self.occurrences: list[dict] = []       # {eventName, contact, occurredAt, properties, uuid}
        self._ids = 100

    # ------------------------------------------------------------------ requests
    def _answer(self, received: Received) -> Answer:
        headers = {k.lower(): v for k, v in received.headers.items()}
        if headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
        url = urlsplit(received.path)
        path = [unquote(part) for part in url.path.strip("/").split("/")]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = received.body if isinstance(received.body, dict) else {}
        method = received.method
        if path[:4] == ["crm", "v3", "objects", "contacts"]:
            return self._contacts(method, path[4:], query, body)
        if path == ["crm", "v3", "objects", "companies", "batch", "upsert"] and method == "POST":
            return self._upsert_companies(body.get("inputs") or [])
        if (method == "PUT" and len(path) == 9 and path[:4] == ["crm", "v4", "objects", "companies"]
                and path[5:8] == ["associations", "default", "contacts"]):
            if path[4] not in self.companies or path[8] not in self.contacts:
                return _error(404, "OBJECT_NOT_FOUND", "One of the records does not exist")
            self.associations.add((path[4], path[8]))
            return Answer(200, {"status": "COMPLETE", "results": [{"from": {"id": path[4]}, "to": {"id": path[8]}}]})
        if path == ["events", "v3", "send"] and method == "POST":
            return self._occurrence(body)
        return _error(404, "NOT_FOUND", f"{method} {received.path}")

    def _contacts(self, method: str, rest: list[str], query: dict, body: dict) -> Answer:
        if not rest and method == "POST":
            email = (body.get("properties") or {}).get("email")
            existing = self._by_email(email)
            if existing:
                return _error(409, "CONFLICT", f"Contact already exists. Existing ID: {existing}")
            self._ids += 1
            record = str(self._ids)
            self.contacts[record] = dict(body.get("properties") or {})
            return Answer(201, {"id": record, "properties": self.contacts[record]})
        if len(rest) == 1 and method in ("PATCH", "GET"):
            record = self._by_email(rest[0]) if query.get("idProperty") == "email" else (rest[0] if rest[0] in self.contacts else None)
            if record is None:
                return _error(404, "OBJECT_NOT_FOUND", "resource not found")
            if method == "PATCH":
                self.contacts[record].update(body.get("properties") or {})
            return Answer(200, {"id": record, "properties": self.contacts[record]})
        return _error(405, "METHOD_NOT_ALLOWED", method)

    def _upsert_companies(self, inputs: list) -> Answer:
        results = []
        for given in inputs:
            prop, value = given.get("idProperty"), given.get("id")
            if prop != self.group_property:
                return _error(400, "VALIDATION_ERROR", f"{prop} is not a unique property of companies")
            found = [i for i, c in self.companies.items() if c.get(prop) == value]
            new = not found
            if new:
                self._ids += 1
                record = str(self._ids)
                self.companies[record] = {prop: value}
            else:
                record = found[0]
            self.companies[record].update(given.get("properties") or {})
            results.append({"id": record, "properties": self.companies[record], "new": new})
        return Answer(200, {"status": "COMPLETE", "results": results})

    def _occurrence(self, body: dict) -> Answer:
        name = body.get("eventName")
        if name not in self.defined:
            return _error(400, "VALIDATION_ERROR", f"Event {name} does not exist in portal {self.portal_id}")
        properties = body.get("properties")
        if not isinstance(properties, dict):
            return _error(400, "VALIDATION_ERROR", "properties is required")
        for key, value in properties.items():
            limit = 200 if key.endswith(("url", "referrer")) else 50
            if not PROPERTY_NAME.match(key) or (isinstance(value, str) and len(value) > limit):
                return _error(400, "VALIDATION_ERROR", f"property {key} is past the custom event limits")
        email = body.get("email")
        if not email:
            return _error(400, "VALIDATION_ERROR", "one of email, utk or objectId is required")
        contact = self._by_email(email)
        if contact is None:   # an occurrence for an email HubSpot does not have makes the contact
            self._ids += 1
            contact = str(self._ids)
            self.contacts[contact] = {"email": email}
        uuid = body.get("uuid")
        if uuid is None or not any(o["uuid"] == uuid and o["eventName"] == name for o in self.occurrences):
            self.occurrences.append({"eventName": name, "contact": contact, "occurredAt": body.get("occurredAt"),
                                     "properties": properties, "uuid": uuid})
        return Answer(204, None)

    def _by_email(self, email) -> str | None:
        found = [i for i, c in self.contacts.items() if email and str(c.get("email", "")).lower() == str(email).lower()]
        return found[0] if found else None

    # ------------------------------------------------------------------ state, for assertions
    def contact(self, email: str) -> dict:
        return self.contacts[self._by_email(email)]


def _error(status: int, category: str, message: str) -> Answer:
    return Answer(status, {"status": "error", "message": message, "category": category, "correlationId": "stand-in"})
