"""A vendor stand-in for benchmarks: answers every POST with 200 at once, in its own process.

Started in a second process so the sink never competes with the code being
measured for the interpreter lock; only for the machine's cores.
"""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_sink(port_queue) -> None:
    """Serve forever on a free localhost port, announced on ``port_queue``."""

    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs: 40 ms a request
        wbufsize = 1 << 16              # one write per answer

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()
