"""Snapshot every fixture event through every destination mapping.

Destinations and fixtures are discovered from the file system, so adding a
mapping in ``mappings/destinations/`` or an event in ``fixtures/events/``
needs no Python: run ``pytest tests/test_snapshots.py --snapshot-update``,
read the new files under ``tests/snapshots/<destination>/``, and commit them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import Engine

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


def fixture_settings(engine: Engine, slug: str) -> dict:
    """fixtures/settings/<slug>.json, or "test-<name>" for each required setting of the schema."""
    path = SETTINGS_DIR / f"{slug}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {name: f"test-{name}" for name in engine.destination(slug).settings.required}


@pytest.fixture(scope="module")
def engine() -> Engine:
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
    snapshot.assert_match(dump(outcome.to_dict()), f"{event_file.stem}.json")


@pytest.mark.parametrize("slug", SLUGS)
def test_batch_snapshot(engine, routes, snapshot, slug):
    route = routes[slug]
    outcomes = [engine.render(load_event(path), route) for path in EVENT_FILES]
    requests = engine.batch(route, outcomes)
    snapshot.snapshot_dir = SNAPSHOTS / slug
    snapshot.assert_match(dump([r.to_dict() for r in requests]), "_batch.json")
