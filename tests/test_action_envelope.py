"""An action may opt out of the destination's envelope, or have its own (PostHog: identify goes to
/capture unwrapped while track is batched in {api_key, batch: [...]})."""
from __future__ import annotations

import pytest
from conftest import write_mappings

from engine import ConfigError, Engine

POSTHOG = """\
name: PostHog
settings:
  type: object
  properties:
    api_key: {type: string}
defaults:
  request: {url: "https://posthog.test/batch/"}
envelope:
  body: {api_key: "{{ settings.api_key }}", batch: {"@path": items}}
batch:
  max_events: 10
actions:
  identify:
    envelope: false
    request: {url: "https://posthog.test/capture/"}
    body:
      api_key: "{{ settings.api_key }}"
      event: $identify
      distinct_id: {"@path": event.userId}
  page:
    envelope:
      body: {api_key: "{{ settings.api_key }}", event: {"@path": "items[0]"}, one: true}
    body: {event: $pageview, distinct_id: {"@path": event.userId}}
  track:
    body: {event: {"@path": event.event}, distinct_id: {"@path": event.userId}}
"""


def event(kind: str, n: int) -> dict:
    base = {"type": kind, "userId": f"u{n}", "messageId": f"m{n}"}
    return {**base, "event": f"E{n}"} if kind == "track" else base


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(write_mappings(tmp_path_factory.mktemp("posthog"), {"posthog.yaml": POSTHOG}))


def test_an_action_without_the_envelope_sends_its_body_as_mapped(engine):
    route = engine.route("posthog", {"api_key": "phc_1"})
    identify = engine.render(event("identify", 1), route)
    assert identify.requests[0].body == {"api_key": "phc_1", "event": "$identify", "distinct_id": "u1"}
    page = engine.render(event("page", 2), route)
    assert page.requests[0].body == {"api_key": "phc_1", "event": {"event": "$pageview", "distinct_id": "u2"},
                                     "one": True}
    track = engine.render(event("track", 3), route)
    assert track.requests[0].body == {"api_key": "phc_1", "batch": [{"event": "E3", "distinct_id": "u3"}]}


def test_such_an_action_is_sent_alone_and_the_rest_batched(engine):
    route = engine.route("posthog", {"api_key": "phc_1"})
    outcomes = [engine.render(event(kind, n), route) for n, kind in enumerate(["track", "identify", "page", "track"])]
    requests = engine.batch(route, outcomes)
    assert [(r.url, r.body) for r in requests] == [
        ("https://posthog.test/capture/", {"api_key": "phc_1", "event": "$identify", "distinct_id": "u1"}),
        ("https://posthog.test/batch/", {"api_key": "phc_1", "event": {"event": "$pageview", "distinct_id": "u2"},
                                         "one": True}),
        ("https://posthog.test/batch/", {"api_key": "phc_1", "batch": [{"event": "E0", "distinct_id": "u0"},
                                                                       {"event": "E3", "distinct_id": "u3"}]})]


def test_an_own_envelope_with_batch_true_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        Engine(write_mappings(tmp_path, {"posthog.yaml": POSTHOG.replace("    envelope: false\n",
                                                                         "    envelope: false\n    batch: true\n")}))
    assert [str(p) for p in refused.value.problems] == [
        "mappings/destinations/posthog.yaml:15: actions.identify.batch: an action with its own envelope (or none) "
        "is sent alone, never in a batch: remove 'batch: true'"]
