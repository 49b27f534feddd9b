"""The shipped mappings written by hand in plain Python: the benchmark's baseline.

Each function takes a valid Segment event and returns (url, body), or a list of them, exactly as
eventmap renders them for the benchmark's workload (the benchmark asserts that
before timing). They are what a careful developer would write without
eventmap: dict reads, the same date and hashing helpers, no framework.
"""
from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from urllib.parse import quote

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

def _flatten(obj: dict, prefix: str = "", out: dict | None = None) -> dict:
    out = {} if out is None else out
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, dict):
            _flatten(value, name, out)
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


MAPPINGS = {"planhat": planhat, "richpanel": richpanel, "crisp": crisp, "segment": segment}
ACCEPTS = {"planhat": {"identify", "track", "page", "group", "alias"}, "richpanel": {"identify", "track", "page"},
           "crisp": {"identify", "track"}, "segment": {"identify", "track", "page", "screen", "group", "alias"}}
NAMES = {"planhat": "Planhat", "richpanel": "Richpanel", "crisp": "Crisp", "segment": "Segment"}
