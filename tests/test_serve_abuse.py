"""Clients that cannot stop intake: slow ones, too many, a store that cannot keep up, a large prune.

Real ``eventmap serve`` processes, raw sockets for the abusive clients, the real
Segment SDK, and the real SQLite file. Timing is asserted only with wide
margins (the machine is a loaded 2-core one); bench/bench_abuse.py measures p99.
"""
from __future__ import annotations

import base64
import json
import re
import signal
import socket
import sqlite3
import threading
import time
import uuid

import pytest
import requests
import segment.analytics as analytics
from serve_harness import WRITE_KEY, Server, wait_for, write_config

from engine.problems import ConfigError
from engine.serve.config import load_serve_config
from engine.store import DEAD, DELIVERED, Attempt, Finish, NewDelivery, NewEvent, open_store

AUTH = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


def configure(folder, server_options: str):
    path = write_config(folder, "http://127.0.0.1:9", "http://127.0.0.1:9")
    path.write_text(path.read_text() + f"server: {server_options}\n", encoding="utf-8")


def refused(server: Server, status: int) -> int:
    text = requests.get(server.url + "/metrics", timeout=10).text
    found = re.search(rf'^eventmap_refused_total{{status="{status}"}} (\d+)$', text, re.M)
    return int(found.group(1)) if found else 0


