"""Klaviyo's profile-import and Events API as far as eventmap uses them, with state, on a real local HTTP server
(tests/vendor_server.py). What it holds and answers follows Klaviyo's reference:

- POST /api/profile-import: the profile matching the request's email, phone_number or external_id is updated
  (200), else one is created (201); attributes left out of the request stay as they were. Identifiers that
  belong to two different profiles are a conflict (409 duplicate_profile), as Klaviyo refuses to merge them.
  https://developers.klaviyo.com/en/reference/create_or_update_profile
- POST /api/events: 202; the event goes to the profile its identifiers match, and when none does Klaviyo
  creates the profile from the event's profile ("this endpoint allows you to create a new profile").
  An event whose unique_id repeats for the same profile and metric is not recorded again.
  https://developers.klaviyo.com/en/reference/create_event
- A request without `Authorization: Klaviyo-API-Key <key>` is 401, without the `revision` header 400.
"""
from __future__ import annotations

from vendor_server import Answer, Received, StandIn

IDENTIFIERS = ("email", "phone_number", "external_id", "anonymous_id")


class KlaviyoStandIn(StandIn):
    def __init__(self, api_key: str):
        super().__init__()
        self.api_key = api_key
        self.profiles: dict[str, dict] = {}          # id -> attributes (identifiers, fields, properties)
        self.events: list[dict] = []                  # {profile, metric, unique_id, properties, value, time}
        self._ids = 0

    # ------------------------------------------------------------------ requests
    def _answer(self, received: Received) -> Answer:
        headers = {k.lower(): v for k, v in received.headers.items()}
        if headers.get("authorization") != f"Klaviyo-API-Key {self.api_key}":
            return _error(401, "not_authenticated", "Missing or invalid private key.")
        if not headers.get("revision"):
            return _error(400, "missing_revision", "A revision header is required.")
        body = received.body if isinstance(received.body, dict) else {}
        data = body.get("data") or {}
        if received.path == "/api/profile-import" and data.get("type") == "profile":
            return self._import(data.get("attributes") or {})
        if received.path == "/api/events" and data.get("type") == "event":
            return self._event(data.get("attributes") or {})
        return _error(404, "not_found", f"{received.method} {received.path}")

    def _import(self, attributes: dict) -> Answer:
        matches = self._matching(attributes)
        if len(matches) > 1:
            return _error(409, "duplicate_profile", "A profile already exists with one of these identifiers.")
        if not any(attributes.get(k) for k in ("email", "phone_number", "external_id")):
            return _error(400, "invalid", "One of email, phone_number or external_id is required.")
        if matches:
            (profile_id,) = matches
            _update(self.profiles[profile_id], attributes)
            return Answer(200, {"data": {"type": "profile", "id": profile_id}})
        profile_id = self._create(attributes)
        return Answer(201, {"data": {"type": "profile", "id": profile_id}})

    def _event(self, attributes: dict) -> Answer:
        who = ((attributes.get("profile") or {}).get("data") or {}).get("attributes") or {}
        name = (((attributes.get("metric") or {}).get("data") or {}).get("attributes") or {}).get("name")
        if not name or "properties" not in attributes or not any(who.get(k) for k in IDENTIFIERS):
            return _error(400, "invalid", "properties, a metric name and a profile identifier are required.")
        matches = self._matching(who)
        if len(matches) > 1:
            return _error(409, "duplicate_profile", "The event's identifiers belong to different profiles.")
        profile_id = matches[0] if matches else self._create(who)
        if matches:
            _update(self.profiles[profile_id], who)
        unique = attributes.get("unique_id")
        if not any(e["profile"] == profile_id and e["metric"] == name and e["unique_id"] == unique for e in self.events):
            self.events.append({"profile": profile_id, "metric": name, "unique_id": unique, "time": attributes.get("time"),
                                "value": attributes.get("value"), "properties": attributes["properties"]})
        return Answer(202, None)

    # ------------------------------------------------------------------ state
    def _matching(self, attributes: dict) -> list[str]:
        found = []
        for profile_id, profile in self.profiles.items():
            if any(attributes.get(k) and profile.get(k) == attributes[k] for k in IDENTIFIERS):
                found.append(profile_id)
        return found

    def _create(self, attributes: dict) -> str:
        self._ids += 1
        profile_id = f"01KLAVIYO{self._ids:04d}"
        self.profiles[profile_id] = {}
        _update(self.profiles[profile_id], attributes)
        return profile_id

    def profile(self, **identifier) -> dict:
        (key, value), = identifier.items()
        (found,) = [p for p in self.profiles.values() if p.get(key) == value]
        return found

    def events_of(self, **identifier) -> list[dict]:
        (key, value), = identifier.items()
        (profile_id,) = [i for i, p in self.profiles.items() if p.get(key) == value]
        return [e for e in self.events if e["profile"] == profile_id]


def _update(profile: dict, attributes: dict) -> None:
    """Fields given replace the stored ones (null clears); fields left out stay; properties merge key by key."""
    for key, value in attributes.items():
        if key == "properties" and isinstance(value, dict):
            profile.setdefault("properties", {}).update(value)
        elif key == "location" and isinstance(value, dict):
            profile.setdefault("location", {}).update(value)
        elif value is None:
            profile.pop(key, None)
        else:
            profile[key] = value


def _error(status: int, code: str, detail: str) -> Answer:
    return Answer(status, {"errors": [{"id": "stand-in", "status": status, "code": code, "title": code, "detail": detail}]})
