"""Storage URLs as people may see them: the password masked, even in a URL that cannot be parsed."""
from __future__ import annotations

import re
from urllib.parse import unquote


def masked_url(url: str) -> str:
    """The URL with its password (in the user part or the query) replaced by ***, even when it cannot be parsed.

    Read by hand, not by urlsplit: a URL urlsplit refuses (or misreads, as a password
    taken for a port when the host is missing) must not come back whole in an error.
    """
    scheme, netloc, tail = _split(url)
    if netloc is None:
        return "***"  # not a URL at all: nothing in it can be trusted to be harmless
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    elif not at and _odd_ports(netloc):
        netloc = "***"  # 'user:secret' with the host forgotten reads as host 'user', port 'secret'
    return f"{scheme}://{netloc}" + _PASSWORD_QUERY.sub(r"\1\2***", tail)


def url_secrets(url: str) -> list[str]:
    """The password in every form it may show up in an error message."""
    _, netloc, tail = _split(url)
    found = []
    if netloc is not None:
        userinfo, at, _ = netloc.rpartition("@")
        if at and ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
        elif not at and _odd_ports(netloc):
            found += [netloc, *(part.partition(":")[2] for part in netloc.split(","))]
    else:
        found.append(url)
    found += [m.group(3) for m in _PASSWORD_QUERY.finditer(tail)]
    return [s for value in found for s in {value, unquote(value)} if s]


_PASSWORD_QUERY = re.compile(r"(?i)([?&])(\w*password=)([^&#]*)")


def _split(url: str) -> tuple[str, str | None, str]:
    """(scheme, netloc, the rest from the path on); netloc None when ``url`` has no '://'."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", None, ""
    start = rest.rfind("@") + 1  # a password may hold '/', '?' or '#': the host part starts after the last '@'
    end = min((i for i in (rest.find(c, start) for c in "/?#") if i >= 0), default=len(rest))
    return scheme, rest[:end], rest[end:]


def _odd_ports(netloc: str) -> bool:
    """True when some host:port of ``netloc`` has a port that is not a number (the IPv6 brackets aside)."""
    for part in netloc.split(","):
        port = part.rpartition("]")[2].partition(":")[2]
        if port and not port.isdigit():
            return True
    return False
