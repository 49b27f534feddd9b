"""Slack's key rules, through the shipped mapping, and one message delivered to a real local server."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import HttpClient, send

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = json.loads((ROOT / "fixtures" / "settings" / "slack.json").read_text(encoding="utf-8"))
TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1",
         "context": {"traits": {"name": "Ann <Lee> & co"}}}


def render(engine, event, **settings):
    return engine.render(event, engine.route("slack", {**SETTINGS, **settings}, environ={}))


def test_the_message_is_segments_default_template_escaped_for_slack(engine):
    body = render(engine, TRACK).requests[0].body
    assert body["text"] == "Ann &lt;Lee&gt; &amp; co did Order Completed."


@pytest.mark.parametrize(("event", "who"), [
    ({"context": {"traits": {"firstName": "Ann", "lastName": "Lee"}}}, "Ann Lee"),
    ({"context": {"traits": {"email": "ann@example.com"}}}, "ann@example.com"),
    ({}, "User u1"),
    ({"userId": None, "anonymousId": "a1"}, "Anonymous user a1")])
def test_who_is_the_first_found_as_in_segments_slack_destination(engine, event, who):
    merged = {**TRACK, "context": {}, **event}
    merged = {k: v for k, v in merged.items() if v is not None}
    assert render(engine, merged).requests[0].body["text"] == f"{who} did Order Completed."


def test_only_the_events_named_in_settings_are_posted(engine):
    outcome = render(engine, {**TRACK, "event": "Signed Up"})
    assert outcome.status == "skipped" and outcome.requests == []
    assert render(engine, {**TRACK, "event": "Signed Up"}, events=["Signed Up"]).status == "send"


def test_channel_username_and_icon_come_from_settings(engine):
    body = render(engine, {**TRACK, "event": "Report Exported"}, channel="#general", username="eventmap",
                  icon_emoji=":tada:").requests[0].body
    assert (body["channel"], body["username"], body["icon_emoji"]) == ("#general", "eventmap", ":tada:")
    assert render(engine, TRACK, channel="#general").requests[0].body["channel"] == "#orders"  # per-event channel


def test_the_webhook_url_is_a_secret_and_base_url_keeps_its_path(engine):
    request = render(engine, TRACK).requests[0]
    assert request.url == SETTINGS["webhook_url"] and request.to_dict()["url"] == "***"
    moved = render(engine, TRACK, base_url="http://127.0.0.1:9").requests[0]
    assert moved.url == "http://127.0.0.1:9/services/T0TEST0001/B0TEST0001/testslackwebhooksecret0001"


def test_a_webhook_url_that_is_not_slacks_is_a_settings_error(engine):
    from engine.problems import ConfigError
    with pytest.raises(ConfigError, match="webhook_url"):
        engine.route("slack", {**SETTINGS, "webhook_url": "https://example.com/hook"}, environ={})


def test_the_message_reaches_a_webhook(engine, httpserver):
    httpserver.expect_request("/services/T0TEST0001/B0TEST0001/testslackwebhooksecret0001", method="POST",
                              json={"text": "Ann &lt;Lee&gt; &amp; co did Order Completed.", "channel": "#orders"}
                              ).respond_with_data("ok")
    (request,) = render(engine, TRACK, base_url=httpserver.url_for("").rstrip("/")).requests
    delivery = send(HttpClient(), request)
    assert delivery.delivered and delivery.status == 200
    httpserver.check_assertions()
