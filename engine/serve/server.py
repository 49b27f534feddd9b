"""gunicorn, embedded: a production WSGI server with pre-forked worker processes.

gunicorn supervises the server processes (restarts one that dies, drains them
on SIGTERM) so eventmap does not have to; each process runs a few threads,
which lets one slow client not hold up the others. ``when_ready`` prints the
address actually bound (port 0 picks a free one), for people and tests alike.
"""
from __future__ import annotations

import sys

from gunicorn.app.base import BaseApplication

from .config import ServerOptions


class GunicornServer(BaseApplication):
    def __init__(self, app, options: ServerOptions, on_exit=None):
        self.app, self.options, self.exit_hook = app, options, on_exit
        super().__init__(prog="eventmap serve")

    def load_config(self):
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        settings = {
            "bind": [f"{host}:{self.options.port}"],
            "workers": self.options.workers,
            "threads": self.options.threads,
            "worker_class": "gthread",
            "timeout": 60,               # a stuck process is replaced after this
            "graceful_timeout": 20,      # requests in progress get this long to finish on SIGTERM
            "keepalive": 5,              # SDKs send batch after batch on one connection
            "loglevel": "info",
            "accesslog": None,           # request lines are not logged; they carry nothing a person needs
            "when_ready": _announce,
            "on_exit": self._on_exit,
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn 25.1+ opens a control socket at one path per user: two servers would fight over it
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        return self.app

    def _on_exit(self, server):
        if self.exit_hook:
            self.exit_hook()


def _announce(server) -> None:
    for listener in server.LISTENERS:
        print(f"eventmap serve: listening on {listener}", file=sys.stderr, flush=True)
