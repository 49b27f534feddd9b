"""The rules the seeds (../shared/seeds/000-003) and the mapping comments state, asserted exactly.

Each test renders real fixture events (fixtures/events/) or small inline events
through ``Engine`` with the fake settings in fixtures/settings/ and checks the
values a vendor would receive, not only their presence.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from engine import audience_identify
from engine.deliver import SavedResponses
from engine.secrets import parts

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "fixtures" / "events"
SNAPSHOTS = Path(__file__).parent / "snapshots"
SETTINGS = {slug: json.loads((ROOT / "fixtures" / "settings" / f"{slug}.json").read_text())
            for slug in ("planhat", "richpanel", "crisp")}

PLANHAT_TOKEN = "test-tenant-token-0001"
RICHPANEL_KEY = "test-richpanel-api-key-0001"
RICHPANEL_SECRET = "test-richpanel-api-secret-0001"
CRISP_KEY = "test-crisp-identifier-0001:test-crisp-key-0001"
CRISP_WEBSITE = "test-website-id-0001"
SECRETS = [PLANHAT_TOKEN, RICHPANEL_KEY, RICHPANEL_SECRET, CRISP_KEY]

PLANHAT_URL = f"https://api.planhat.com/analytics/{PLANHAT_TOKEN}"
RICHPANEL_URL = "https://api.richpanel.com/v2/bt"
CRISP_BASE = f"https://api.crisp.chat/v1/website/{CRISP_WEBSITE}"


def event(stem: str) -> dict:
    return json.loads((EVENTS / f"{stem}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def routes(engine):
    return {slug: engine.route(slug, settings, environ={}) for slug, settings in SETTINGS.items()}


def render(engine, routes, slug: str, ev: dict):
    return engine.render(ev, routes[slug])


def only_request(outcome):
    assert outcome.status == "send", (outcome.reason, outcome.errors)
    assert len(outcome.requests) == 1
    return outcome.requests[0]


def richpanel_call(request) -> dict:
    """The decoded `hs` payload of a Richpanel request (real values, not masked)."""
    return json.loads(base64.b64decode(request.body["hs"]).decode("utf-8"))


def richpanel_event(request) -> dict:
    call = richpanel_call(request)
    assert len(call["events"]) == 1
    return call["events"][0]


def all_outcomes(engine, routes, ev):
    """Outcomes keyed by display name, rendered in one render_all pass."""
    outcomes = engine.render_all(ev, [routes["planhat"], routes["richpanel"], routes["crisp"]])
    assert [o.destination for o in outcomes] == ["Planhat", "Richpanel", "Crisp"]
    return {o.destination: o for o in outcomes}


# --------------------------------------------------------------------------- Planhat


@pytest.mark.parametrize("stem", ["identify-full", "track-clicked-login", "page-named", "group", "alias"])
def test_planhat_external_id_is_user_id_and_source_is_segment(engine, routes, stem):
    ev = event(stem)
    body = only_request(render(engine, routes, "planhat", ev)).body
    assert body["externalId"] == ev["userId"]
    assert body["source"] == "Segment"


def test_planhat_identify_full_body(engine, routes):
    request = only_request(render(engine, routes, "planhat", event("identify-full")))
    assert request.method == "POST"
    assert request.url == PLANHAT_URL
    assert request.body == {
        "externalId": "usr_4f2a91c7",
        "email": "ada.lovelace@example.com",
        "name": "Ada Lovelace",
        "title": "Head of Analytics",
        "companyExternalId": "acme-corp",
        "source": "Segment",
        "info": {
            "address": {"street": "12 Analytical Row", "city": "London", "postalCode": "EC1A 1BB", "country": "GB"},
            "company": {"id": "acme-corp", "name": "Acme Corp", "industry": "Manufacturing"},
            "createdAt": "2023-11-02T08:00:00.000Z",
            "phone": "+44 20 7946 0958",
            "plan": "enterprise",
        },
    }


def test_planhat_name_title_email_mapping_non_ascii(engine, routes):
    body = only_request(render(engine, routes, "planhat", event("identify-non-ascii-latin"))).body
    assert (body["name"], body["title"], body["email"]) == (
        "Zoë Ñúñez-Çelik", "Directora de Operações", "zoe.nunez@example.com")
    encoded = only_request(render(engine, routes, "planhat", event("identify-non-ascii-cjk"))).encoded_body()
    assert '"name":"山田 太郎"'.encode("utf-8") in encoded


@pytest.mark.parametrize("stem, name", [("identify-camelcase-names", "Katherine Johnson"),
                                        ("identify-snakecase-names", "Dorothy Vaughan")])
def test_planhat_name_from_first_and_last_name(engine, routes, stem, name):
    body = only_request(render(engine, routes, "planhat", event(stem))).body
    assert body["name"] == name
    assert "info" not in body  # first/last names are not repeated as custom info


def test_planhat_identify_without_email_or_user_id_is_rejected(engine, routes):
    ev = {"type": "identify", "anonymousId": "anon-1", "messageId": "m-1", "traits": {"plan": "free"}}
    outcome = render(engine, routes, "planhat", ev)
    assert outcome.status == "rejected"
    assert [e.as_dict() for e in outcome.errors] == [{
        "path": "externalId || email",
        "message": "Planhat identify: 'externalId' (from userId) or 'email' is required; "
                   "Planhat ignores calls with neither"}]


def test_planhat_track_is_an_activity(engine, routes):
    ev = event("track-order-completed")
    body = only_request(render(engine, routes, "planhat", ev)).body
    assert body["action"] == "Order Completed"
    assert body["info"] == ev["properties"]
    assert body["date"] == "2024-05-14T12:30:45.123Z"
    assert body["email"] == "ada.lovelace@example.com"
    assert set(body) == {"externalId", "email", "action", "date", "info", "source"}


def test_planhat_page_is_a_viewed_activity(engine, routes):
    named = only_request(render(engine, routes, "planhat", event("page-named"))).body
    assert named["action"] == "Viewed Pricing Page"
    assert named["info"]["category"] == "Marketing"
    unnamed = only_request(render(engine, routes, "planhat", event("page-unnamed"))).body
    assert unnamed["action"] == "Viewed Page /docs/getting-started"
    assert unnamed["info"] == {"url": "https://example.com/docs/getting-started"}


def test_planhat_alias_is_an_aliased_activity(engine, routes):
    body = only_request(render(engine, routes, "planhat", event("alias"))).body
    assert body == {"externalId": "usr_4f2a91c7", "action": "Aliased", "date": "2024-05-14T09:26:41.732Z",
                    "info": {"previousId": "5b1e9d3c-7a42-4f0e-9c61-8d2a4e7f1b35"}, "source": "Segment"}


def test_planhat_group_sets_company_external_id(engine, routes):
    body = only_request(render(engine, routes, "planhat", event("group"))).body
    assert body["companyExternalId"] == "acme-corp"
    assert body["info"]["name"] == "Acme Corp"
    assert "companyName" not in body["info"]
    assert body["info"]["employees"] == 420


def test_planhat_default_url(engine, routes):
    assert only_request(render(engine, routes, "planhat", event("track-clicked-login"))).url == PLANHAT_URL
    batch = engine.batch(routes["planhat"], [render(engine, routes, "planhat", event("alias"))])
    assert [r.url for r in batch] == [f"https://api.planhat.com/analytics/bulk/{PLANHAT_TOKEN}"]


def test_planhat_subdomain_changes_url(engine):
    route = engine.route("planhat", {"tenant_token": PLANHAT_TOKEN, "subdomain": "analytics"}, environ={})
    request = only_request(engine.render(event("track-clicked-login"), route))
    assert request.url == f"https://analytics.planhat.com/analytics/{PLANHAT_TOKEN}"


def test_planhat_base_url_overrides_subdomain(engine):
    route = engine.route("planhat", {"tenant_token": PLANHAT_TOKEN, "subdomain": "analytics",
                                     "base_url": "http://127.0.0.1:8080"}, environ={})
    outcome = engine.render(event("track-clicked-login"), route)
    assert only_request(outcome).url == f"http://127.0.0.1:8080/analytics/{PLANHAT_TOKEN}"
    assert [r.url for r in engine.batch(route, [outcome])] == [f"http://127.0.0.1:8080/analytics/bulk/{PLANHAT_TOKEN}"]


def test_planhat_batch_is_a_json_array_of_the_items(engine, routes):
    outcomes = [render(engine, routes, "planhat", event(s)) for s in ("alias", "track-clicked-login")]
    [request] = engine.batch(routes["planhat"], outcomes)
    assert request.body == [outcomes[0].requests[0].body, outcomes[1].requests[0].body]
    assert request.message_ids == ("ajs-next-37693cfc748049e45d87b8c7d8b9aacd",
                                   "ajs-next-9bf31c7ff062936a96d3c8bd1f8f2ff3")


# --------------------------------------------------------------------------- Richpanel


def test_richpanel_identify_without_user_id_is_rejected_naming_uid(engine, routes):
    outcome = render(engine, routes, "richpanel", event("identify-anonymous"))
    assert outcome.status == "rejected"
    assert outcome.requests == []
    assert outcome.reason == "required fields are missing"
    assert [e.path for e in outcome.errors] == ["userProperties.uid"]
    assert "'uid'" in outcome.errors[0].message
    assert outcome.errors[0].message == ("Richpanel identify: 'uid' is required (from userId); "
                                         "an identify without userId cannot create a customer")


def test_richpanel_identify_maps_user_properties_and_signs(engine, routes):
    request = only_request(render(engine, routes, "richpanel", event("identify-full")))
    assert request.method == "POST"
    assert request.url == RICHPANEL_URL
    assert set(request.body) == {"hs", "s"}
    hs = request.body["hs"]
    assert request.body["s"] == hashlib.sha256((hs + RICHPANEL_SECRET).encode("utf-8")).hexdigest()
    call = richpanel_call(request)
    assert {k: v for k, v in call.items() if k != "events"} == {
        "appClientId": RICHPANEL_KEY, "event": "send_batch", "platform": "eventmap", "version": "0.1.0"}
    # keys sorted inside the signed JSON, as the Magento module does
    assert base64.b64decode(hs).decode("utf-8").startswith('{"appClientId":')
    [item] = call["events"]
    assert item["event"] == "identify"
    user = item["userProperties"]
    assert {k: user[k] for k in ("uid", "email", "firstName", "lastName", "phone")} == {
        "uid": "usr_4f2a91c7", "email": "ada.lovelace@example.com", "firstName": "Ada",
        "lastName": "Lovelace", "phone": "+44 20 7946 0958"}
    assert "name" not in user
    assert item["time"] == {"originalTimestamp": 1715678497391, "sentAt": 1715678497398}
    assert item["context"] == {"ip": {"networkIP": "203.0.113.42"},
                               "anonymousId": "0c7a3f52-9d1e-4b8a-a6f3-2e5d8c1b7a90"}


@pytest.mark.parametrize("stem, first, last", [
    ("identify-camelcase-names", "Katherine", "Johnson"),
    ("identify-snakecase-names", "Dorothy", "Vaughan"),
    ("identify-non-ascii-latin", "Zoë", "Ñúñez-Çelik"),
    ("identify-non-ascii-cjk", "山田", "太郎"),
])
def test_richpanel_first_and_last_name(engine, routes, stem, first, last):
    user = richpanel_event(only_request(render(engine, routes, "richpanel", event(stem))))["userProperties"]
    assert (user["firstName"], user["lastName"]) == (first, last)
    assert not {"first_name", "last_name", "name"} & set(user)


def test_richpanel_signature_without_api_secret_is_sha256_of_hs(engine):
    route = engine.route("richpanel", {"api_key": RICHPANEL_KEY}, environ={})
    request = only_request(engine.render(event("identify-full"), route))
    assert request.body["s"] == hashlib.sha256(request.body["hs"].encode("utf-8")).hexdigest()


@pytest.mark.parametrize("stem, where", [("identify-richpanel-session", "traits"),
                                         ("track-clicked-login", "properties"),
                                         ("page-named", "properties")])
def test_richpanel_session_id_is_carried(engine, routes, stem, where):
    ev = event(stem)
    assert ev[where]["richpanel_session_id"] == "abc123"
    item = richpanel_event(only_request(render(engine, routes, "richpanel", ev)))
    assert item["properties"]["richpanel_session_id"] == "abc123"
    assert "richpanel_session_id" not in item["userProperties"]


def test_richpanel_session_id_from_context_traits(engine, routes):
    ev = {**event("track-email-in-context")}
    ev["context"] = {**ev["context"], "traits": {"email": "k.johnson@example.com", "richpanel_session_id": "s-77"}}
    item = richpanel_event(only_request(render(engine, routes, "richpanel", ev)))
    assert item["properties"]["richpanel_session_id"] == "s-77"


@pytest.mark.parametrize("call", ["page", "track"])
def test_richpanel_timeline_events_carry_only_uid_and_email(engine, routes, call):
    rich_traits = {"email": "k.johnson@example.com", "firstName": "Katherine", "lastName": "Johnson",
                   "first_name": "Katherine", "name": "Katherine Johnson", "phone": "+1 202 555 0101",
                   "plan": "pro"}
    ev = {"type": call, "userId": "usr_camel_0014", "messageId": f"m-{call}", "timestamp": "2024-05-14T13:05:00.300Z",
          "context": {"traits": rich_traits}, "properties": {"title": "x"}}
    if call == "track":
        ev["event"] = "Report Exported"
    else:
        ev["name"] = "Reports"
    item = richpanel_event(only_request(render(engine, routes, "richpanel", ev)))
    assert item["userProperties"] == {"uid": "usr_camel_0014", "email": "k.johnson@example.com"}
    assert item["event"] == ("Report Exported" if call == "track" else "page")


def test_richpanel_track_keeps_ecommerce_properties(engine, routes):
    ev = event("track-order-updated")
    item = richpanel_event(only_request(render(engine, routes, "richpanel", ev)))
    assert item["event"] == "Order Updated"
    assert item["properties"] == ev["properties"]
    assert item["properties"]["order_status"] == "shipped"


def test_richpanel_batch_signs_all_events_together(engine, routes):
    stems = ["identify-full", "track-clicked-login", "page-named"]
    outcomes = [render(engine, routes, "richpanel", event(s)) for s in stems]
    [request] = engine.batch(routes["richpanel"], outcomes)
    call = richpanel_call(request)
    assert [e["event"] for e in call["events"]] == ["identify", "Clicked Login Button", "page"]
    assert request.body["s"] == hashlib.sha256((request.body["hs"] + RICHPANEL_SECRET).encode()).hexdigest()


# --------------------------------------------------------------------------- Crisp


def test_crisp_identify_without_email_is_rejected_naming_email(engine, routes):
    outcome = render(engine, routes, "crisp", event("identify-no-email"))
    assert outcome.status == "rejected"
    assert [(e.path, e.message) for e in outcome.errors] == [
        ("vars.people_id", "Crisp identify: 'email' is required; Crisp creates users only from an email trait")]


def test_crisp_identify_full_body(engine, routes):
    # create or update: the update comes first, then the custom traits as people data (offline views show
    # every request sure to run whatever Crisp answers, and the plan)
    outcome = render(engine, routes, "crisp", event("identify-full"))
    assert outcome.status == "send"
    request, data = outcome.requests
    assert (request.method, request.url) == ("PATCH", f"{CRISP_BASE}/people/profile/ada.lovelace%40example.com")
    assert (data.method, data.url) == ("PATCH", f"{CRISP_BASE}/people/data/ada.lovelace%40example.com")
    assert [(s["step"], s.get("on_status")) for s in outcome.steps] == [
        ("update", {"404": "run create"}), ("create", {"409": "run update_existing"}), ("update_existing", None),
        ("data", None)]
    assert request.body == {
        "email": "ada.lovelace@example.com",
        "person": {"nickname": "Ada Lovelace", "phone": "+442079460958",
                   "employment": {"title": "Head of Analytics"},
                   "geolocation": {"city": "London", "country": "GB"}},
        "company": {"name": "Acme Corp"},
    }


def test_crisp_track_uses_email_as_people_id_and_flattens(engine, routes):
    request = only_request(render(engine, routes, "crisp", event("track-nested-properties")))
    assert request.url == f"{CRISP_BASE}/people/events/k.johnson%40example.com"
    assert request.body == {
        "text": "Workspace Configured",
        "data": {"workspace.id": "ws_77", "workspace.settings.theme": "dark", "workspace.settings.seats": 12,
                 "features": '["sso","audit-log"]', "trial": False},
    }


def test_crisp_track_without_email_is_rejected(engine, routes):
    outcome = render(engine, routes, "crisp", event("track-clicked-login"))
    assert outcome.status == "rejected"
    assert [e.path for e in outcome.errors] == ["vars.people_id"]
    assert "'email'" in outcome.errors[0].message


def test_crisp_headers_tier_and_basic_auth(engine, routes):
    for stem in ("identify-full", "track-order-completed"):
        request = render(engine, routes, "crisp", event(stem)).requests[0]
        assert request.method == {"identify-full": "PATCH", "track-order-completed": "POST"}[stem]
        assert request.headers == {
            "X-Crisp-Tier": "plugin",
            "Authorization": "Basic " + base64.b64encode(CRISP_KEY.encode()).decode(),
            "Content-Type": "application/json",
        }
        assert request.to_dict()["headers"]["Authorization"] == "Basic ***"


# --------------------------------------------------------------------------- routing


def test_integrations_all_false_planhat_true_reaches_planhat_alone(engine, routes):
    outcomes = all_outcomes(engine, routes, event("integrations-planhat-only"))
    assert outcomes["Planhat"].status == "send"
    assert only_request(outcomes["Planhat"]).body["externalId"] == "usr_4f2a91c7"
    for name in ("Richpanel", "Crisp"):
        assert outcomes[name].status == "skipped"
        assert outcomes[name].requests == []
        assert outcomes[name].reason == f"disabled in integrations ('All' is false and there is no '{name}' key)"


def test_integrations_richpanel_false_skips_only_richpanel(engine, routes):
    outcomes = all_outcomes(engine, routes, event("integrations-richpanel-off"))
    assert outcomes["Richpanel"].status == "skipped"
    assert outcomes["Richpanel"].reason == 'disabled in integrations ({"Richpanel": false})'
    assert outcomes["Planhat"].status == "send"
    assert outcomes["Crisp"].status == "send"
    assert only_request(outcomes["Crisp"]).url == f"{CRISP_BASE}/people/events/k.johnson%40example.com"


def test_screen_is_skipped_by_all_three(engine, routes):
    outcomes = all_outcomes(engine, routes, event("screen"))
    assert {name: (o.status, o.reason) for name, o in outcomes.items()} == {
        "Planhat": ("skipped", "call type 'screen' is not accepted by Planhat "
                               "(accepts: identify, track, page, group, alias)"),
        "Richpanel": ("skipped", "call type 'screen' is not accepted by Richpanel (accepts: identify, page, track)"),
        "Crisp": ("skipped", "call type 'screen' is not accepted by Crisp (accepts: identify, track)"),
    }


@pytest.mark.parametrize("stem, call", [("alias", "alias"), ("group", "group")])
def test_alias_and_group_skipped_by_richpanel_and_crisp(engine, routes, stem, call):
    outcomes = all_outcomes(engine, routes, event(stem))
    assert outcomes["Planhat"].status == "send"
    assert (outcomes["Richpanel"].status, outcomes["Richpanel"].reason) == (
        "skipped", f"call type '{call}' is not accepted by Richpanel (accepts: identify, page, track)")
    assert (outcomes["Crisp"].status, outcomes["Crisp"].reason) == (
        "skipped", f"call type '{call}' is not accepted by Crisp (accepts: identify, track)")


def test_page_skipped_by_crisp(engine, routes):
    outcome = render(engine, routes, "crisp", event("page-named"))
    assert (outcome.status, outcome.reason) == ("skipped", "call type 'page' is not accepted by Crisp (accepts: identify, track)")


@pytest.mark.parametrize("stem, errors", [
    ("invalid-track-no-event", [{"path": "event", "message": "track: 'event' is required"}]),
    ("invalid-timestamp", [{"path": "timestamp", "message": "'2024-13-01' is not an ISO-8601 date-time"}]),
    ("invalid-no-user", [{"path": "", "message": "track: 'userId' or 'anonymousId' is required"}]),
])
def test_invalid_event_rejected_by_every_destination(engine, routes, stem, errors):
    ev = event(stem)
    for name, outcome in all_outcomes(engine, routes, ev).items():
        assert outcome.status == "rejected", name
        assert outcome.requests == []
        assert outcome.reason == "the event does not follow the Segment spec"
        assert [e.as_dict() for e in outcome.errors] == errors
        assert outcome.message_id == ev["messageId"]


# --------------------------------------------------------------------------- Engage audiences


@pytest.mark.parametrize("member", [True, False])
def test_audience_identify_planhat_and_richpanel(engine, routes, member):
    ev = audience_identify("Order Completed Last 30days", member, user_id="u1",
                           timestamp="2024-05-15T02:00:04.512Z", message_id="audience-test-1")
    assert ev["traits"] == {"order_completed_last_30days": member}
    outcomes = all_outcomes(engine, routes, ev)
    assert only_request(outcomes["Planhat"]).body == {
        "externalId": "u1", "source": "Segment", "info": {"order_completed_last_30days": member}}
    item = richpanel_event(only_request(outcomes["Richpanel"]))
    assert item["userProperties"] == {"uid": "u1", "order_completed_last_30days": member}
    assert item["time"] == {"originalTimestamp": 1715738404512, "sentAt": 1715738404512}


def test_audience_identify_crisp_needs_email(engine, routes):
    ev = audience_identify("Order Completed Last 30days", True, user_id="u1")
    outcome = render(engine, routes, "crisp", ev)
    assert outcome.status == "rejected"
    assert [e.path for e in outcome.errors] == ["vars.people_id"]


@pytest.mark.parametrize("member", [True, False])
def test_audience_identify_crisp_with_email_saves_the_trait_as_people_data(engine, routes, member, tmp_path):
    # Seed: audiences reach Crisp "as a user property": the profile update, then PATCH people/data.
    ev = audience_identify("Order Completed Last 30days", member, user_id="u1",
                           traits={"email": "ada.lovelace@example.com"})
    people = tmp_path / "v1" / "website" / CRISP_WEBSITE / "people"
    for kind in ("profile", "data"):
        (people / kind).mkdir(parents=True)
        (people / kind / "ada.lovelace@example.com.patch.json").write_text('{"error": false}', encoding="utf-8")
    outcome = engine.render(ev, routes["crisp"], responses=SavedResponses(tmp_path))
    assert [(r.method, r.body) for r in outcome.requests] == [
        ("PATCH", {"email": "ada.lovelace@example.com"}),
        ("PATCH", {"data": {"order_completed_last_30days": member}})]


def test_engage_fixture_reaches_planhat_and_richpanel(engine, routes):
    outcomes = all_outcomes(engine, routes, event("identify-engage-audience"))
    assert only_request(outcomes["Planhat"]).body["info"] == {"order_completed_last_30days": True}
    assert richpanel_event(only_request(outcomes["Richpanel"]))["userProperties"] == {
        "uid": "usr_4f2a91c7", "email": "ada.lovelace@example.com", "order_completed_last_30days": True}


# --------------------------------------------------------------------------- secrets


def secret_forms(secret: str) -> list[str]:
    """The raw, percent-encoded and base64 forms (at each byte alignment) of a secret."""
    forms = {secret, quote(secret, safe=""), quote(secret)}
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + secret.encode()).decode()
        forms.add(encoded[4:-4])  # the middle, whatever surrounds the secret
    if "://" not in secret:  # a URL's scheme is no secret (Slack's webhook URL is one)
        forms |= set(secret.split(":"))  # each half of Crisp's identifier:key
    return sorted(forms)


SENDING_STEMS = ["identify-full", "track-order-completed", "page-named"]


@pytest.mark.parametrize("slug", ["planhat", "richpanel", "crisp"])
def test_secrets_hidden_in_repr_and_to_dict(engine, routes, slug):
    outcomes = [render(engine, routes, slug, event(s)) for s in SENDING_STEMS]
    outcomes = [o for o in outcomes if o.status == "send"]
    assert outcomes
    requests = [r for o in outcomes for r in o.requests] + engine.batch(routes[slug], outcomes)
    shown = "\n".join([repr(r) for r in requests]
                      + [json.dumps(r.to_dict(), ensure_ascii=False) for r in requests]
                      + [json.dumps(o.to_dict(), ensure_ascii=False) for o in outcomes]
                      + [repr(o) for o in outcomes])
    for secret in SECRETS:
        for form in secret_forms(secret):
            assert form not in shown, f"{slug}: a form of a secret is visible: {form!r}"
    assert "***" in shown


def test_secrets_are_really_sent(engine, routes):
    """The masking is display-only: the request itself carries the credentials."""
    assert PLANHAT_TOKEN in only_request(render(engine, routes, "planhat", event("alias"))).url
    assert richpanel_call(only_request(render(engine, routes, "richpanel", event("identify-full"))))[
        "appClientId"] == RICHPANEL_KEY
    assert only_request(render(engine, routes, "planhat", event("alias"))).to_dict(show_secrets=True)["url"] == (
        f"{PLANHAT_URL}")


def snapshot_secrets(engine) -> dict[str, frozenset]:
    """The secret setting values each destination's snapshots were rendered with (see test_snapshots.py)."""
    found = {}
    for path in sorted((ROOT / "mappings" / "destinations").glob("*.yaml")):
        settings_file = ROOT / "fixtures" / "settings" / f"{path.stem}.json"
        if settings_file.exists():
            settings = json.loads(settings_file.read_text())
        else:
            settings = {name: f"test-{name}" for name in engine.destination(path.stem).settings.required}
        found[path.stem] = engine.route(path.stem, settings, environ={}).secrets
    return found


