"""Which ``Host`` a request that needs no key may name: the defence against DNS rebinding.

A page on attacker.example whose name the attacker then points at 127.0.0.1 makes
the victim's browser talk to a server on the victim's machine as if it were
attacker.example: same-origin, so the page reads the answers and posts forms. The
browser still names attacker.example in ``Host``. Only a name can be rebound, so a
``Host`` that is an IP address is accepted (any address: NAT and proxies change the
address a client used into another of this machine's), and so is ``localhost``, which
browsers resolve themselves; any other name only when ``server.hosts`` lists it
(``"*"`` accepts every name). The port is not compared: a rebound name brings its own.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

ANY = "*"


def host_name(header: str) -> str:
    """The name or address in a ``Host`` header, without its port, lowercase, without a final dot."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.removesuffix(".")


def misdirected(environ, names: Iterable[str]) -> str | None:
    """Why this server does not answer for the request's ``Host`` (a reason for a 421), or None when it does.

    ``names``: ``server.hosts``. A request without ``Host`` (HTTP/1.0) is not a browser's and is answered.
    """
    header = environ.get("HTTP_HOST")
    if header is None:
        return None
    name = host_name(header)
    if name == "localhost" or any(allowed == ANY or host_name(allowed) == name for allowed in names):
        return None
    try:
        ipaddress.ip_address(name)
    except ValueError:
        shown = header if header.isprintable() and len(header) <= 100 else repr(header[:100])
        return (f"this server does not answer for the host {shown}: it answers for its IP addresses, localhost, "
                f"and the names in server.hosts of its configuration file (a defence against DNS rebinding)")
    return None
