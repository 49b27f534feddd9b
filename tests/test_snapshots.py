"""Snapshot every fixture event through every destination mapping.

Destinations and fixtures are discovered from the file system, so adding a
mapping in ``mappings/destinations/`` or an event in ``fixtures/events/``
needs no Python: run ``pytest tests/test_snapshots.py --snapshot-update``,
read the new files under ``tests/snapshots/<destination>/``, and commit them.

Snapshots show what is sent: the fixture settings (``fixtures/settings/``) are
fake test values, not secrets, so requests are shown unmasked, and a body field
that carries base64 JSON (Richpanel's ``hs``) is also shown decoded beside the
request. A change to any field, credential or signature fails a snapshot. That
masking hides every secret is checked here too, on the same outcomes.
"""
from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import pytest

from engine import Engine
from engine.secrets import parts

ROOT = Path(__file__).resolve().parents[1]
DESTINATION_FILES = sorted((ROOT / "mappings" / "destinations").glob("*.yaml"))
EVENT_FILES = sorted((ROOT / "fixtures" / "events").glob("*.json"))
SETTINGS_DIR = ROOT / "fixtures" / "settings"
SNAPSHOTS = Path(__file__).parent / "snapshots"

SLUGS = [path.stem for path in DESTINATION_FILES]


def dump(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def load_event(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def shown(outcome) -> dict:
    """The outcome as sent (unmasked: fixture settings are fake), with base64 JSON body fields decoded."""
    data = outcome.to_dict(show_secrets=True)
    data["requests"] = [decoded(request) for request in data["requests"]]
    return data


def decoded(request: dict) -> dict:
    """``request`` plus ``decoded``: each body field that is base64 of a JSON object, as that object."""
    body = request.get("body")
    found = {}
    for key, value in (body.items() if isinstance(body, dict) else ()):
        if isinstance(value, str) and len(value) >= 16:
            try:
                found[key] = json.loads(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
    return {**request, "decoded": found} if found else request


def fixture_settings(engine: Engine, slug: str) -> dict:
    """fixtures/settings/<slug>.json, or "test-<name>" for each required setting of the schema."""
    path = SETTINGS_DIR / f"{slug}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {name: f"test-{name}" for name in engine.destination(slug).settings.required}


@pytest.fixture(scope="module")
def engine() -> Engine:
    """Its own, not conftest's: the README's tutorial runs this file alone in a clone (tests/test_docs_path.py)."""
    return Engine()


@pytest.fixture(scope="module")
def routes(engine):
    # environ={} keeps EVENTMAP_* variables of the machine out of the snapshots
    return {slug: engine.route(slug, fixture_settings(engine, slug), environ={}) for slug in SLUGS}


def test_discovery_finds_files():
    assert SLUGS, "no destination mappings found"
    assert EVENT_FILES, "no fixture events found"


@pytest.mark.parametrize("event_file", EVENT_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("slug", SLUGS)
def test_snapshot(engine, routes, snapshot, slug, event_file):
    outcome = engine.render(load_event(event_file), routes[slug])
    snapshot.snapshot_dir = SNAPSHOTS / slug
    snapshot.assert_match(dump(shown(outcome)), f"{event_file.stem}.json")
    assert_masked(outcome.to_dict(), routes[slug])


@pytest.mark.parametrize("slug", SLUGS)
def test_batch_snapshot(engine, routes, snapshot, slug):
    route = routes[slug]
    outcomes = [engine.render(load_event(path), route) for path in EVENT_FILES]
    requests = engine.batch(route, outcomes)
    snapshot.snapshot_dir = SNAPSHOTS / slug
    snapshot.assert_match(dump([decoded(r.to_dict(show_secrets=True)) for r in requests]), "_batch.json")
    assert_masked([r.to_dict() for r in requests], route)


def assert_masked(shown_to_users, route) -> None:
    """What users see of these requests (``to_dict()``) holds none of the route's secrets."""
    assert route.secrets, "every shipped destination has a secret setting"
    text = json.dumps(shown_to_users, ensure_ascii=False)
    for secret in route.secrets:
        for part in {secret, *parts(secret)}:   # the parts the masker masks on their own (secrets.parts)
            assert part not in text
