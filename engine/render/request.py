"""The product of rendering: one HTTP request, as plain data.

A Request carries the real credentials so it can be sent, and hides them in
``repr`` and in ``to_dict()`` unless asked, so printing or logging one never
leaks a key. It hides them by provenance: ``twin`` renders the same request
again with sentinels for the secret settings (see ``secrets.masked_twin``), so
only what was built from a secret is masked. A request without a twin (or
whose twin could not be rendered) falls back to searching for the secrets' text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from ..jsoncodec import dumps_bytes
from ..secrets import MASK, Masker, masked_twin

# (owner, settings, events, batched): how to render this request again with sentinels for the secret
# settings; ``owner.twin_shown(settings, events, batched)`` does it (engine/destination.py)
Twin = tuple

@dataclass(slots=True, repr=False)  # slots, not frozen: a frozen init costs twice as much, once per event
class Request:
    destination: str
    action: str
    method: str
    url: str
    headers: dict
    query: dict
    body: object
    format: str = "json"  # "json" or "form"
    message_ids: tuple = ()
    secrets: frozenset = field(default=frozenset(), compare=False)
    twin: Twin | None = field(default=None, compare=False)
    # the encoded body, kept when a header or query value read it (a signature): sent exactly as signed
    wire: bytes | None = field(default=None, compare=False)

    def to_dict(self, show_secrets: bool = False) -> dict:
        data = {"method": self.method, "url": self.url, "headers": self.headers,
                "query": self.query, "body": self.body}
        if show_secrets or not self.secrets:
            return data
        shown = self.twin[0].twin_shown(*self.twin[1:]) if self.twin is not None else None
        if shown is not None:
            return masked_twin(data, *shown)
        masker = Masker(self.secrets)
        masked = {key: masker.data(value) for key, value in data.items()}  # a token in the URL: walk the URL only
        auth = masked["headers"].get("Authorization")
        if auth and auth != self.headers.get("Authorization"):
            # any secret inside a credential hides the whole credential, not only its middle
            masked["headers"]["Authorization"] = auth.split(" ", 1)[0] + " " + MASK
        return masked

    def full_url(self) -> str:
        if not self.query:
            return self.url
        joiner = "&" if "?" in self.url else "?"
        return self.url + joiner + urlencode(self.query, doseq=True)

    def encoded_body(self) -> bytes | None:
        if self.wire is not None:
            return self.wire
        if self.body is None:
            return None
        if self.format == "form":
            return urlencode(self.body, doseq=True).encode("utf-8")  # type: ignore[arg-type]  # a form body is a dict
        return dumps_bytes(self.body)  # json.dumps(..., ensure_ascii=False, separators=(",", ":")), via orjson

    def __repr__(self) -> str:
        shown = self.to_dict()
        return f"<Request {self.destination}.{self.action} {shown['method']} {shown['url']} events={len(self.message_ids)}>"
