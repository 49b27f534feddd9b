"""Keep secrets out of everything a person or a log can see.

A secret can reach output raw (a token in a URL path), percent-encoded, or
base64-encoded inside a longer value (HTTP Basic auth, a signed payload), so
we look for all three forms, not only the raw text.
"""
from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

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
        self.needles = sorted({n for s in secrets if s for n in needles(str(s))}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for needle in self.needles:
            if needle in value:
                value = value.replace(needle, MASK)
        return value

    def data(self, value):
        if not self.needles:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        return value
