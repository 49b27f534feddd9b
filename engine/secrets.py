"""Keep secrets out of everything a person or a log can see.

Requests are masked by provenance (``masked_twin``): the request is rendered
again with every secret setting replaced by a sentinel, and whatever differs
between the two renders was built from a secret. Where the sentinel shows
through (a token in a URL, ``Bearer <token>``) only the secret becomes
``***``; where it does not (base64 in Basic auth, an HMAC signature) the whole
value does. Nothing else is touched, however short the secret.

``Masker`` searches text for the known secret values instead (raw,
percent-encoded, inside base64). It is the last line of defence where no
provenance exists: a vendor echoing a key in its answer, log lines, and a
request whose sentinel render failed. A composite secret (``id:key``, the way
Basic auth carries a pair) is also looked for part by part, since a vendor may
echo one half; a part shorter than ``MIN_PART`` characters is left to the whole,
so an ``api:`` or ``user:`` prefix does not mask those words in every answer.
"""
from __future__ import annotations

import base64
import functools
import os
from urllib.parse import quote, quote_plus

import orjson

MASK = "***"
MIN_ENCODED = 4  # base64 needles shorter than this would mask innocent text
MIN_PART = 6     # a part of a composite secret is masked on its own from this length ("user", "api" are words)
# Lowercase letters and digits only: they survive lower, percent-encoding and JSON unchanged. Random per
# process, so no event can carry one.
_SENTINEL = "emk" + os.urandom(6).hex()


def needles(secret: str) -> list[str]:
    """Every text to look for, longest first: the secret's forms, and those of its parts (``parts``)."""
    forms = _encodings(secret)
    for part in parts(secret):
        forms |= _encodings(part)
    return sorted((f for f in forms if f), key=len, reverse=True)


def parts(secret: str) -> set[str]:
    """The parts of a composite secret worth masking alone: split at every ``:``, and after the first one
    (Basic auth's split: a password may hold ``:``), each of ``MIN_PART`` characters or more."""
    if ":" not in secret:
        return set()
    found = set(secret.split(":")) | {secret.partition(":")[2]}
    return {part for part in found if len(part) >= MIN_PART}


