"""The baseline for /v1/batch throughput: a WSGI app that only reads the body and parses it with orjson.

    python bench/bare_app.py --config eventmap.yaml --port 0 --workers 2 --threads 4

Issue 16's target is "at least 25% of the events/s of a bare app on the same
server and settings". So this app is served by eventmap's own stack,
``GunicornServer`` from engine/serve/server.py (gunicorn, uvicorn workers,
``GuardedHttp``, the ``AsgiCollector`` adapter with its thread pool and 429
backpressure), with the ``ServerOptions`` read from the same configuration file
and overridden by the same command-line options as ``eventmap serve``. What is
left out is everything eventmap does per event: checks, routing, the store.
It prints "listening on URL" as the server does, so bench_ingest.py starts both
alike. Any path and method answer 200 ``{"success": true}`` once the body
parsed; a body that is not JSON gets 400.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine.serve.app import REFUSED  # noqa: E402
from engine.serve.config import ServerOptions, load_serve_config  # noqa: E402
from engine.serve.server import GunicornServer  # noqa: E402

OK = b'{"success": true}'
HEADERS = [("Content-Type", "application/json")]


def bare_app(environ, start_response):
    """Read, parse, answer. A request the server refused before the app (AsgiCollector's 429 when the
    threads are all busy, 408 for a slow body) is answered with that status, as the collector does."""
    refused = environ.get(REFUSED)
    if refused is not None:
        start_response(f"{refused.status} Refused", HEADERS)
        return [orjson.dumps({"success": False, "code": refused.code})]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    if body:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            start_response("400 Bad Request", HEADERS)
            return [b'{"success": false}']
    start_response("200 OK", HEADERS)
    return [OK]


def options(args) -> ServerOptions:
    """``server:`` from the file, then the command line: what ``eventmap serve`` does (engine/serve/command.py)."""
    server = load_serve_config(args.config).server if args.config else ServerOptions()
    return replace(server, **{k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers),
                                                ("threads", args.threads)) if v is not None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="an eventmap configuration file: its server: section is used")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    GunicornServer(bare_app, options(args)).run()


if __name__ == "__main__":
    main()
