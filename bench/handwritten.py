"""The shipped mappings written by hand in plain Python: the benchmark's baseline.

Each function takes a valid Segment event and returns (url, body), or a list of them, exactly as
eventmap renders them for the benchmark's workload (the benchmark asserts that
before timing). They are what a careful developer would write without
eventmap: dict reads, the same date and hashing helpers, no framework.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import uuid
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

import orjson
import phonenumbers

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _empty(value) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _first(*values):
    for value in values:
        if not _empty(value):
            return value
    return None


def _get(obj, *keys):
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _when(text):
    """ISO-8601 text -> aware UTC datetime (the workload's timestamps are all '...Z')."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _iso(text):
    if text is None:
        return None
    dt = _when(text)
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond // 1000:03d}Z"


def _epoch_ms(text):
    return None if text is None else (_when(text) - _EPOCH) // _MS


_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=timezone.utc) - _EPOCH


def _str(value):
    return None if value is None else (value if isinstance(value, str) else str(value))


def _compact(body: dict) -> dict:
    return {k: v for k, v in body.items() if not _empty(v)}


# --------------------------------------------------------------------------- Planhat

PLANHAT_OMIT = {"name", "email", "title", "user_id", "companyId", "company_id", "firstName", "lastName",
                "first_name", "last_name"}


def planhat(event: dict, settings: dict):
    url = f"https://{settings.get('subdomain', 'api')}.planhat.com/analytics/{quote(settings['tenant_token'], safe='')}"
    kind = event["type"]
    traits, context = event.get("traits") or {}, event.get("context") or {}
    ctraits = context.get("traits") or {}
    props = event.get("properties")
    props_d = props if isinstance(props, dict) else {}
    user = _str(_first(event.get("userId")))
    if kind == "identify":
        name = _first(traits.get("name"), ctraits.get("name"))
        if _empty(name):
            parts = [traits.get("firstName") or traits.get("first_name"), traits.get("lastName") or traits.get("last_name")]
            name = " ".join(str(p) for p in parts if p)
        body = _compact({
            "externalId": _str(_first(event.get("userId"), traits.get("user_id"))),
            "email": _first(traits.get("email"), ctraits.get("email")),
            "name": name,
            "title": _first(traits.get("title")),
            "companyExternalId": _str(_first(traits.get("companyId"), traits.get("company_id"),
                                             _get(traits, "company", "id"), context.get("groupId"))),
            "source": "Segment",
            "info": {k: v for k, v in traits.items() if k not in PLANHAT_OMIT and v is not None},
        })
    elif kind == "track":
        weight = props_d.get("weight")
        body = _compact({
            "externalId": user,
            "email": _first(props_d.get("email"), ctraits.get("email")),
            "name": _first(ctraits.get("name")),
            "companyExternalId": _str(_first(context.get("groupId"), props_d.get("companyId"), ctraits.get("companyId"))),
            "action": _first(event.get("event")),
            "weight": None if _empty(weight) else (int(weight) if float(weight).is_integer() else float(weight)),
            "date": _iso(_first(event.get("timestamp"), event.get("originalTimestamp"))),
            "info": _first(props),
            "source": "Segment",
        })
    elif kind == "page":
        page = context.get("page") or {}
        name = event.get("name")
        if not _empty(name) and name is not False:
            action = f"Viewed {name} Page"
        else:
            action = f"Viewed Page {props_d.get('path') or page.get('path') or props_d.get('url') or ''}"
        info = {k: v for k, v in props_d.items() if k not in ("category", "url") and v is not None}
        for key, value in (("category", _first(event.get("category"))), ("url", _first(props_d.get("url"), page.get("url")))):
            if value is not None:
                info[key] = value
        body = _compact({
            "externalId": user,
            "email": _first(props_d.get("email"), ctraits.get("email")),
            "name": _first(ctraits.get("name")),
            "companyExternalId": _str(_first(context.get("groupId"), ctraits.get("companyId"))),
            "action": action,
            "date": _iso(_first(event.get("timestamp"), event.get("originalTimestamp"))),
            "info": info,
            "source": "Segment",
        })
    elif kind == "group":
        body = _compact({"externalId": user, "email": _first(ctraits.get("email")),
                         "companyExternalId": _str(_first(event.get("groupId"))),
                         "info": _first(event.get("traits")), "source": "Segment"})
        if not body.get("companyExternalId"):
            return None
    elif kind == "alias":
        body = {"externalId": user, "action": "Aliased",
                "date": _iso(_first(event.get("timestamp"), event.get("originalTimestamp"))),
                "info": {"previousId": _first(event.get("previousId"))}, "source": "Segment"}
        body = {k: v for k, v in body.items() if v is not None}
        body["info"] = {k: v for k, v in body["info"].items() if v is not None}
        if not body.get("externalId"):
            return None
        return url, body
    else:
        return None
    if not (body.get("externalId") or body.get("email")):
        return None
    return url, body


# --------------------------------------------------------------------------- Segment

def segment(event: dict, settings: dict):
    return f"{settings.get('base_url', 'https://api.segment.io')}/v1/{event['type']}", event


# --------------------------------------------------------------------------- Crisp

def _flatten(obj: dict, prefix: str = "", out: dict | None = None, sep: str = ".") -> dict:
    out = {} if out is None else out
    for key, value in obj.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, dict):
            _flatten(value, name, out, sep)
        else:
            out[name] = value if isinstance(value, (str, int, float, bool)) else \
                orjson.dumps(value).decode()  # the workload's lists hold no floats that format differently
    return out


def _e164(phone):
    """Normalise a phone number the way Crisp's mapping does (libphonenumber), as a hand-written client would."""
    if not isinstance(phone, str):
        return phone
    text = phone.strip()
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_possible_number(number):
        return text
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


CRISP_PROFILE_TRAITS = {"email", "name", "username", "firstName", "first_name", "lastName", "last_name", "avatar",
                        "phone", "website", "description", "gender", "title", "address", "company", "segments"}


def crisp(event: dict, settings: dict):
    base = f"{settings.get('base_url', 'https://api.crisp.chat/v1')}/website/{quote(settings['website_id'], safe='')}"
    kind = event["type"]
    traits, ctraits = event.get("traits") or {}, _get(event, "context", "traits") or {}
    if kind == "identify":
        email = _first(traits.get("email"), ctraits.get("email"))
        email = email.strip() if isinstance(email, str) else email
        nickname = _first(traits.get("name"), traits.get("username"))
        if _empty(nickname):
            parts = [traits.get("firstName") or traits.get("first_name"), traits.get("lastName") or traits.get("last_name")]
            nickname = " ".join(str(p) for p in parts if p)
        address = traits.get("address") if isinstance(traits.get("address"), dict) else {}
        person = _compact({"nickname": nickname, "avatar": _first(traits.get("avatar")),
                           "phone": _e164(_first(traits.get("phone"))),
                           "website": _first(traits.get("website")), "description": _first(traits.get("description")),
                           "gender": _first(traits.get("gender")),
                           "employment": _compact({"title": _first(traits.get("title"))}),
                           "geolocation": _compact({"city": _first(address.get("city")),
                                                    "country": _first(address.get("country"))})})
        company = traits.get("company")
        body = _compact({"email": email, "person": person,
                         "company": _compact({"name": _first(_get(company, "name"), company)}),
                         "segments": _first(traits.get("segments"))})
        if _empty(body.get("email")):
            return None
        # create or update: the update keyed by email, then the custom traits as people data when there
        # are some (the requests sure to run whatever Crisp answers: what an offline render shows)
        requests = [(f"{base}/people/profile/{quote(email, safe='')}", body)]
        custom = {k: v for k, v in traits.items() if k not in CRISP_PROFILE_TRAITS and v is not None}
        if custom:
            requests.append((f"{base}/people/data/{quote(email, safe='')}", {"data": _flatten(custom)}))
        return requests
    if kind == "track":
        props = event.get("properties")
        people = _first(ctraits.get("email"), _get(props, "email"))
        people = people.strip() if isinstance(people, str) else people
        if _empty(people):
            return None
        body = {"text": _first(event.get("event"))}
        data = _first(props)
        if data is not None:
            body["data"] = _flatten(data)
        return f"{base}/people/events/{quote(people, safe='')}", {k: v for k, v in body.items() if v is not None}
    return None