def _encodings(secret: str) -> set[str]:
    """``secret`` raw; percent-encoded as a path segment, a path (Jinja's urlencode keeps "/") and a query
    value; and the characters of its base64 that carry only its bytes, at each of the three alignments."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    raw = secret.encode("utf-8")
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        # drop the characters that carry the padding bytes and the partial tail
        start = (offset * 4 + 2) // 3
        end = len(encoded) - (4 if (offset + len(raw)) % 3 else 0)
        core = encoded[start:end] if end > start else ""
        if len(core) >= MIN_ENCODED:
            forms.add(core)
    return forms


class Masker:
    """Replaces every known form of the given secrets in strings and nested data."""

    def __init__(self, secrets):
        self.needles, self._json_needles = _forms(frozenset(str(s) for s in secrets if s))

    def text(self, value: str) -> str:
        for needle in self.needles:
            if needle in value:
                value = value.replace(needle, MASK)
        return value

    def data(self, value):
        """``value`` with every secret masked; ``value`` itself when it holds none."""
        if not self.needles:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (dict, list)) and self._json_needles is not None:
            try:
                written = orjson.dumps(value)
            except TypeError:  # keys that are not strings, say: walk it
                written = None
            if written is not None and not any(needle in written for needle in self._json_needles):
                return value
        return self._walk(value)

    def _walk(self, value):
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self._walk(k) if isinstance(k, str) else k: self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        return value


@functools.lru_cache(maxsize=256)
def _forms(secrets: frozenset) -> tuple[list[str], list[bytes] | None]:
    """Every form of every secret, longest first, and the same as JSON bytes when JSON writes them unchanged.

    Kept, since each rendered request asks again. A needle JSON writes as it is can be looked
    for in the value written as JSON, in one C pass, before walking it: most bodies hold no secret.
    """
    forms = sorted({n for s in secrets for n in needles(s)}, key=len, reverse=True)
    plain = all(_json_writes_as_is(n) for n in forms)
    return forms, ([n.encode("utf-8") for n in forms] if plain else None)


def _json_writes_as_is(text: str) -> bool:
    """True when JSON writes ``text`` without escapes (no quote, backslash or control character)."""
    return '"' not in text and "\\" not in text and all(ch >= " " for ch in text)


def with_sentinels(settings: dict, names) -> tuple[dict, dict]:
    """(``settings`` with each non-empty secret named in ``names`` replaced by a sentinel, {sentinel: secret})."""
    twin, sentinels = dict(settings), {}
    for index, name in enumerate(sorted(names)):
        value = settings.get(name)
        if value not in (None, ""):
            sentinel = f"{_SENTINEL}{index}z"
            twin[name], sentinels[sentinel] = sentinel, str(value)
    return twin, sentinels


def masked_twin(real, twin, sentinels: dict):
    """``real`` with what was built from a secret masked, found by comparing it with ``twin``.

    ``twin`` is the same value rendered with every secret replaced by its sentinel
    (``with_sentinels``): parts equal in both do not depend on a secret and stay as they are.
    A string showing a sentinel, which becomes ``real`` again when the sentinel is replaced by
    its secret (raw or percent-encoded), keeps everything but the secret; any other differing
    value is masked whole.
    """
    if type(real) is type(twin) and real == twin:
        return real
    if isinstance(real, dict) and isinstance(twin, dict) and real.keys() == twin.keys():
        return {key: masked_twin(value, twin[key], sentinels) for key, value in real.items()}
    if isinstance(real, list) and isinstance(twin, list) and len(real) == len(twin):
        return [masked_twin(value, other, sentinels) for value, other in zip(real, twin)]
    if isinstance(real, str) and isinstance(twin, str):
        shown = [s for s in sentinels if s in twin]
        if shown and _embeds(real, twin, shown, sentinels):
            for sentinel in shown:
                twin = twin.replace(sentinel, MASK)
            return twin
        scheme, space, _ = real.partition(" ")
        if space and twin.startswith(scheme + " ") and scheme.isalpha():
            return f"{scheme} {MASK}"  # "Basic ***": the kind of credential is no secret
    return MASK


def _embeds(real: str, twin: str, shown: list, sentinels: dict) -> bool:
    """True when putting one form of each secret where its sentinel is gives ``real`` back exactly."""
    for form in (lambda s: s, lambda s: quote(s, safe=""), quote, quote_plus):
        rebuilt = twin
        for sentinel in shown:
            rebuilt = rebuilt.replace(sentinel, form(sentinels[sentinel]))
        if rebuilt == real:
            return True
    return False


# Request paths that carry a Segment write key in the segment after these two (analytics.js's settings
# document and script); the route's own words after the key stay readable
KEY_PATHS = (("v1", "projects"), ("analytics.js", "v1"))
ROUTE_WORDS = frozenset({"settings", "analytics.js", "analytics.min.js"})


def masked_path(path: str) -> str:
    """A request path as a log line or an error message may show it: the write key masked.

    Every line that quotes a path goes through here. Empty segments (``//v1``) and case do not hide
    the key's place; everything after it but the route's own words is masked too (a mistyped route,
    a key holding ``/``).
    """
    segments = path.split("/")
    named = [i for i, segment in enumerate(segments) if segment]
    words = [segments[i].lower() for i in named]
    for n in range(len(named) - 1):
        if (words[n], words[n + 1]) in KEY_PATHS:
            for place, i in enumerate(named[n + 2:]):
                if place == 0 or words[n + 2 + place] not in ROUTE_WORDS:
                    segments[i] = MASK
            break
    return "/".join(segments)
