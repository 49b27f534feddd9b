"""Is the address free? Asked before anything is created, so a port in use is one clear line and
exit 1, not a banner, a new store file and the server's own error repeated per process."""
from __future__ import annotations

import errno
import socket

from ..problems import ConfigError, Problem


def check_free(host: str, port: int) -> None:
    """Bind (as the server will, with SO_REUSEADDR) and let go; ConfigError when that fails."""
    if port == 0:
        return   # the system picks a free one
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError([Problem("server.host", f"cannot listen on {host}: {exc.strerror}")]) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            why = ("the port is in use (is another server running? choose another with --port)"
                   if exc.errno == errno.EADDRINUSE else exc.strerror)
            raise ConfigError([Problem("", f"eventmap serve: cannot listen on {host}:{port}: {why}")]) from None