# --------------------------------------------------------------------------- Richpanel

RICHPANEL_OMIT = {"id", "name", "first_name", "last_name", "richpanel_session_id"}


def richpanel(event: dict, settings: dict):
    kind = event["type"]
    traits, context = event.get("traits") or {}, event.get("context") or {}
    ctraits = context.get("traits") or {}
    props = event.get("properties")
    props_d = props if isinstance(props, dict) else {}
    time = {k: v for k, v in (("originalTimestamp", _epoch_ms(_first(event.get("originalTimestamp"), event.get("timestamp")))),
                              ("sentAt", _epoch_ms(_first(event.get("sentAt"), event.get("timestamp"))))) if v is not None}
    ctx = _compact({"ip": _compact({"networkIP": _first(context.get("ip"))}), "anonymousId": _first(event.get("anonymousId"))})
    uid = _str(_first(event.get("userId")))
    if kind == "identify":
        name = traits.get("name")
        words = name.split() if isinstance(name, str) else []
        user = {k: v for k, v in traits.items() if k not in RICHPANEL_OMIT and v is not None}
        for key, value in (("uid", uid), ("email", _first(traits.get("email"), ctraits.get("email"))),
                           ("firstName", _first(traits.get("firstName"), traits.get("first_name")) or (words[0] if words else None)),
                           ("lastName", _first(traits.get("lastName"), traits.get("last_name")) or (" ".join(words[1:]) or None)),
                           ("phone", _first(traits.get("phone")))):
            user.pop(key, None)
            if value is not None:
                user[key] = value
        session = _first(traits.get("richpanel_session_id"), ctraits.get("richpanel_session_id"))
        item = {"event": "identify", "properties": {} if session is None else {"richpanel_session_id": session},
                "userProperties": user, "time": time, "context": ctx}
        if _empty(uid):
            return None
    elif kind in ("track", "page"):
        properties = {k: v for k, v in props_d.items() if v is not None}
        extra = [("richpanel_session_id", _first(props_d.get("richpanel_session_id"), ctraits.get("richpanel_session_id")))]
        if kind == "page":
            extra = [("name", _first(event.get("name"))), ("category", _first(event.get("category"))),
                     ("url", _first(props_d.get("url"), _get(context, "page", "url")))] + extra
        for key, value in extra:
            properties.pop(key, None)
            if value is not None:
                properties[key] = value
        user = {k: v for k, v in (("uid", uid), ("email", _first(ctraits.get("email"), props_d.get("email")))) if v is not None}
        item = {"event": "page" if kind == "page" else _first(event.get("event")), "properties": properties,
                "userProperties": user, "time": time, "context": ctx}
        item = {k: v for k, v in item.items() if v is not None}
    else:
        return None
    call = {"appClientId": settings["api_key"], "event": "send_batch", "events": [item], "platform": "eventmap",
            "version": "0.1.0"}
    hs = base64.b64encode(orjson.dumps(call, option=orjson.OPT_SORT_KEYS)).decode("ascii")
    body = {"hs": hs, "s": hashlib.sha256((hs + settings.get("api_secret", "")).encode()).hexdigest()}
    return f"{settings.get('base_url', 'https://api.richpanel.com')}/v2/bt", body


# --------------------------------------------------------------------------- Mixpanel

_NAMESPACE = uuid.UUID("6f1d2f0e-5b8a-4c57-9a51-3c0e7d2b9a44")  # stable $insert_ids, as eventmap derives them


@functools.lru_cache(maxsize=4096)
def _user_agent(text: str) -> dict:
    """browser, os and device from ua-parser, kept per string as a careful client would."""
    from ua_parser import parse

    def version(part):
        numbers = [n for n in (part.major, part.minor, part.patch) if n] if part is not None else []
        return ".".join(numbers) or None

    result = parse(text)
    fields = {"browser": result.user_agent.family if result.user_agent else None,
              "browser_version": version(result.user_agent),
              "os": result.os.family if result.os else None, "os_version": version(result.os),
              "device": result.device.family if result.device else None,
              "device_brand": result.device.brand if result.device else None}
    return {k: v for k, v in fields.items() if v not in (None, "", "Other")}


MIXPANEL_OMIT = {"created", "createdAt", "email", "firstName", "first_name", "lastName", "last_name", "name",
                 "username", "phone", "avatar"}


def _set(out: dict, key, value) -> None:
    """Assign a mapped value: null results are left out (an existing key keeps its place)."""
    if value is not None:
        out[key] = value


def mixpanel(event: dict, settings: dict):
    base = settings.get("base_url") or f"https://{settings.get('region', 'api')}.mixpanel.com"
    kind = event["type"]
    context = event.get("context") or {}
    user, anon = _str(_first(event.get("userId"))), _first(event.get("anonymousId"))
    when = _epoch_ms(_first(event.get("timestamp"), event.get("originalTimestamp")))
    insert_id = str(uuid.uuid5(_NAMESPACE, event["messageId"]))
    ip = _first(context.get("ip"), "0")
    if kind in ("track", "page", "screen"):
        ua = _user_agent(context["userAgent"]) if context.get("userAgent") else {}
        page, os_, device = context.get("page") or {}, context.get("os") or {}, context.get("device") or {}
        props = event.get("properties")
        props_d = props if isinstance(props, dict) else {}
        properties = {k: v for k, v in props_d.items() if v is not None}
        campaign, screen = context.get("campaign") or {}, context.get("screen") or {}
        for key, value in (("time", when), ("distinct_id", _str(_first(user, anon))), ("$insert_id", insert_id),
                           ("$device_id", anon), ("$user_id", user), ("ip", ip),
                           ("$current_url", _first(page.get("url"), props_d.get("url"))),
                           ("$referrer", _first(page.get("referrer"), props_d.get("referrer"))),
                           ("$browser", ua.get("browser")), ("$browser_version", ua.get("browser_version")),
                           ("$os", _first(os_.get("name"), ua.get("os"))),
                           ("$os_version", _first(os_.get("version"), ua.get("os_version"))),
                           ("$device", _first(device.get("model"), ua.get("device"))),
                           ("$manufacturer", _first(device.get("manufacturer"), ua.get("device_brand"))),
                           ("$screen_width", screen.get("width")), ("$screen_height", screen.get("height")),
                           ("$app_version_string", _get(context, "app", "version")),
                           ("$app_build_number", _get(context, "app", "build")),
                           ("$carrier", _get(context, "network", "carrier")), ("$locale", context.get("locale")),
                           ("$group_id", context.get("groupId")), ("utm_source", campaign.get("source")),
                           ("utm_medium", campaign.get("medium")), ("utm_campaign", campaign.get("name")),
                           ("utm_term", campaign.get("term")), ("utm_content", campaign.get("content"))):
            _set(properties, key, value)
        if kind == "track":
            name = event["event"]
        else:
            name = f"Viewed {event['name']}" if event.get("name") else ("Loaded a Page" if kind == "page" else "Loaded a Screen")
            _set(properties, "name", event.get("name"))
            if kind == "page":
                _set(properties, "category", event.get("category"))
        return f"{base}/import", [{"event": name, "properties": properties}]
    if kind == "alias":
        properties = {}
        for key, value in (("distinct_id", _str(event.get("previousId"))), ("alias", user), ("time", when),
                           ("$insert_id", insert_id), ("ip", ip)):
            _set(properties, key, value)
        return f"{base}/import", [{"event": "$create_alias", "properties": properties}]
    if kind == "identify":
        traits = event.get("traits") or {}
        if not traits:
            return None  # no profile to update (and no $identify on Simplified ID Merge)
        update = {k: v for k, v in traits.items() if k not in MIXPANEL_OMIT and v is not None}
        for key, value in (("$created", _first(traits.get("createdAt"), traits.get("created"))),
                           ("$email", traits.get("email")), ("$first_name", _first(traits.get("firstName"), traits.get("first_name"))),
                           ("$last_name", _first(traits.get("lastName"), traits.get("last_name"))), ("$name", traits.get("name")),
                           ("$username", traits.get("username")), ("$phone", traits.get("phone")), ("$avatar", traits.get("avatar"))):
            _set(update, key, value)
        profile = {"$token": settings["project_token"]}
        _set(profile, "$distinct_id", _str(_first(user, anon)))
        _set(profile, "$ip", context.get("ip"))
        profile["$set"] = update
        return f"{base}/engage", [profile]
    if kind == "group":
        group_key, group_id = settings.get("group_key", "company_id"), _str(event["groupId"])
        requests = [(f"{base}/groups", [{"$token": settings["project_token"], "$group_key": group_key,
                                         "$group_id": group_id, "$set": _first(event.get("traits")) or {}}])]
        if user:   # the membership step: the group on the user's profile ($union keeps the user's other groups)
            requests.append((f"{base}/engage", [{"$token": settings["project_token"], "$distinct_id": _str(user),
                                                 "$union": {group_key: [group_id]}}]))
        return requests
    return None