def test_snapshot_settings_are_fake_test_values(engine):
    """Snapshots show requests as sent (test_snapshots.py), so the secret settings they are rendered with
    must be fake: every part of each is a ``test-`` value, never a real key pasted into fixtures/settings.
    That what users see is masked is checked on the same outcomes there (assert_masked)."""
    secrets = snapshot_secrets(engine)
    assert set(SECRETS) <= {s for values in secrets.values() for s in values}
    for slug, values in secrets.items():
        assert values, f"{slug} has no secret setting"
        for secret in values:
            # every part the masker knows (an id:key pair's halves) says it is a test value; a vendor's key
            # format may want a prefix (Klaviyo's pk_), a secret URL a scheme and host (Slack's webhook)
            for part in {secret, *parts(secret)} - {"https"}:
                assert "test" in part.lower().rsplit("/", 1)[-1], (slug, secret)


def test_secret_with_slash_and_space_is_masked_in_url(engine):
    token = "tok/with space"
    route = engine.route("planhat", {"tenant_token": token}, environ={})
    request = only_request(engine.render(event("alias"), route))
    assert "with" not in repr(request)
    assert "with" not in request.to_dict()["url"]


# --------------------------------------------------------------------------- ecommerce lint


def test_order_refunded_without_order_status_warns(engine, routes):
    outcomes = all_outcomes(engine, routes, event("track-order-refunded"))
    richpanel = outcomes["Richpanel"]
    assert richpanel.status == "send"
    assert [(w.path, w.message, w.severity) for w in richpanel.warnings] == [
        ("properties.order_status", "Order Refunded: Richpanel recommends an 'order_status' property", "warning")]
    assert richpanel.to_dict()["warnings"] == [
        {"path": "properties.order_status", "message": "Order Refunded: Richpanel recommends an 'order_status' property"}]


def test_order_updated_with_order_status_has_no_warning(engine, routes):
    outcome = render(engine, routes, "richpanel", event("track-order-updated"))
    assert outcome.warnings == []
    assert "warnings" not in outcome.to_dict()


def test_segment_forwards_the_integrations_object_instead_of_obeying_it(engine):
    """{"All": false, "Mixpanel": true} is for Segment's downstream destinations: it must reach Segment."""
    segment = engine.route("segment", {"write_key": "wk"}, environ={})
    ev = {**event("integrations-planhat-only"), "integrations": {"All": False, "Mixpanel": True}}
    outcome = engine.render(ev, segment)
    assert outcome.status == "send"
    assert only_request(outcome).body["integrations"] == {"All": False, "Mixpanel": True}
    planhat = engine.route("planhat", SETTINGS["planhat"], environ={})
    assert engine.render(ev, planhat).status == "skipped"  # obeying destinations still obey
