"""Keep secrets out of everything a person or a log can see.

A secret can reach output raw (a token in a URL path), percent-encoded, or
base64-encoded inside a longer value (HTTP Basic auth, a signed payload), so
we look for all three forms, not only the raw text.
"""
from __future__ import annotations

import base64
import functools
from urllib.parse import quote, quote_plus

import orjson

MASK = "***"
MIN_ENCODED = 4  # base64 needles shorter than this would mask innocent text


def needles(secret: str) -> list[str]:
    # percent-encoded as a path segment, a path (Jinja's urlencode keeps "/"), and a query value
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
    return sorted((f for f in forms if f), key=len, reverse=True)


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
