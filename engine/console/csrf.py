"""The console's CSRF token: random, signed for one login, in a cookie and in every form.

A token is ``nonce.signature``, the signature an HMAC of the nonce and the login that
asked for the page (its username and password), with a key made when the console
starts. So a token cannot be chosen by someone else (one planted in the cookie by a
sibling site is refused), and a token issued for one login is refused for another.
A restart makes a new key: the next page sets a new token.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

NONCE_BYTES = 18


class Tokens:
    """Issues and checks tokens; made before the server forks, so every process shares the key."""

    def __init__(self):
        self._key = secrets.token_bytes(32)

    def __repr__(self) -> str:
        return "<Tokens>"

    def issue(self, login: bytes) -> str:
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        return f"{nonce}.{self._sign(nonce, login)}"

    def valid(self, token: str, login: bytes) -> bool:
        nonce, dot, signature = token.partition(".")
        if not dot or len(nonce) != len(secrets.token_urlsafe(NONCE_BYTES)):
            return False
        return hmac.compare_digest(signature.encode(), self._sign(nonce, login).encode())

    def _sign(self, nonce: str, login: bytes) -> str:
        return hmac.new(self._key, nonce.encode() + b"\0" + login, hashlib.sha256).hexdigest()


def login_of(offered: tuple[str, str] | None) -> bytes:
    """What a token is bound to: the username and password offered (nothing for a console without a login)."""
    if offered is None:
        return b""
    user, password = offered
    return user.encode("utf-8", "surrogatepass") + b"\0" + password.encode("utf-8", "surrogatepass")
