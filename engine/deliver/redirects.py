"""Which redirects a request follows: the one policy for deliveries, steps and source lookups.

A vendor's answer must not steer a request anywhere else. Following a redirect resends the
request's headers, its credentials among them, and (307, 308) its method and body; and its
answer becomes the step's answer, which later steps may read and send on. So a redirect is
followed only when all of these hold:

* it stays on the same origin: the same scheme, host and port as the request it answers
  (that origin already holds the credentials; nothing goes to another host, 169.254.169.254
  included, nor from https to http);
* it keeps the request what it was: a GET or HEAD follows 301, 302, 303, 307 and 308; any other
  method only 307 and 308 (a 301, 302 or 303 would turn a POST into a GET without its body, and
  a delivery would look delivered when nothing was);
* it is one of the first ``MOST_REDIRECTS`` of the request.

Any other 3xx is the answer: final, with the reason in its body (``refusal``). Gladly's lookup of
a merged customer (301 to the new id, same host) is what the same-origin rule keeps working.
"""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

MOST_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
KEEPING_METHOD = (307, 308)
DEFAULT_PORTS = {"http": 80, "https": 443}


def target(url: str, status: int, location: str | None, method: str) -> str | None:
    """Where to send the request next (an absolute URL), or None when this answer is not followed."""
    if status not in REDIRECTS or not location:
        return None
    following = urljoin(url, location)
    if _origin(following) != _origin(url):
        return None
    if method not in ("GET", "HEAD") and status not in KEEPING_METHOD:
        return None
    return following


def refusal(url: str, status: int, location: str, method: str, hops: int) -> str:
    """Why a 3xx with a Location was not followed, for the answer's body (it shows in errors and dead letters)."""
    shown = location[:300]
    following = urljoin(url, location)
    if hops >= MOST_REDIRECTS:
        why = f"more than {MOST_REDIRECTS} redirects in a row"
    elif _origin(following) != _origin(url):
        why = "it leads to another scheme, host or port, and eventmap follows redirects only on the same origin"
    else:
        why = f"a {status} would resend the {method} as a GET without its body (only 307 and 308 keep it)"
    return f"a redirect to {shown}, not followed: {why}; point the request at the URL that answers"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:   # a port that is not a number: an origin of its own, matching nothing
        port = -1
    return scheme, (parts.hostname or "").lower(), port