# --------------------------------------------------------------------------- Google Analytics 4

GA4_EVENTS = {"Order Completed": "purchase", "Checkout Started": "begin_checkout", "Product Viewed": "view_item",
              "Product Added": "add_to_cart", "Signed Up": "sign_up"}  # the workload's, of the mapping's table
GA4_RESERVED = {"ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward", "adunit_exposure",
                "app_background", "app_clear_data", "app_exception", "app_remove", "app_store_refund",
                "app_store_subscription_cancel", "app_store_subscription_convert", "app_store_subscription_renew",
                "app_update", "app_upgrade", "dynamic_link_app_open", "dynamic_link_app_update", "dynamic_link_first_open",
                "error", "first_open", "first_visit", "in_app_purchase", "notification_dismiss", "notification_foreground",
                "notification_open", "notification_receive", "os_update", "screen_view", "session_start", "user_engagement"}
GA4_PREFIXES = ("ga_", "google_", "firebase_")


def _number(value):
    if value is None or isinstance(value, bool):
        return value
    number = float(value)
    return int(number) if number.is_integer() else number


def _snake(text: str) -> str:
    """eventmap's snake_case for the workload's ASCII event names: camel boundaries, runs of other characters."""
    words, word = [], []
    for i, ch in enumerate(text):
        if not ch.isalnum():
            if word:
                words.append("".join(word))
                word = []
            continue
        if word and ch.isupper():
            prev, nxt = word[-1], text[i + 1] if i + 1 < len(text) else ""
            if prev.islower() or (prev.isupper() and nxt.islower()):
                words.append("".join(word))
                word = []
        word.append(ch)
    if word:
        words.append("".join(word))
    return "_".join(words).lower()


def _ga4_item(product: dict) -> dict:
    item = {}
    for key, value in (("item_id", _str(_first(product.get("product_id"), product.get("sku")))),
                       ("item_name", _first(product.get("name"))), ("item_brand", _first(product.get("brand"))),
                       ("item_category", _first(product.get("category"))), ("item_variant", _first(product.get("variant"))),
                       ("coupon", _first(product.get("coupon"))), ("index", _first(product.get("position"))),
                       ("price", _number(_first(product.get("price")))), ("quantity", _number(_first(product.get("quantity"))))):
        _set(item, key, value)
    return item


def _ga4_items_ok(items: list) -> bool:
    return (all(item.get("item_id") or item.get("item_name") for item in items) and len(items) <= 200
            and all(len(v) <= 100 for item in items for v in item.values() if isinstance(v, str)))


def google_analytics_4(event: dict, settings: dict):
    base = settings.get("base_url") or ("https://region1.google-analytics.com" if settings.get("region") == "eu"
                                        else "https://www.google-analytics.com")
    url = f"{base}/{'debug/mp/collect' if settings.get('validate_only') else 'mp/collect'}"
    kind = event["type"]
    client_id = _str(_first(event.get("anonymousId"), event.get("userId")))
    body = {"client_id": client_id}
    _set(body, "user_id", _str(_first(event.get("userId"))))
    if event.get("timestamp"):
        body["timestamp_micros"] = _epoch_ms(event["timestamp"]) * 1000
    props = event.get("properties")
    props_d = props if isinstance(props, dict) else {}
    if kind == "page":
        page = _get(event, "context", "page") or {}
        params = {}
        location = _first(page.get("url"), props_d.get("url"))
        referrer = _first(page.get("referrer"), props_d.get("referrer"))
        title = _first(page.get("title"), props_d.get("title"), event.get("name"))
        for key, value in (("page_location", location), ("page_referrer", referrer), ("page_title", title),
                           ("engagement_time_msec", 1)):
            _set(params, key, value)
        if not client_id or not location or len(location or "") > 1000 or len(referrer or "") > 420 or len(title or "") > 300:
            return None
        body["events"] = [{"name": "page_view", "params": params}]
        return url, body
    if kind != "track":
        return None
    name = GA4_EVENTS.get(event["event"])
    currency = _first(props_d.get("currency"), settings.get("default_currency"))
    currency = currency.upper() if isinstance(currency, str) else currency
    if currency and not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        return None
    if name in ("purchase", "begin_checkout"):
        items = [_ga4_item(p) for p in props_d.get("products") or [] if isinstance(p, dict)]
        value_keys = ("revenue", "total", "value") if name == "purchase" else ("value", "revenue", "total")
        value = _number(_first(*(props_d.get(k) for k in value_keys)))
        params = {}
        if name == "purchase":
            fields = (("transaction_id", _str(_first(props_d.get("order_id")))), ("value", value), ("currency", currency),
                      ("tax", _number(_first(props_d.get("tax")))), ("shipping", _number(_first(props_d.get("shipping")))),
                      ("coupon", _first(props_d.get("coupon"))), ("affiliation", _first(props_d.get("affiliation"))),
                      ("items", _first(items)), ("engagement_time_msec", 1))
        else:
            fields = (("value", value), ("currency", currency), ("coupon", _first(props_d.get("coupon"))),
                      ("items", _first(items)), ("engagement_time_msec", 1))
        for key, field_value in fields:
            _set(params, key, field_value)
        if not client_id or value is None or not currency or not items or not _ga4_items_ok(items) or (
                name == "purchase" and not params.get("transaction_id")):
            return None
    elif name in ("view_item", "add_to_cart"):
        items = [_ga4_item(props_d)]
        value = _number(props_d.get("value"))
        if value is None and isinstance(props_d.get("price"), (int, float)) and not isinstance(props_d.get("price"), bool):
            value = props_d["price"] * (props_d.get("quantity") or 1)
        params = {}
        for key, field_value in (("value", value), ("currency", currency), ("items", items), ("engagement_time_msec", 1)):
            _set(params, key, field_value)
        if not client_id or value is None or not currency or not _ga4_items_ok(items):
            return None
    elif name == "sign_up":
        params = {}
        _set(params, "method", _first(props_d.get("method"), props_d.get("type")))
        params["engagement_time_msec"] = 1
        if not client_id:
            return None
    else:
        name = _snake(event["event"])
        flat = _flatten(props_d, sep="_") if props_d else {}
        params = {k: ("true" if v is True else "false" if v is False else v) for k, v in flat.items()}
        ok_name = (name.isascii() and name[:1].isalpha() and len(name) <= 40 and name not in GA4_RESERVED
                   and not name.startswith(GA4_PREFIXES))
        ok_params = (all(k.isascii() and k[:1].isalpha() and len(k) <= 40 and k.replace("_", "a").isalnum()
                         and not k.startswith(GA4_PREFIXES) for k in params)
                     and len(params) <= 24 and all(len(v) <= 100 for v in params.values() if isinstance(v, str)))
        if not client_id or not ok_name or not ok_params:
            return None
        params["engagement_time_msec"] = 1
    body["events"] = [{"name": name, "params": params}]
    return url, body


