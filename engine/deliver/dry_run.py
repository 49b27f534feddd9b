"""A client that sends nothing: every request is written out, secrets masked, and recorded as ``dry_run``.

It lets a newcomer watch events flow through the whole pipeline (outbox,
workers, batching) without credentials or a network.
"""
from __future__ import annotations

import json
import sys
import threading

from .http import Response, check_sendable


class DryRunClient:
    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def send(self, request) -> Response:
        check_sendable(request)   # what the live client would refuse is refused here too
        line = json.dumps({"dry_run": True, "destination": request.destination, "action": request.action,
                           "messageIds": list(request.message_ids), **request.to_dict()}, ensure_ascii=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
        return Response(200, {"dry_run": True}, dry_run=True)
