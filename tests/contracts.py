"""Which contract each shipped destination's requests must meet, and the named exceptions to them.

A vendor's own machine-readable contract where one exists (fixtures/contracts/VENDOR/, with its
LICENSE and SOURCE), and always a rules schema written from the vendor's documentation. An exception
excuses one rule at one place of a vendor's contract, only where the vendor's documentation says
the contract is wrong; tests/test_contracts.py fails when one is no longer needed.
"""
from __future__ import annotations

import hashlib
import hmac
import json

from contract_harness import (
    CONTRACTS as FOLDER,
)
from contract_harness import (
    BodySchema,
    Check,
    Contract,
    Exception_,
    OpenAPIOperation,
    OpenAPIRouted,
    RequestRules,
    Sent,
    Violation,
    schema_violations,
)

# Mixpanel's profile and group operations share a path; the operator in the update names the operation
# (mixpanel/docs openapi/ingestion.openapi.yaml, one path key per operator: /engage#profile-set, ...)
ENGAGE = {"$set": "profile-set", "$set_once": "profile-set-property-once", "$add": "profile-numerical-add",
          "$union": "user-profile-union", "$append": "profile-append-to-list-property",
          "$remove": "profile-remove-from-list-property", "$unset": "profile-delete-property", "$delete": "delete-profile"}
GROUPS = {"$set": "group-set-property", "$set_once": "group-set-property-once", "$unset": "group-delete-property",
          "$remove": "group-remove-from-list-property", "$union": "group-union", "$delete": "delete-group"}


def mixpanel_operation(sent: Sent) -> str | None:
    """The operationId of a Mixpanel request: by path, and for /engage and /groups by the update's operator."""
    if sent.path in ("/import", "/track"):
        return {"/import": "import-events", "/track": "track-event"}[sent.path]
    table = {"/engage": ENGAGE, "/groups": GROUPS}.get(sent.path)
    if table is None or not isinstance(sent.body, list) or not sent.body or not isinstance(sent.body[0], dict):
        return None
    operators = [key for key in sent.body[0] if key in table]
    return table[operators[0]] if len(operators) == 1 else None


def _currency(value) -> bool:
    """The Event Builder's currency_type format (formatCheckLib.ts isValidCurrencyType): 3 uppercase letters."""
    return not isinstance(value, str) or (len(value) == 3 and value.isascii() and value.isupper() and value.isalpha())


class FormJSON(RequestRules):
    """A rules schema over a form whose fields carry JSON as text (Amplitude's identification, mapping and
    options: "a JSON object or an array ... as a string"): those fields are parsed first, and one that is
    not JSON is a violation of its own."""

    def __init__(self, name: str, path, fields: tuple[str, ...]):
        super().__init__(name, path)
        self.fields = fields

    def violations(self, sent: Sent) -> list[Violation]:
        if sent.content_type != "application/x-www-form-urlencoded" or not isinstance(sent.body, dict):
            return super().violations(sent)
        body, found = dict(sent.body), []
        for field in self.fields:
            if field in body:
                try:
                    body[field] = json.loads(body[field])
                except ValueError as exc:
                    found.append(Violation(self.name, f"request.body.{field}", "json", f"not JSON: {exc}"))
        view = {**sent.view(), "body": body}
        return found + schema_violations(self.name, self.validator, view, "request")


class HmacSignature(Check):
    """A signature header recomputed over the exact bytes received, with the route's shared secret: the
    receiver's own check (hex HMAC-SHA1, as Segment's webhooks sign, or HMAC-SHA256)."""

    def __init__(self, name: str, header: str, secret: str):
        self.name, self.header, self.secret = name, header.lower(), secret.encode("utf-8")

    def violations(self, sent: Sent) -> list[Violation]:
        where = f"headers.{self.header}"
        got = sent.headers.get(self.header)
        if got is None:
            return [Violation(self.name, where, "required", "no signature, though the route has a shared secret")]
        expected = {hmac.new(self.secret, sent.raw, digest).hexdigest() for digest in (hashlib.sha1, hashlib.sha256)}
        if got not in expected:
            return [Violation(self.name, where, "signature", f"{got!r} is not the HMAC of the {len(sent.raw)} bytes sent")]
        return []