# --------------------------------------------------------------------------- Slack

def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(event: dict, settings: dict):
    if event["type"] != "track" or event["event"] not in settings["events"]:
        return None
    ctraits = _get(event, "context", "traits") or {}
    props = event.get("properties")
    who = _first(ctraits.get("name"), ctraits.get("username"), _get(props, "email"), ctraits.get("email"))
    if who is None:
        if ctraits.get("firstName") and ctraits.get("lastName"):
            who = f"{ctraits['firstName']} {ctraits['lastName']}"
        else:
            who = f"User {event['userId']}" if event.get("userId") else f"Anonymous user {event.get('anonymousId')}"
    body = {"text": f"{_slack_escape(str(who))} did {_slack_escape(event['event'])}."}
    _set(body, "channel", _first((settings.get("channels") or {}).get(event["event"]), settings.get("channel")))
    for key in ("username", "icon_emoji", "icon_url"):
        _set(body, key, _first(settings.get(key)))
    path = settings["webhook_url"].replace("https://hooks.slack.com/services/", "")
    return f"{settings.get('base_url', 'https://hooks.slack.com')}/services/{path}", body


# --------------------------------------------------------------------------- Klaviyo

KLAVIYO_OMIT = {"email", "phone", "phone_number", "firstName", "first_name", "lastName", "last_name", "company", "title",
                "avatar", "address", "name"}


def klaviyo(event: dict, settings: dict):
    base = settings.get("base_url", "https://a.klaviyo.com")
    kind = event["type"]
    context = event.get("context") or {}
    user = _str(_first(event.get("userId")))
    if kind == "identify":
        traits = event.get("traits") or {}
        email = traits.get("email")
        address = traits.get("address") if isinstance(traits.get("address"), dict) else {}
        name = traits.get("name")
        words = name.split() if isinstance(name, str) else []
        company = traits.get("company")
        location = _compact({"address1": address.get("street"), "city": address.get("city"), "region": address.get("state"),
                             "zip": _first(address.get("postalCode"), address.get("postal_code")),
                             "country": address.get("country"), "ip": context.get("ip")})
        attributes = _compact({
            "email": email.strip() if isinstance(email, str) else email,
            "phone_number": _e164(_first(traits.get("phone"), traits.get("phone_number"))),
            "external_id": user,
            "first_name": _first(traits.get("firstName"), traits.get("first_name"), words[0] if words else None),
            "last_name": _first(traits.get("lastName"), traits.get("last_name"), " ".join(words[1:]) or None),
            "organization": _first(_get(company, "name"), company), "title": _first(traits.get("title")),
            "image": _first(traits.get("avatar")), "locale": _first(context.get("locale")), "location": location,
            "properties": {k: v for k, v in traits.items() if k not in KLAVIYO_OMIT and v is not None}})
        if not (attributes.get("email") or attributes.get("phone_number") or attributes.get("external_id")):
            return None
        return f"{base}/api/profile-import", {"data": {"type": "profile", "attributes": attributes}}
    if kind != "track":
        return None
    props = event.get("properties")
    props_d = props if isinstance(props, dict) else {}
    ctraits = context.get("traits") or {}
    email = _first(ctraits.get("email"), props_d.get("email"))
    profile = _compact({"email": email.strip() if isinstance(email, str) else email,
                        "phone_number": _e164(_first(ctraits.get("phone"), props_d.get("phone"))),
                        "external_id": user, "anonymous_id": _first(event.get("anonymousId"))})
    currency = _first(props_d.get("currency"))
    if event["event"] == "Order Completed":
        products = [p for p in props_d.get("products") or [] if isinstance(p, dict)]
        properties = {k: v for k, v in props_d.items() if k != "products" and v is not None}
        _set(properties, "OrderId", _str(_first(props_d.get("order_id"))))
        properties["ItemNames"] = [p["name"] for p in products if p.get("name") is not None]
        properties["Items"] = [_compact({
            "ProductID": _str(_first(p.get("product_id"))), "SKU": _str(_first(p.get("sku"))), "ProductName": _first(p.get("name")),
            "Quantity": _number(_first(p.get("quantity"))), "ItemPrice": _number(_first(p.get("price"))),
            "RowTotal": _number(p["price"] * (p.get("quantity") or 1)) if isinstance(p.get("price"), (int, float)) else None,
            "ProductURL": _first(p.get("url")), "ImageURL": _first(p.get("image_url")),
            "Categories": [p["category"]] if p.get("category") else None, "Brand": _first(p.get("brand"))}) for p in products]
        value = _number(_first(props_d.get("revenue"), props_d.get("total"), props_d.get("value")))
    else:
        properties = props_d if props is not None and props != {} else {}
        value = _number(_first(props_d.get("revenue"), props_d.get("value")))
    attributes = {"properties": properties}
    _set(attributes, "time", _iso(_first(event.get("timestamp"), event.get("originalTimestamp"))))
    _set(attributes, "value", value)
    _set(attributes, "value_currency", currency.upper() if isinstance(currency, str) else currency)
    _set(attributes, "unique_id", event.get("messageId"))
    attributes["metric"] = {"data": {"type": "metric", "attributes": {"name": event["event"].strip()}}}
    attributes["profile"] = {"data": {"type": "profile", "attributes": profile}}
    if not profile or len(event["event"].strip()) >= 128:
        return None
    return f"{base}/api/events", {"data": {"type": "event", "attributes": attributes}}


# --------------------------------------------------------------------------- Meta Conversions API