def track(server: Server, **headers) -> requests.Response:
    return server.post("/v1/track", {"userId": "u-1", "event": "Legit", "messageId": str(uuid.uuid4())},
                       headers=headers or None)


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def raw_track(message_id: str, more: bytes = b"") -> bytes:
    """A whole /v1/track request as a client writes it; ``more``: header lines to add."""
    body = f'{{"userId": "u", "event": "Raw", "messageId": "{message_id}"}}'.encode()
    return (b"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + AUTH.encode() + b"\r\n" + more
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def read_answer(sock: socket.socket) -> bytes:
    """One answer on a connection kept alive: its head and the Content-Length bytes of body, no more."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def test_slow_clients_do_not_stop_intake_and_are_closed_after_their_timeout(tmp_path):
    configure(tmp_path, "{header_timeout: 5s, body_timeout: 5s}")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "2", "--threads", "2", "--intake-only") as server:
        head = (f"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {AUTH}\r\n"
                f"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n").encode()
        trickling = [connect(server) for _ in range(20)]     # headers, one byte at a time
        short = [connect(server) for _ in range(20)]         # full headers, 10 of the 5000 bytes promised
        for sock in trickling:
            sock.sendall(head[:1])
        for sock in short:
            sock.sendall(head + b'{"userId":')
        opened = time.monotonic()
        # with gthread, 8 such clients held every thread: legitimate requests timed out
        answers = [track(server) for _ in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        assert time.monotonic() - opened < 5, "answered while every slow client was still connected"
        for sock in trickling:
            sock.sendall(head[1:2])                           # still trickling: the deadline is not reset by bytes
        for sock in trickling + short:
            assert read_all(sock).startswith(b"HTTP/1.1 408 "), "a slow client is answered 408 and closed"
            sock.close()
        assert time.monotonic() - opened < 30
        assert refused(server, 408) == 40
        assert track(server).status_code == 200


def test_connections_over_the_bound_are_answered_503_and_closed(tmp_path):
    configure(tmp_path, "{max_connections: 5}")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        idle = [connect(server) for _ in range(5)]
        extra = connect(server)
        assert read_all(extra).startswith(b"HTTP/1.1 503 ")
        extra.close()
        for sock in idle:
            sock.close()
        wait_for(lambda: track(server).status_code == 200, 10, "a request once the idle connections closed")
        assert refused(server, 503) >= 1


def test_a_store_that_cannot_keep_up_is_answered_429_with_retry_after_and_the_sdk_retries(tmp_path):
    configure(tmp_path, "{threads: 1, queue_depth: 0, retry_after: 1s}")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        assert track(server).status_code == 200                 # the store file exists, in WAL mode
        blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")                      # the store's write lock, held by the test
        waiting: list[str] = []                                 # sent, not answered: waiting for the store

        def probe():
            message_id = str(uuid.uuid4())
            try:
                return requests.post(server.url + "/v1/track", json={"userId": "u-1", "event": "Probe",
                                     "messageId": message_id}, auth=(WRITE_KEY, ""), timeout=2)
            except requests.exceptions.ReadTimeout:
                waiting.append(message_id)                      # the first takes the only store thread, and waits
                return None

        # a Response is falsy when not ok: wait for it in a list
        [answer] = wait_for(lambda: [a for a in [probe()] if a is not None and a.status_code == 429], 20, "a 429")
        assert waiting, "the 429 came while a request was waiting for the store"
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["code"] == "busy" and "send it again in 1s" in answer.json()["message"]
        assert refused(server, 429) >= 1                        # /metrics answers while the writers are stuck

        before = refused(server, 429)
        sdk = analytics.Client(WRITE_KEY, host=server.url, max_retries=10)
        user = f"sdk-{uuid.uuid4()}"
        sdk.track(user, "Sent While Busy")
        sent = threading.Thread(target=sdk.flush)
        sent.start()
        wait_for(lambda: refused(server, 429) > before, 20, "the SDK's batch answered 429")
        blocker.execute("COMMIT")                               # the store keeps up again
        blocker.close()
        sent.join(30)
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            def stored() -> list[dict]:
                return [store.get(r.id).event for r in store.list(destination="planhat", limit=1000)]
            wait_for(lambda: any(e.get("userId") == user for e in stored()), 20, "the SDK's event stored after its retry")
            assert set(waiting) <= {e["messageId"] for e in stored()}   # the waiting requests were stored too
        sdk.shutdown()


def test_a_large_prune_does_not_stop_intake(tmp_path):
    configure(tmp_path, "{workers: 1}")
    now = time.time()
    with open_store("sqlite:///events.db", base=tmp_path) as store:
        for _ in range(40):
            store.accept([NewEvent({"type": "track", "event": "Old", "userId": "u"}, None,
                                   [NewDelivery("planhat", DELIVERED)]) for _ in range(1000)], now - 30 * 86400)
    with Server(tmp_path, "--config", "eventmap.yaml", "--intake-only") as server:
        pruned: list[int] = []
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            pruning = threading.Thread(target=lambda: pruned.append(store.prune(now - 86400)))
            pruning.start()
            took = []
            while pruning.is_alive():
                began = time.monotonic()
                assert track(server).status_code == 200
                took.append(time.monotonic() - began)
            pruning.join()
        assert pruned == [40_000]
        # the prune takes seconds; intake was answered all along, never held for long
        assert len(took) >= 20 and max(took) < 2.0, (len(took), max(took))
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            assert store.counts(time.time())["planhat"].get(DELIVERED, 0) == 0
            assert sum(store.counts(time.time())["planhat"].values()) == len(took)


def test_refusals_are_counted_the_same_whichever_server_process_answers(tmp_path):
    configure(tmp_path, "{workers: 2}")
    with Server(tmp_path, "--config", "eventmap.yaml", "--intake-only") as server:
        for _ in range(12):   # new connections, spread over both server processes
            assert server.post("/v1/track", {"userId": "u", "event": "E"}, key="wrong-key").status_code == 401
            assert server.post("/v1/track", data=b"{not json").status_code == 400
        assert server.post("/v1/batch", data=b"x" * 600_000).status_code == 400   # over the 500 KB limit
        huge_headers = requests.post(server.url + "/v1/track", headers={"X-Padding": "p" * 20_000}, timeout=10)
        assert huge_headers.status_code == 400                                     # over the 16 KB for headers
        seen = {(refused(server, 400), refused(server, 401)) for _ in range(12)}
        assert seen == {(14, 12)}
        assert 'eventmap_refused_total{status="429"} 0' in requests.get(server.url + "/metrics", timeout=10).text


def test_sigterm_lets_a_request_waiting_for_the_store_finish_and_does_not_wait_for_a_slow_body(tmp_path):
    configure(tmp_path, "{threads: 1, queue_depth: 0, body_timeout: 60s}")
    server = Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only").start()
    try:
        assert track(server).status_code == 200
        blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        message_id = str(uuid.uuid4())
        body = f'{{"userId": "u", "event": "In Flight", "messageId": "{message_id}"}}'.encode()
        in_flight = connect(server)   # sent whole before any other request, so it takes the only store thread
        in_flight.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + AUTH.encode()
                          + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        wait_for(lambda: track(server).status_code == 429, 20, "a 429: the store thread is taken")
        slow = connect(server)        # a body that will never all arrive
        slow.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.process.poll() is None, "the server waits for the request in flight"
        blocker.execute("COMMIT")
        blocker.close()
        assert read_all(in_flight).startswith(b"HTTP/1.1 200 ")
        assert server.process.wait(15) == 0   # gunicorn's graceful_timeout (20 s) was not needed
        assert read_all(slow) == b""          # dropped unanswered: it was never acknowledged
        slow.close()
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            assert message_id in {r.message_id for r in store.list(limit=100)}
    finally:
        server.kill()


def test_headers_over_16_kb_are_answered_400_and_counted_whether_they_come_whole_or_in_pieces(tmp_path):
    configure(tmp_path, "{workers: 1}")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        whole = connect(server)           # the parser sees the head end: measured there
        whole.sendall(raw_track(str(uuid.uuid4()), b"X-Padding: " + b"p" * 17_000 + b"\r\n"))
        answer = read_all(whole)
        assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"over 16 KB\n"), answer
        whole.close()
        pieces = connect(server)          # a head that never ends, 1 KB at a time: counted as it comes
        pieces.sendall(b"POST /v1/track HTTP/1.1\r\n")
        for n in range(17):               # over 16 KB with the 17th (the server closes then: the last send)
            time.sleep(0.02)
            pieces.sendall(b"X-Padding-%d: %s\r\n" % (n, b"p" * 1000))
        answer = read_all(pieces)
        assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"over 16 KB\n"), answer
        pieces.close()
        assert track(server, **{"X-Padding": "p" * 15_000}).status_code == 200   # under the limit
        assert refused(server, 400) == 2


def chunked_track(message_id: str, more: bytes = b"") -> tuple[bytes, bytes]:
    """A /v1/track request with a chunked body: (its head and body up to the last chunk's size line, the end);
    ``more``: header lines to add."""
    body = f'{{"userId": "u", "event": "Chunked", "messageId": "{message_id}"}}'.encode()
    head = (b"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + AUTH.encode() + b"\r\n" + more
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    return head + b"%x\r\n%s\r\n0\r\n" % (len(body), body), b"\r\n"


def send_until_closed(sock: socket.socket, pieces) -> int:
    """Send each piece (pausing so each is read on its own) until the server closes; the bytes it took."""
    sent = 0
    for piece in pieces:
        try:
            sock.sendall(piece)
        except OSError:   # closed (reset) by the server: it has answered
            break
        sent += len(piece)
        time.sleep(0.005)
    return sent


def test_trailers_count_against_the_header_limit_however_they_come(tmp_path):
    """Trailers after a chunked body had no bound: 139 MB of them took a worker to 397 MB. They count with
    the head against the 16 KB, whether as many lines or as one line that never ends, and are dropped."""
    configure(tmp_path, "{workers: 1}")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        start, end = chunked_track(str(uuid.uuid4()))
        lines = connect(server)                    # 1 KB trailer lines, each complete
        sent = send_until_closed(lines, [start] + [b"X-Trailer-%d: %s\r\n" % (n, b"t" * 1000) for n in range(2000)])
        answer = read_all(lines)
        assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"over 16 KB\n"), answer
        assert sent < 200_000, sent                # refused at 16 KB (what the kernel buffers comes on top)
        lines.close()

        endless = connect(server)                  # one trailer whose value never ends
        sent = send_until_closed(endless, [start, b"X-Trailer: "] + [b"t" * 1000] * 2000)
        answer = read_all(endless)
        assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"over 16 KB\n"), answer
        assert sent < 200_000, sent
        endless.close()

        whole = connect(server)                    # trailers over 16 KB in one piece
        whole.sendall(start + b"X-Trailer: " + b"t" * 17_000 + b"\r\n" + end)
        assert read_all(whole).startswith(b"HTTP/1.1 400 ")
        whole.close()
        padded, end = chunked_track(str(uuid.uuid4()), b"X-Padding: " + b"p" * 9000 + b"\r\n")
        together = connect(server)                 # a 9 KB head and 8 KB of trailers: 17 KB together
        together.sendall(padded + b"X-Trailer: " + b"t" * 8000 + b"\r\n" + end)
        assert read_all(together).startswith(b"HTTP/1.1 400 ")
        together.close()

        message_id = str(uuid.uuid4())
        start, end = chunked_track(message_id)
        kept = connect(server)                     # a few trailers, under the limit: accepted
        kept.sendall(start + b"X-Checksum: abc\r\nX-Note: " + b"n" * 8000 + b"\r\n" + end)
        answer = read_answer(kept)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert track(server).status_code == 200    # the next request on a fresh connection too
        kept.sendall(raw_track(str(uuid.uuid4())))   # and on the same one: the trailers ended that request
        assert read_answer(kept).startswith(b"HTTP/1.1 200 ")
        kept.close()

        big = [{"type": "track", "userId": "u", "event": "Big", "messageId": str(uuid.uuid4()),
                "properties": {"pad": "p" * 1000}} for _ in range(100)]   # a 100 KB body in 30 KB chunks
        data = json.dumps({"batch": big}).encode()
        chunks = [data[i:i + 30_000] for i in range(0, len(data), 30_000)]
        large = connect(server)
        large.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + AUTH.encode()
                      + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        for chunk in chunks:                       # each size line and its data in pieces of their own
            send_until_closed(large, [b"%x\r\n" % len(chunk), chunk[:10_000], chunk[10_000:], b"\r\n"])
        large.sendall(b"0\r\nX-Checksum: abc\r\n\r\n")
        answer = read_answer(large)
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"accepted":100' in answer.replace(b" ", b""), answer
        large.close()
        assert refused(server, 400) == 4
    with open_store("sqlite:///events.db", base=tmp_path) as store:
        kept_ids = {r.message_id for r in store.list(limit=1000)}
        assert message_id in kept_ids and {e["messageId"] for e in big} <= kept_ids


def test_a_request_the_parser_cannot_read_is_answered_400_and_counted(tmp_path):
    configure(tmp_path, "{workers: 1}")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        for request in (b"GARBAGE\r\n\r\n",                                              # no request line
                        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",     # a broken header
                        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n"):
            sock = connect(server)
            sock.sendall(request)
            assert read_all(sock).startswith(b"HTTP/1.1 400 "), request
            sock.close()
        assert refused(server, 400) == 3
        assert track(server).status_code == 200


def test_pipelined_requests_on_a_kept_alive_connection_are_all_answered(tmp_path):
    configure(tmp_path, "{workers: 1}")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        ids = [str(uuid.uuid4()) for _ in range(3)]
        last = raw_track(ids[2], b"Connection: close\r\n")
        sock = connect(server)
        sock.sendall(raw_track(ids[0]) + raw_track(ids[1]) + last[:20])   # two whole, the start of a third
        time.sleep(0.3)
        sock.sendall(last[20:])
        answers = read_all(sock)
        sock.close()
        assert answers.count(b"HTTP/1.1 200 ") == 3 and answers.count(b'{"success": true}') == 3, answers
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            assert set(ids) <= {r.message_id for r in store.list(limit=100)}


def test_the_header_deadline_starts_again_after_each_answer_on_a_kept_alive_connection(tmp_path):
    configure(tmp_path, "{header_timeout: 2s}")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        partial, idle = connect(server), connect(server)
        time.sleep(1.5)                   # most of the first deadline
        for sock in (partial, idle):
            sock.sendall(raw_track(str(uuid.uuid4())))
            assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
        answered = time.monotonic()
        time.sleep(1.0)                   # past the deadline counted from the connection, not from the answer
        partial.sendall(b"POST /v1/tr")
        assert read_all(partial).startswith(b"HTTP/1.1 408 "), "part of a request, then nothing: 408"
        assert read_all(idle) == b"", "nothing more: closed without an answer"
        # 2 s after the answer, before uvicorn's own 5 s keep-alive timeout would close the idle one
        assert time.monotonic() - answered < 4.5
        partial.close()
        idle.close()
        assert refused(server, 408) == 1


def test_server_limits_in_the_configuration_file_are_checked_with_file_and_line(tmp_path):
    path = tmp_path / "eventmap.yaml"
    path.write_text("destinations:\n  planhat:\n    settings: {tenant_token: t}\n"
                    "server:\n  header_timeout: 0\n  body_timeout: soon\n  queue_depth: -1\n  retry_after: 1500ms\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_serve_config(path)
    text = str(raised.value)
    assert "eventmap.yaml:6: server.body_timeout" in text
    assert "eventmap.yaml:7: server.queue_depth" in text
    path.write_text(path.read_text().replace("  body_timeout: soon\n  queue_depth: -1\n", ""), encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_serve_config(path)
    assert str(raised.value).count("\n") == 0 and "eventmap.yaml:5: server.header_timeout: must be more than 0" in str(raised.value)
    path.write_text(path.read_text().replace("header_timeout: 0", "header_timeout: 2s"), encoding="utf-8")
    options = load_serve_config(path).server
    assert (options.header_timeout, options.retry_after, options.body_timeout, options.queue_depth) == (2.0, 1.5, 30.0, 64)


def test_prune_keeps_its_semantics_in_both_stores(store, backend):
    """Old events with no delivery left go, whether they never had one or lost their last to the prune;
    an old event that still has a dead letter stays, and so does a young event with no delivery."""
    day, t0 = 86400.0, 1_700_000_000.0
    body = {"type": "track", "event": "E", "userId": "u"}
    [never, done, dead] = [a.event_id for a in store.accept(
        [NewEvent(body, "never", []), NewEvent(body, "done", [NewDelivery("crisp", DELIVERED)]),
         NewEvent(body, "dead", [NewDelivery("crisp", "queued")])], t0, dedupe_window=day)]
    [young] = [a.event_id for a in store.accept([NewEvent(body, "young", [])], t0 + 5 * day)]
    [leased] = store.lease("crisp", 10, "w", t0, 60)
    store.finish([Finish(leased.id, DEAD, Attempt(t0, 400, "no"), reason="final")], "w", t0)
    assert store.prune(t0 + day, batch=2) == 1
    assert [r.message_id for r in store.list(limit=10)] == ["dead"]
    kept = {r.event_id for r in store.list(limit=10)}
    assert kept == {dead}
    # the events themselves: only the dead letter's and the young one remain
    assert _event_ids(backend) == {dead, young} and not {never, done} & _event_ids(backend)
    # the seen table was trimmed: the dead letter's message id is new again
    assert store.accept([NewEvent(body, "dead", [NewDelivery("crisp", "queued")])], t0 + 2 * day,
                        dedupe_window=day)[0].deliveries[0][2] == "queued"


def _event_ids(backend) -> set[int]:
    """The events table as the database holds it (no Store method lists events without deliveries)."""
    if backend.name == "sqlite":
        with sqlite3.connect(backend.url[len("sqlite:///"):]) as conn:
            return {row[0] for row in conn.execute("SELECT id FROM events")}
    import psycopg
    with psycopg.connect(backend.url, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM events")}
