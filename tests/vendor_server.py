"""A real HTTP server on localhost that plays a vendor for delivery tests.

It records every request it receives and answers by rules a test sets:
status, headers, body, a delay (to outlast the client's timeout) or a dropped
connection (no answer at all). Rules are tried newest first; a rule may be
limited to a number of uses, so "500 twice, then 200" is one line.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    body: object

    def message_ids(self) -> list[str]:
        """The messageIds this request carried, whatever the vendor's shape."""
        found = []

        def walk(value):
            if isinstance(value, dict):
                for key, item in value.items():
                    if key in ("messageId", "message_id") and isinstance(item, str):
                        found.append(item)
                    else:
                        walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
        walk(self.body)
        return found


@dataclass
class Answer:
    status: int = 200
    body: object = field(default_factory=lambda: {"ok": True})
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


@dataclass
class Rule:
    when: object          # callable(Received) -> bool
    answer: object        # Answer, or callable(Received) -> Answer
    times: int | None     # None: forever


class StandIn:
    """A stateful vendor to serve (``server.answer(stand_in)``): ``_answer`` decides each request, one at a
    time, and ``calls`` keeps (method, path, status) of every request it answered."""

    def __init__(self):
        self.calls: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()

    def __call__(self, received: Received) -> Answer:
        with self.lock:
            answer = self._answer(received)
            self.calls.append((received.method, urlsplit(received.path).path, answer.status))
            return answer

    def _answer(self, received: Received) -> Answer:
        raise NotImplementedError


class VendorServer:
    def __init__(self):
        self.received: list[Received] = []
        self.rules: list[Rule] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs: 40 ms a request

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                received = Received(self.command, self.path, dict(self.headers), body)
                answer = server._answer(received)
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.drop:
                    self.close_connection = True
                    return
                # 204 and 304 carry no body (RFC 9110): one sent anyway would be read as the next answer's start
                payload = b"" if answer.status in (204, 304) else json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test, a killed worker): that is the point

            do_GET = do_PUT = do_PATCH = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _answer(self, received: Received) -> Answer:
        with self.lock:
            for rule in reversed(self.rules):
                if rule.when(received):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            self.rules.remove(rule)
                    answer = rule.answer(received) if callable(rule.answer) else rule.answer
                    break
            else:
                answer = Answer()
            if not answer.drop and 200 <= answer.status < 300:
                self.received.append(received)
            else:
                self.refused.append(received)
            return answer

    def answer(self, answer: Answer, when=lambda r: True, times: int | None = None) -> None:
        with self.lock:
            self.rules.append(Rule(when, answer, times))

    # --- what arrived (accepted with a 2xx)
    refused: list[Received]

    def delivered_ids(self) -> list[str]:
        with self.lock:
            return [m for r in self.received for m in r.message_ids()]

    def __enter__(self):
        self.refused = []
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