_PUNCTUATION = set(" \t\r\n!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_META_OMIT = {"email", "phone", "firstName", "first_name", "lastName", "last_name", "name", "address", "fbc", "fbp"}
_META_EVENTS = {"Order Completed": "Purchase", "Checkout Started": "InitiateCheckout", "Product Added": "AddToCart",
                "Product Viewed": "ViewContent"}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _letters(value) -> str:
    return "".join(ch for ch in str(value or "").lower() if ch not in _PUNCTUATION)


def _meta_contents(products: list) -> list:
    contents = []
    for p in products:
        item = {}
        _set(item, "id", _str(_first(p.get("product_id"), p.get("sku"))))
        _set(item, "quantity", _number(_first(p.get("quantity"))))
        _set(item, "item_price", _number(_first(p.get("price"))))
        contents.append(item)
    return contents


def meta_conversions(event: dict, settings: dict):
    kind = event["type"]
    if kind not in ("page", "track"):
        return None
    context = event.get("context") or {}
    ctraits = context.get("traits") or {}
    props = event.get("properties")
    props_d = props if isinstance(props, dict) else {}
    email = str(_first(ctraits.get("email"), props_d.get("email"), _get(event, "traits", "email")) or "").strip().lower()
    name = ctraits.get("name")
    words = name.split() if isinstance(name, str) else []
    first = _first(ctraits.get("firstName"), ctraits.get("first_name"), words[0] if words else None)
    last = _first(ctraits.get("lastName"), ctraits.get("last_name"), " ".join(words[1:]) or None)
    external_id = str(event.get("userId") or "").strip().lower()
    url = _first(_get(context, "page", "url"), props_d.get("url"))
    action_source = settings.get("action_source") or ("website" if url else "other")
    if action_source == "website" and not (url and context.get("userAgent")):
        return None
    user = {}
    for key, value in (("em", email), ("fn", _letters(first)), ("ln", _letters(last)), ("external_id", external_id)):
        if value:
            user[key] = _sha(value)
    _set(user, "client_ip_address", _first(context.get("ip")))
    _set(user, "client_user_agent", _first(context.get("userAgent")))
    sent = {"event_name": "PageView", "event_time": int((_when(event["timestamp"]) - _EPOCH).total_seconds() // 1),
            "event_id": event["messageId"]}
    _set(sent, "event_source_url", url)
    sent["action_source"] = action_source
    sent["user_data"] = user
    if kind == "track":
        name = _META_EVENTS.get(event["event"])
        currency = _first(props_d.get("currency"), settings.get("default_currency"))
        currency = currency.upper() if isinstance(currency, str) else currency
        data: dict = {}
        if name in ("Purchase", "InitiateCheckout"):
            contents = _meta_contents([p for p in props_d.get("products") or [] if isinstance(p, dict)])
            keys = ("revenue", "total", "value") if name == "Purchase" else ("value", "revenue", "total")
            _set(data, "value", _number(_first(*(props_d.get(k) for k in keys))))
            _set(data, "currency", currency)
            _set(data, "contents", _first(contents))
            _set(data, "content_ids", _first([c["id"] for c in contents if "id" in c]))
            data["content_type"] = "product"
            if name == "Purchase":
                _set(data, "order_id", _str(_first(props_d.get("order_id"))))
                if data.get("value") is None or not data.get("currency"):
                    return None
            elif contents:
                data["num_items"] = sum(c.get("quantity", 1) for c in contents)
        elif name:
            pid = _str(_first(props_d.get("product_id"), props_d.get("sku")))
            price = props_d.get("price")
            value = _number(props_d.get("value"))
            if value is None and isinstance(price, (int, float)):
                value = _number(price * (props_d.get("quantity") or 1))
            _set(data, "value", value)
            _set(data, "currency", currency)
            _set(data, "content_ids", [pid] if pid else None)
            _set(data, "content_name", _first(props_d.get("name")))
            _set(data, "content_category", _first(props_d.get("category")))
            data["content_type"] = "product"
            data["contents"] = [_compact({"id": pid, "quantity": _number(_first(props_d.get("quantity"))) or 1,
                                          "item_price": _number(_first(price))})]
        else:
            name = event["event"]
            data = {k: v for k, v in props_d.items() if k not in _META_OMIT and v is not None}
        sent["event_name"] = name
        sent["custom_data"] = data
    base = settings.get("base_url", "https://graph.facebook.com")
    return f"{base}/{settings.get('api_version', 'v21.0')}/{quote(settings['pixel_id'], safe='')}/events", {"data": [sent]}


# --------------------------------------------------------------------------- Customer.io

def _unix_dates(value):
    """ISO-8601 date-times (the workload's are all '...Z') as Unix seconds, at any depth."""
    if isinstance(value, dict):
        return {k: _unix_dates(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_unix_dates(v) for v in value if v is not None]
    if isinstance(value, str) and len(value) >= 20 and value[4] == "-" and value[10] == "T" and value.endswith("Z"):
        try:
            return int((_when(value) - _EPOCH).total_seconds() // 1)
        except ValueError:
            return value
    return value


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid(message_id: str, when: str) -> str:
    """A ULID: the event time in ms, then the first 80 bits of the messageId's SHA-256, in Crockford base32."""
    number = ((_when(when) - _EPOCH) // _MS << 80) | int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:10], "big")
    return "".join(_CROCKFORD[(number >> shift) & 31] for shift in range(125, -1, -5))


def customerio(event: dict, settings: dict):
    base = settings.get("base_url") or ("https://track-eu.customer.io" if settings.get("region") == "eu" else "https://track.customer.io")
    kind = event["type"]
    user = _str(_first(event.get("userId")))
    identifiers = {"id": user} if user else None
    timestamp = int((_when(event["timestamp"]) - _EPOCH).total_seconds() // 1)
    if kind == "identify":
        traits = event.get("traits") or {}
        if not identifiers or len(user) > 150:
            return None
        attributes = {k: v for k, v in _unix_dates(traits).items() if k not in ("createdAt", "created_at")}
        email = _first(traits.get("email"), _get(event, "context", "traits", "email"), _get(event, "properties", "email"))
        attributes.pop("email", None)  # an explicit key comes after the merged ones, as the mapping's @merge does
        _set(attributes, "email", email.strip() if isinstance(email, str) else email)
        created = _first(traits.get("createdAt"), traits.get("created_at"))
        _set(attributes, "created_at", None if created is None else int((_when(created) - _EPOCH).total_seconds() // 1))
        _set(attributes, "anonymous_id", _first(event.get("anonymousId")))
        return f"{base}/api/v2/entity", {"type": "person", "identifiers": identifiers, "action": "identify",
                                         "timestamp": timestamp, "attributes": attributes}
    if kind == "group":
        traits = event.get("traits") or {}
        attributes = {k: v for k, v in _unix_dates(traits).items() if k not in ("createdAt", "created_at")}
        body = {"type": "object", "identifiers": {"object_type_id": settings.get("object_type_id", "1"),
                                                  "object_id": _str(event["groupId"])},
                "action": "identify", "attributes": attributes}
        if identifiers:
            body["cio_relationships"] = [{"identifiers": identifiers}]
        return f"{base}/api/v2/entity", body
    if kind not in ("track", "page", "screen"):
        return None
    if kind == "track":
        name = event["event"].strip()
    elif kind == "page":
        name = _first(_get(event, "context", "page", "url"), _get(event, "properties", "url"), event.get("name"))
    else:
        name = _first(event.get("name"))
    if not name or len(name) > 100 or (user and len(user) > 150):
        return None
    attributes = _unix_dates(event["properties"]) if event.get("properties") is not None else None
    action = "event" if kind == "track" else kind
    if identifiers:
        body = {"type": "person", "identifiers": identifiers, "action": action, "id": _ulid(event["messageId"], event["timestamp"]),
                "name": name, "timestamp": timestamp}
        _set(body, "attributes", attributes)
        return f"{base}/api/v2/entity", body
    body = {"name": name, "type": action, "id": _ulid(event["messageId"], event["timestamp"]), "anonymous_id": event["anonymousId"],
            "timestamp": timestamp}
    _set(body, "data", attributes)
    return f"{base}/api/v1/events", body


# --------------------------------------------------------------------------- Webhook

def webhook(event: dict, settings: dict):
    """The event as received, to the URL; X-Signature over the very bytes sent (so the body is encoded once,
    here, and returned as those bytes)."""
    body = orjson.dumps(event)
    headers = dict(settings.get("headers") or {})
    if settings.get("shared_secret"):
        digest = hashlib.sha256 if settings.get("signature_sha256") else hashlib.sha1
        headers["X-Signature"] = hmac.new(settings["shared_secret"].encode(), body, digest).hexdigest()
    return settings["url"], body


# --------------------------------------------------------------------------- Amplitude

_MOBILE_DEVICES = {"iPhone", "iPod", "Generic Smartphone", "Generic Feature Phone"}
_MOBILE_OS = {"Android", "Windows Phone", "BlackBerry OS", "Symbian OS", "KaiOS", "Firefox OS"}
_DESKTOP_OS = {"Windows", "Mac OS X", "Linux", "Ubuntu", "Debian", "Fedora", "Chrome OS", "FreeBSD", "OpenBSD",
               "NetBSD", "Solaris"}


@functools.lru_cache(maxsize=4096)
def _device(text: str) -> dict:
    """device_model and device_type from ua-parser, with _user_agent's browser and os (kept per string)."""
    from ua_parser import parse
    result, fields = parse(text), dict(_user_agent(text))
    device = result.device.family if result.device else None
    brand = result.device.brand if result.device else None
    fields["device_model"] = result.device.model if result.device else None
    kind = None
    if device == "Spider":
        kind = "bot"
    elif device in {"iPad", "Kindle", "Generic Tablet"} or brand == "Generic_Android_Tablet":
        kind = "tablet"
    elif device in _MOBILE_DEVICES or fields.get("os") in _MOBILE_OS:
        kind = "mobile"
    elif fields.get("os") in _DESKTOP_OS and device in (None, "Other", "Mac"):
        kind = "desktop"
    fields["device_type"] = kind
    return {k: v for k, v in fields.items() if v not in (None, "", "Other")}


def _amplitude_host(settings: dict, usermap: bool = False) -> str:
    if settings.get("base_url"):
        return settings["base_url"].rstrip("/")
    if settings.get("region") == "eu":
        return "https://api.eu.amplitude.com"
    return "https://api.amplitude.com" if usermap else "https://api2.amplitude.com"


def _amplitude_common(event: dict, context: dict, settings: dict, user, device) -> tuple[dict, dict]:
    """(event fields shared by track, page and screen, in the mapping's order; the parsed user agent)."""
    ua = _device(context["userAgent"]) if context.get("userAgent") else {}
    os_, dev = context.get("os") or {}, context.get("device") or {}
    campaign, page, location = context.get("campaign") or {}, context.get("page") or {}, context.get("location") or {}
    out: dict = {}
    _set(out, "user_id", user)
    _set(out, "device_id", device)
    _set(out, "time", _epoch_ms(_first(event.get("timestamp"), event.get("originalTimestamp"))))
    out["insert_id"] = _str(event["messageId"])
    _set(out, "event_properties", event.get("properties"))
    if campaign or page.get("referrer"):
        latest = {k: v for k, v in (("utm_source", campaign.get("source")), ("utm_medium", campaign.get("medium")),
                                    ("utm_campaign", campaign.get("name")), ("utm_term", campaign.get("term")),
                                    ("utm_content", campaign.get("content")), ("referrer", page.get("referrer")))
                  if not _empty(v)}
        first = {f"initial_{k}": v for k, v in latest.items()}
        out["user_properties"] = {k: v for k, v in (("$set", latest), ("$setOnce", first)) if v}
    if context.get("groupId"):
        out["groups"] = {settings.get("group_type", "company"): str(context["groupId"])}
    _set(out, "app_version", _get(context, "app", "version"))
    platform = dev.get("type")
    if platform is not None:
        platform = platform.replace("ios", "iOS").replace("android", "Android")
    elif _get(context, "library", "name") == "analytics.js":
        platform = "Web"
    _set(out, "platform", platform)
    browser_major = ua["browser_version"].split(".")[0] if ua.get("browser_version") else None
    for key, value in (("os_name", _first(os_.get("name"), ua.get("browser"), ua.get("os"))),
                       ("os_version", _first(os_.get("version"), browser_major, ua.get("os_version"))),
                       ("device_brand", _first(dev.get("brand"), ua.get("device_brand"))),
                       ("device_manufacturer", dev.get("manufacturer")),
                       ("device_model", _first(dev.get("model"), ua.get("device_model"))),
                       ("device_type", ua.get("device_type")),
                       ("carrier", _get(context, "network", "carrier")),
                       ("country", location.get("country")), ("region", location.get("region")),
                       ("city", location.get("city")), ("language", context.get("locale")),
                       ("location_lat", location.get("latitude")), ("location_lng", location.get("longitude")),
                       ("ip", context.get("ip"))):
        _set(out, key, value)
    ad_id = dev.get("advertisingId")
    if os_.get("name") == "iOS":
        _set(out, "idfa", ad_id)
    if os_.get("name") == "Android":
        _set(out, "adid", ad_id)
    out["library"] = "eventmap"
    return out, ua


def amplitude(event: dict, settings: dict):
    kind, context = event["type"], event.get("context") or {}
    user = _str(event.get("userId"))
    device = _str(_first(_get(context, "device", "id"), event.get("anonymousId")))
    if _empty(user) and _empty(device):
        return None  # rejected: no id
    host = _amplitude_host(settings)
    if kind in ("track", "page", "screen"):
        out, _ = _amplitude_common(event, context, settings, user, device)
        props = event.get("properties")
        if kind == "track":
            out["event_type"] = event["event"]
        else:
            label = "Page" if kind == "page" else "Screen"
            out["event_type"] = f"Viewed {event['name']}" if event.get("name") else f"Loaded a {label}"
            extra = {k: v for k, v in (props or {}).items() if v is not None}
            _set(extra, "name", event.get("name"))
            if kind == "page":
                _set(extra, "category", event.get("category"))
            out["event_properties"] = extra
        if kind == "track" and event["event"] == "Order Completed":
            props = props or {}
            revenue = _first(props.get("revenue"), props.get("total"))
            _set(out, "revenue", _number(revenue) if isinstance(revenue, (int, float, str)) else revenue)
            out["revenueType"] = _first(props.get("revenueType")) or "Purchase"
            currency = props.get("currency")
            _set(out, "currency", currency.upper() if isinstance(currency, str) else currency)
        body: dict = {"api_key": settings["api_key"], "events": [out]}
        if settings.get("min_id_length"):
            body["options"] = {"min_id_length": settings["min_id_length"]}
        path = "/batch" if settings.get("endpoint") == "batch" else "/2/httpapi"
        return f"{host}{path}", body
    options = orjson.dumps({"min_id_length": settings["min_id_length"]}).decode() if settings.get("min_id_length") else None
    if kind == "identify":
        ident, ua = _amplitude_identify(event, context, settings, user, device)
        form = {"api_key": settings["api_key"], "identification": orjson.dumps(ident).decode()}
        if options:
            form["options"] = options
        return f"{host}/identify", urlencode(form).encode()
    if kind == "group":
        group_type, value = settings.get("group_type", "company"), _str(event.get("groupId"))
        membership = {k: v for k, v in (("user_id", user), ("device_id", device)) if not _empty(v)}
        membership["groups"] = {group_type: value}
        membership["user_properties"] = {"$set": {group_type: value}}
        properties = [{"group_type": group_type, "group_value": value,
                       "group_properties": {"$set": event.get("traits") or {}}}]
        forms = [{"api_key": settings["api_key"], "identification": orjson.dumps(membership).decode()},
                 {"api_key": settings["api_key"], "identification": orjson.dumps(properties).decode()}]
        if options:
            for form in forms:
                form["options"] = options
        return [(f"{host}/identify", urlencode(forms[0]).encode()), (f"{host}/groupidentify", urlencode(forms[1]).encode())]
    return None  # alias: only with map_aliases (not in the benchmark's settings)


def _amplitude_identify(event: dict, context: dict, settings: dict, user, device) -> tuple[dict, dict]:
    ua = _device(context["userAgent"]) if context.get("userAgent") else {}
    os_, dev = context.get("os") or {}, context.get("device") or {}
    campaign, page, location = context.get("campaign") or {}, context.get("page") or {}, context.get("location") or {}
    latest = {k: v for k, v in (("utm_source", campaign.get("source")), ("utm_medium", campaign.get("medium")),
                                ("utm_campaign", campaign.get("name")), ("utm_term", campaign.get("term")),
                                ("utm_content", campaign.get("content")), ("referrer", page.get("referrer")))
              if v is not None}
    traits = {k: v for k, v in (event.get("traits") or {}).items() if v is not None}
    to_set = {**traits, **latest}
    to_set = {k: v for k, v in to_set.items() if not _empty(v)}
    first = {f"initial_{k}": v for k, v in latest.items() if not _empty(v)}
    ident: dict = {}
    for key, value in (("user_id", user), ("device_id", device)):
        if not _empty(value):
            ident[key] = value
    properties = {k: v for k, v in (("$set", to_set), ("$setOnce", first)) if v}
    if properties:
        ident["user_properties"] = properties
    if context.get("groupId"):
        ident["groups"] = {settings.get("group_type", "company"): str(context["groupId"])}
    platform = dev.get("type")
    if platform is not None:
        platform = platform.replace("ios", "iOS").replace("android", "Android")
    elif _get(context, "library", "name") == "analytics.js":
        platform = "Web"
    browser_major = ua["browser_version"].split(".")[0] if ua.get("browser_version") else None
    for key, value in (("app_version", _get(context, "app", "version")), ("platform", platform),
                       ("os_name", _first(os_.get("name"), ua.get("browser"), ua.get("os"))),
                       ("os_version", _first(os_.get("version"), browser_major, ua.get("os_version"))),
                       ("device_brand", _first(dev.get("brand"), ua.get("device_brand"))),
                       ("device_manufacturer", dev.get("manufacturer")),
                       ("device_model", _first(dev.get("model"), ua.get("device_model"))),
                       ("carrier", _get(context, "network", "carrier")), ("country", location.get("country")),
                       ("region", location.get("region")), ("city", location.get("city")),
                       ("language", context.get("locale"))):
        if not _empty(value):
            ident[key] = value
    return ident, ua


# --------------------------------------------------------------------------- PostHog

def posthog(event: dict, settings: dict):
    base = settings["base_url"].rstrip("/") if settings.get("base_url") else \
        f"https://{settings.get('region', 'us')}.i.posthog.com"
    kind, context = event["type"], event.get("context") or {}
    distinct = _str(_first(event.get("userId"), event.get("anonymousId")))
    when = _iso(_first(event.get("timestamp"), event.get("originalTimestamp")))
    uid = str(uuid.uuid5(_NAMESPACE, event["messageId"]))
    if kind in ("track", "page", "screen"):
        ua = _device(context["userAgent"]) if context.get("userAgent") else {}
        page, os_ = context.get("page") or {}, context.get("os") or {}
        props_in = event.get("properties") or {}
        props = {k: v for k, v in props_in.items() if v is not None}
        kind_type = ua.get("device_type")
        for key, value in (("$current_url", _first(page.get("url"), props_in.get("url"))),
                           ("$referrer", _first(page.get("referrer"), props_in.get("referrer"))),
                           ("$pathname", _first(page.get("path"), props_in.get("path"))),
                           ("$ip", context.get("ip")), ("$browser", ua.get("browser")),
                           ("$browser_version", ua.get("browser_version")),
                           ("$os", _first(os_.get("name"), ua.get("os"))),
                           ("$os_version", _first(os_.get("version"), ua.get("os_version"))),
                           ("$device_type", kind_type.capitalize() if kind_type else None),
                           ("$app_version", _get(context, "app", "version"))):
            _set(props, key, value)
        props["$lib"] = "eventmap"
        if context.get("groupId"):
            props["$groups"] = {settings.get("group_type", "company"): str(context["groupId"])}
        if kind == "track":
            name = event["event"]
        elif kind == "page":
            name = "$pageview"
            _set(props, "$title", _first(props_in.get("title"), page.get("title")))
            _set(props, "name", event.get("name"))
            _set(props, "category", event.get("category"))
        else:
            name = "$screen"
            _set(props, "$screen_name", event.get("name"))
        item = {"event": name, "distinct_id": distinct, "timestamp": when, "uuid": uid, "properties": props}
    elif kind == "identify":
        props = {"$set": {k: v for k, v in (event.get("traits") or {}).items() if v is not None}}
        if event.get("userId"):
            _set(props, "$anon_distinct_id", event.get("anonymousId"))
        _set(props, "$ip", context.get("ip"))
        props["$lib"] = "eventmap"
        item = {"event": "$identify", "distinct_id": distinct, "timestamp": when, "uuid": uid, "properties": props}
    elif kind == "alias":
        previous = _str(event.get("previousId"))
        item = {"event": "$create_alias", "distinct_id": previous, "timestamp": when, "uuid": uid,
                "properties": {"distinct_id": previous, "alias": _str(event.get("userId")), "$lib": "eventmap"}}
    else:  # group
        group_type, key = settings.get("group_type", "company"), _str(event["groupId"])
        item = {"event": "$groupidentify", "distinct_id": distinct, "timestamp": when, "uuid": uid,
                "properties": {"$group_type": group_type, "$group_key": key,
                               "$group_set": {k: v for k, v in (event.get("traits") or {}).items() if v is not None},
                               "$groups": {group_type: key}, "$lib": "eventmap"}}
    item = {k: v for k, v in item.items() if v is not None}
    body: dict = {"api_key": settings["api_key"]}
    if settings.get("historical_migration"):
        body["historical_migration"] = True
    body["batch"] = [item]
    return f"{base}/batch/", body


# --------------------------------------------------------------------------- Braze

BRAZE_PROFILE_TRAITS = {"email", "phone", "firstName", "first_name", "lastName", "last_name", "name", "gender", "birthday",
                        "avatar", "address"}
BRAZE_GENDERS = {"male": "M", "man": "M", "m": "M", "female": "F", "woman": "F", "w": "F", "f": "F", "other": "O",
                 "o": "O", "not applicable": "N", "n": "N", "prefer not to say": "P", "p": "P"}
BRAZE_PURCHASE_FIELDS = {"products", "product_id", "currency", "price", "quantity"}


def braze(event: dict, settings: dict):
    url = f"{settings.get('base_url') or settings.get('instance_url', 'https://rest.iad-01.braze.com')}/users/track"
    kind = event["type"]
    user = _str(_first(event.get("userId")))
    who = {"external_id": user} if user else {
        "user_alias": {"alias_name": _str(event["anonymousId"]), "alias_label": settings.get("alias_label", "anonymous_id")}}
    update_only = settings.get("update_existing_only", False)
    app = {"app_id": settings["app_id"]} if settings.get("app_id") else {}
    if kind == "identify":
        traits = event.get("traits") or {}
        attributes = {k: v for k, v in traits.items() if k not in BRAZE_PROFILE_TRAITS and v is not None}
        attributes.update(who)
        attributes["_update_existing_only"] = update_only
        address = traits.get("address") if isinstance(traits.get("address"), dict) else {}
        name = traits.get("name")
        words = name.split() if isinstance(name, str) else []
        email = _first(traits.get("email"), _get(event, "context", "traits", "email"))
        gender = traits.get("gender")
        attributes.update(_compact({
            "email": email.strip() if isinstance(email, str) else email, "phone": _e164(_first(traits.get("phone"))),
            "first_name": _first(traits.get("firstName"), traits.get("first_name"), words[0] if words else None),
            "last_name": _first(traits.get("lastName"), traits.get("last_name"), " ".join(words[1:]) or None),
            "gender": BRAZE_GENDERS.get(gender.strip().lower()) if isinstance(gender, str) else None,
            "dob": _when(traits["birthday"]).date().isoformat() if traits.get("birthday") else None,
            "country": _first(address.get("country")),
            "home_city": _first(address.get("city")), "image_url": _first(traits.get("avatar"))}))
        return url, {"attributes": [attributes]}
    if kind != "track":
        return None
    props = event.get("properties")
    time = _iso(_first(event.get("timestamp"), event.get("originalTimestamp")))
    products = _get(props, "products")
    if event["event"] == "Order Completed" and isinstance(products, list) and products and not _empty(products[0]):
        order = {k: v for k, v in props.items() if v is not None}
        purchases = []
        for product in products:
            price, quantity = _number(product.get("price")), _number(product.get("quantity"))
            product_id = _str(_first(product.get("product_id"), product.get("sku"), product.get("name")))
            if not isinstance(price, (int, float)) or product_id is None or len(product_id) > 255 or not (
                    isinstance(quantity if quantity is not None else 1, int) and 1 <= (quantity or 1) <= 100):
                return None
            merged = {**order, **{k: v for k, v in product.items() if v is not None}}
            purchases.append({**who, **app, "product_id": product_id,
                              "currency": _first(product.get("currency"), props.get("currency"), "USD").upper(),
                              "price": price, **({"quantity": quantity} if quantity is not None else {}), "time": time,
                              "properties": {k: v for k, v in merged.items() if k not in BRAZE_PURCHASE_FIELDS},
                              "_update_existing_only": update_only})
        return (url, {"purchases": purchases}) if len(purchases) <= 75 else None
    name = event["event"].strip()
    sent = {**who, **app, "name": name, "time": time}
    if props is not None:
        sent["properties"] = props
    sent["_update_existing_only"] = update_only
    return url, {"events": [sent]}


# --------------------------------------------------------------------------- HubSpot

HUBSPOT_NAME = re.compile(r"[^a-z0-9_]")


def hubspot(event: dict, settings: dict):
    base = settings.get("base_url", "https://api.hubapi.com")
    kind = event["type"]
    if kind == "identify":
        traits = event.get("traits") or {}
        email = _first(traits.get("email"), _get(event, "context", "traits", "email"))
        email = email.strip() if isinstance(email, str) else email
        if _empty(email):
            return None
        address = traits.get("address") if isinstance(traits.get("address"), dict) else {}
        name = traits.get("name")
        words = name.split() if isinstance(name, str) else []
        company = _first(_get(traits.get("company"), "name"), traits.get("company"))
        properties = _compact({
            "email": email, "firstname": _first(traits.get("firstName"), traits.get("first_name"), words[0] if words else None),
            "lastname": _first(traits.get("lastName"), traits.get("last_name"), " ".join(words[1:]) or None),
            "phone": _e164(_first(traits.get("phone"))), "company": _str(company), "jobtitle": _first(traits.get("title")),
            "website": _first(traits.get("website")), "address": _first(address.get("street")),
            "city": _first(address.get("city")), "state": _first(address.get("state")),
            "zip": _first(address.get("postalCode"), address.get("postal_code")), "country": _first(address.get("country"))})
        # the request made before any answer: the update (a 404 creates, offline views show the update)
        return f"{base}/crm/v3/objects/contacts/{quote(email, safe='')}", {"properties": properties}  # query: idProperty=email
    if kind == "track":
        props = event.get("properties") if isinstance(event.get("properties"), dict) else {}
        email = _first(props.get("email"), _get(event, "context", "traits", "email"))
        email = email.strip() if isinstance(email, str) else email
        if _empty(email):
            return None
        name = HUBSPOT_NAME.sub("_", event["event"].strip().lower())
        flat = _flatten({k: v for k, v in props.items() if k != "products"}, sep="_")
        return f"{base}/events/v3/send", {"eventName": f"pe{settings['portal_id']}_{name}", "email": email,
                                          "occurredAt": _iso(_first(event.get("timestamp"), event.get("originalTimestamp"))),
                                          "properties": flat, "uuid": str(uuid.uuid5(_NAMESPACE, event["messageId"]))}
    if kind == "group":
        traits = event.get("traits") or {}
        group_id = _str(event.get("groupId"))
        if _empty(group_id):
            return None
        prop = settings.get("company_id_property", "segment_group_id")
        address = traits.get("address") if isinstance(traits.get("address"), dict) else {}
        properties = {prop: group_id, **_compact({
            "name": _first(traits.get("name")), "domain": _first(traits.get("domain")), "website": _first(traits.get("website")),
            "description": _first(traits.get("description")), "phone": _first(traits.get("phone")),
            "numberofemployees": _number(traits.get("employees")), "address": _first(address.get("street")),
            "city": _first(address.get("city")), "state": _first(address.get("state")),
            "zip": _first(address.get("postalCode"), address.get("postal_code")), "country": _first(address.get("country"))})}
        return f"{base}/crm/v3/objects/companies/batch/upsert", {"inputs": [{"idProperty": prop, "id": group_id, "properties": properties}]}
    return None


# --------------------------------------------------------------------------- Intercom

INTERCOM_HOSTS = {"us": "https://api.intercom.io", "eu": "https://api.eu.intercom.io", "au": "https://api.au.intercom.io"}


def _epoch_s(text):
    return None if text is None else int((_when(text) - _EPOCH).total_seconds() // 1)


def intercom(event: dict, settings: dict):
    """The requests made before any answer: the lookup of the contact, the event, the company (then the lookup)."""
    api = settings.get("base_url") or INTERCOM_HOSTS[settings.get("region", "us")]
    kind = event["type"]
    user = _str(_first(event.get("userId")))
    ctraits = _get(event, "context", "traits") or {}
    if kind == "identify":
        if user:
            return f"{api}/contacts/find_by_external_id/{quote(user, safe='')}", None
        traits = event.get("traits") or {}
        email = _first(traits.get("email"), ctraits.get("email"), _get(event, "properties", "email"))
        email = email.strip() if isinstance(email, str) else email
        if _empty(email):
            return None
        return f"{api}/contacts/search", {"query": {"field": "email", "operator": "=", "value": email}}
    if kind == "track":
        props = event.get("properties") if isinstance(event.get("properties"), dict) else {}
        flat = _flatten({k: v for k, v in props.items() if k not in ("email", "revenue", "products")}, sep="_")
        metadata = {k: ("true" if v is True else "false" if v is False else v) for k, v in flat.items() if v != ""}
        revenue = props.get("revenue")
        if isinstance(revenue, (int, float)) and not isinstance(revenue, bool):
            metadata["price"] = {"amount": int(round(revenue * 100)), "currency": _first(props.get("currency"), "USD")}
        body = {"event_name": event["event"].strip(), "created_at": _epoch_s(_first(event.get("timestamp"), event.get("originalTimestamp")))}
        if user:
            return f"{api}/events", {**body, "user_id": user, "metadata": metadata}
        email = _first(ctraits.get("email"), props.get("email"))
        email = email.strip() if isinstance(email, str) else email
        if _empty(email):
            return None
        return f"{api}/contacts/search", {"query": {"field": "email", "operator": "=", "value": email}}
    if kind == "group":
        traits = event.get("traits") or {}
        company_id = _str(_first(event.get("groupId")))
        if _empty(company_id):
            return None
        company = {"company_id": company_id, **_compact({
            "name": _first(traits.get("name")), "plan": _first(traits.get("plan")),
            "size": _number(_first(traits.get("employees"), traits.get("size"))), "website": _first(traits.get("website")),
            "industry": _first(traits.get("industry")), "monthly_spend": _number(traits.get("monthly_spend")),
            "remote_created_at": _epoch_s(_first(traits.get("createdAt"), traits.get("created_at")))})}
        requests = [(f"{api}/companies", company)]
        if user:
            requests.append((f"{api}/contacts/find_by_external_id/{quote(user, safe='')}", None))
        return requests
    return None


MAPPINGS = {"planhat": planhat, "richpanel": richpanel, "crisp": crisp, "segment": segment,
            "mixpanel": mixpanel, "google-analytics-4": google_analytics_4, "slack": slack,
            "klaviyo": klaviyo, "meta-conversions": meta_conversions, "customerio": customerio,
            "webhook": webhook, "amplitude": amplitude, "posthog": posthog, "braze": braze, "hubspot": hubspot,
            "intercom": intercom}
ACCEPTS = {"planhat": {"identify", "track", "page", "group", "alias"}, "richpanel": {"identify", "track", "page"},
           "crisp": {"identify", "track"}, "segment": {"identify", "track", "page", "screen", "group", "alias"},
           "mixpanel": {"identify", "track", "page", "screen", "group", "alias"}, "google-analytics-4": {"track", "page"},
           "slack": {"track"}, "klaviyo": {"identify", "track"}, "meta-conversions": {"page", "track"},
           "customerio": {"identify", "track", "page", "screen", "group"},
           "webhook": {"identify", "track", "page", "screen", "group", "alias"},
           "amplitude": {"identify", "track", "page", "screen", "group", "alias"},
           "posthog": {"identify", "track", "page", "screen", "group", "alias"},
           "braze": {"identify", "track"}, "hubspot": {"identify", "track", "group"},
           "intercom": {"identify", "track", "group"}}
NAMES = {"planhat": "Planhat", "richpanel": "Richpanel", "crisp": "Crisp", "segment": "Segment",
         "mixpanel": "Mixpanel", "google-analytics-4": "Google Analytics 4", "slack": "Slack",
         "klaviyo": "Klaviyo", "meta-conversions": "Meta Conversions API", "customerio": "Customer.io",
         "webhook": "Webhook", "amplitude": "Amplitude", "posthog": "PostHog", "braze": "Braze",
         "hubspot": "HubSpot", "intercom": "Intercom"}
