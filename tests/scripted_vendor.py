"""A vendor in the same process that answers each request from a script, for rule tests that walk every branch
of a multi-step action (the requests only an answer leads to included). The stateful vendors run as real HTTP
servers (tests/*_stand_in.py); this one only says what each request gets back."""
from __future__ import annotations

from urllib.parse import urlsplit

from engine.deliver.http import Response
from engine.render.request import Request


class Scripted:
    """Answers by (method, path prefix): an answer (status, body), or a list of them given in turn (the last one
    again after that); 200 {} for anything not in the script. ``asked`` holds every request, in order."""

    def __init__(self, answers: dict):
        self.answers = {key: list(value) if isinstance(value, list) else [value] for key, value in answers.items()}
        self.asked: list[Request] = []

    def send(self, request: Request) -> Response:
        self.asked.append(request)
        path = urlsplit(request.url).path
        for (method, prefix), queue in self.answers.items():
            if request.method == method and path.startswith(prefix):
                status, body = queue.pop(0) if len(queue) > 1 else queue[0]
                return Response(status, body)
        return Response(200, {})