WEBHOOK_SETTINGS = json.loads((FOLDER.parents[0] / "settings" / "webhook.json").read_text(encoding="utf-8"))

MIXPANEL_OPENAPI = "mixpanel openapi"
# PostHog's capture OpenAPI, a floor ("not a complete specification"): routed by openapi-core
POSTHOG = OpenAPIRouted("posthog openapi", FOLDER / "posthog" / "capture.yaml")
GA4_SCHEMA = "ga4 event builder"
INTERCOM_OPENAPI = "intercom openapi"
# Intercom's own OpenAPI 2.14 (the subset that validates), routed by openapi-core
INTERCOM = OpenAPIRouted(INTERCOM_OPENAPI, FOLDER / "intercom" / "api.intercom.io.2.14.subset.yaml")

DESTINATIONS: dict[str, Contract] = {
    "mixpanel": Contract(
        checks=[OpenAPIOperation(MIXPANEL_OPENAPI, FOLDER / "mixpanel" / "ingestion.openapi.yaml", mixpanel_operation),
                RequestRules("mixpanel rules", FOLDER / "mixpanel" / "rules.schema.json")],
        exceptions=[
            Exception_(
                name="mixpanel-import-project-id-optional",
                check=MIXPANEL_OPENAPI, where="query.project_id", rule="required",
                reason="The OpenAPI file marks project_id required on /import, but Mixpanel's reference lets the "
                       "project token authenticate as the Basic username without it: 'If project_id is not "
                       "specified, the request will be authenticated using the provided token.'",
                url="https://developer.mixpanel.com/reference/import-events#authentication"),
        ],
        # a service account (project_id in the query), Original ID Merge ($identify events), the EU host
        variants=[{"service_account_username": "eventmap-test.sa", "service_account_secret": "test-mixpanel-sa-secret-0001",
                   "project_id": "3170001", "id_merge": "original"},
                  {"region": "api-eu", "strict": False}],
    ),
    "google-analytics-4": Contract(
        checks=[BodySchema(GA4_SCHEMA, FOLDER / "ga4" / "mp_payload.schema.json", {"currency_type": _currency}),
                RequestRules("ga4 rules", FOLDER / "ga4" / "request.rules.schema.json")],
        exceptions=[
            Exception_(
                name="ga4-currency-without-value",
                check=GA4_SCHEMA, where="body.events[0].params", rule="dependencies",
                message="'value' is a dependency of 'currency'",
                reason="The Event Builder schema makes value and currency depend on each other, but Google's "
                       "reference requires currency only when value is set ('currency ... Required if value is "
                       "set'), not value with every currency: a custom event such as order_updated may carry "
                       "its order's currency alone.",
                url="https://developers.google.com/analytics/devguides/collection/protocol/ga4/reference/events#purchase"),
        ],
        variants=[{"region": "eu"}, {"validate_only": True, "default_currency": "USD"}],
    ),
    "slack": Contract(
        checks=[RequestRules("slack rules", FOLDER / "slack" / "rules.schema.json")],
        variants=[{"channel": "#general", "username": "eventmap", "icon_emoji": ":tada:",
                   "icon_url": "https://example.com/eventmap.png"}],
    ),
    "customerio": Contract(
        checks=[RequestRules("customerio rules", FOLDER / "customerio" / "rules.schema.json")],
        # the EU host, and people without a userId identified by their email
        variants=[{"region": "eu", "identify_by_email": True, "object_type_id": "2"}],
    ),
    "intercom": Contract(
        checks=[INTERCOM, RequestRules("intercom rules", FOLDER / "intercom" / "rules.schema.json")],
        exceptions=[
            Exception_(
                name="intercom-metadata-types",
                check=INTERCOM_OPENAPI, where="body.metadata.*", rule="type", message="is not of type 'string'",
                reason="createDataEvent's schema types every metadata value as a string, but the operation's own "
                       "description documents Number ('\"load\": 3.67'), Date (a Unix timestamp), Rich Link "
                       "({url, value}) and Monetary Amount ({amount, currency}) values. 'intercom rules' checks "
                       "each value against those documented types instead.",
                url="https://developers.intercom.com/docs/references/2.14/rest-api/api.intercom.io/data-events/createdataevent"),
        ],
        # the European host, an older API version the header still names
        variants=[{"region": "eu"}, {"region": "au", "intercom_version": "2.13"}],
    ),
    "klaviyo": Contract(
        checks=[RequestRules("klaviyo rules", FOLDER / "klaviyo" / "rules.schema.json")],
        variants=[{"revision": "2026-10-15"}],
    ),
    "meta-conversions": Contract(
        checks=[RequestRules("meta rules", FOLDER / "meta-conversions" / "rules.schema.json")],
        # every event as a website event (the ones without a page URL or user agent are then rejected, not
        # sent), phone numbers without a country code read as US ones, the test code, a default currency
        variants=[{"action_source": "website", "default_phone_country": "US", "test_event_code": "TEST12345"},
                  {"action_source": "physical_store", "default_currency": "USD", "api_version": "v23.0"}],
    ),
    "webhook": Contract(
        checks=[RequestRules("webhook rules", FOLDER / "webhook" / "rules.schema.json"),
                HmacSignature("webhook signature", "X-Signature", WEBHOOK_SETTINGS["shared_secret"])],
        # PUT with SHA-256, and another host through base_url with no custom headers
        variants=[{"method": "PUT", "signature_sha256": True},
                  {"method": "PATCH", "base_url": "http://127.0.0.1:9", "headers": None, "authorization": None}],
    ),
    "amplitude": Contract(
        checks=[FormJSON("amplitude rules", FOLDER / "amplitude" / "rules.schema.json",
                         ("identification", "mapping", "options"))],
        # the EU host and the Batch API; shorter ids allowed, aliases mapped, another group type
        variants=[{"region": "eu", "endpoint": "batch"},
                  {"min_id_length": 3, "map_aliases": True, "group_type": "org id"}],
    ),
    "posthog": Contract(
        checks=[POSTHOG, RequestRules("posthog rules", FOLDER / "posthog" / "rules.schema.json")],
        variants=[{"region": "eu", "historical_migration": True, "group_type": "organization"}],
    ),
    "braze": Contract(
        checks=[RequestRules("braze rules", FOLDER / "braze" / "rules.schema.json")],
        # the default instance (US-01) without an app id, and another instance in update-only mode
        variants=[{"instance_url": "https://rest.iad-01.braze.com", "app_id": None},
                  {"instance_url": "https://rest.us-10.braze.com", "update_existing_only": True, "alias_label": "segment_anonymous_id"}],
    ),
    "hubspot": Contract(
        checks=[RequestRules("hubspot rules", FOLDER / "hubspot" / "rules.schema.json")],
        # another company id property than Segment's segment_group_id
        variants=[{"company_id_property": "crm_group_key"}],
    ),
    "planhat": Contract(checks=[RequestRules("planhat rules", FOLDER / "planhat" / "rules.schema.json")]),
    "richpanel": Contract(checks=[RequestRules("richpanel rules", FOLDER / "richpanel" / "rules.schema.json")]),
    "crisp": Contract(checks=[RequestRules("crisp rules", FOLDER / "crisp" / "rules.schema.json")]),
    "segment": Contract(checks=[RequestRules("segment rules", FOLDER / "segment" / "rules.schema.json")]),
}

# Destinations that were shipped before the contract harness and may, for now, go without a contract.
# Every one of them has one today; the list keeps a new destination from being added without one.
SHIPPED_BEFORE_CONTRACTS = frozenset({"planhat", "richpanel", "crisp", "segment"})

