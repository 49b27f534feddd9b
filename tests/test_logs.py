"""Log lines: one record never forges another (control characters escaped in the text format, as
JSON escapes them), and no line shows a write key from a request path, in either format.

The formats are tried through ``engine.logs.configure`` and a real delivery worker; the paths through
a real ``eventmap serve`` and raw sockets, so the path arrives exactly as a hostile client writes it.
"""
from __future__ import annotations

import io
import json
import logging
import random
import re
import socket

import pytest
from serve_harness import WRITE_KEY, Server, write_config
from vendor_server import Answer, VendorServer

from engine import Engine
from engine.deliver import DestinationWorker, HttpClient, RetryPolicy
from engine.intake import Intake
from engine.logs import LogOptions, configure, escaped
from engine.secrets import masked_path
from engine.store import DEAD, open_store

FORGED = "\n2026-11-29 14:07:39,777 CRITICAL eventmap.deliver: FORGED"
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")   # how every text record starts


@pytest.fixture
def logged():
    """What eventmap logs while the test runs, in the format asked for: ``logged("text")``."""
    stream = io.StringIO()

    def start(kind: str) -> io.StringIO:
        configure(LogOptions(format=kind), stream=stream)
        return stream

    yield start
    for handler in [h for h in logging.getLogger().handlers if h.__class__.__name__ == "_Handler"]:
        logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize("hostile", [FORGED, "\r" + FORGED.strip(), "a\u2028b\u2029c", "\x1b[2J\x1b[31mred",
                                     "nul\x00 del\x7f c1\x85\x9b", "tab\there"])
def test_a_text_line_escapes_control_characters_in_what_it_quotes(logged, hostile):
    stream = logged("text")
    logging.getLogger("eventmap.test").warning("dead letter (messageId %s): %s", hostile, "400 is final")
    written = stream.getvalue()
    assert written.count("\n") == 1 and written.endswith("\n")
    [line] = written.splitlines()   # also splits at \u2028, \x85 and the other line breaks
    assert RECORD.match(line) and line.endswith(": 400 is final")
    assert not any(ch < " " or "\x7f" <= ch < "\xa0" or ch in "\u2028\u2029" for ch in line)
    assert escaped(hostile) in line


def test_escaping_keeps_printable_text_as_it_is():
    text = "Łukasz 雪-snow \\n 'quoted' \"double\" \u00a0nbsp"
    assert escaped(text) == text
    assert escaped("a\nb\rc\td\x1b") == "a\\nb\\rc\\td\\u001b"


def test_a_traceback_keeps_its_lines_each_indented_so_none_passes_for_a_record(logged):
    stream = logged("text")
    try:
        raise ValueError("bad messageId" + FORGED)
    except ValueError:
        logging.getLogger("eventmap.test").exception("delivery %s failed", 7)
    lines = stream.getvalue().splitlines()
    assert RECORD.match(lines[0]) and lines[0].endswith("delivery 7 failed")
    assert len(lines) > 2 and all(line.startswith("  ") for line in lines[1:])
    assert [line for line in lines if RECORD.match(line)] == [lines[0]]
    assert lines[-2:] == ["  ValueError: bad messageId", "  " + FORGED.strip()]   # indented: no record


def test_the_json_format_escapes_too(logged):
    stream = logged("json")
    logging.getLogger("eventmap.test").warning("messageId %s", FORGED)
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "messageId " + FORGED


def test_a_dead_letter_for_a_hostile_message_id_is_one_line(tmp_path, logged):
    """The issue's case: the delivery worker's dead-letter line quotes the event's messageId."""
    stream = logged("text")
    engine = Engine()
    with VendorServer() as vendor, open_store(f"sqlite:///{tmp_path / 'outbox.db'}") as store:
        route = engine.route("segment", {"write_key": "k-1", "base_url": vendor.url}, environ={})
        route.limits = route.limits.__class__(concurrency=1, rate=None, batch=False)
        vendor.answer(Answer(400, {"error": "bad event"}))
        Intake(engine, [route], store).accept([{"type": "track", "event": "E", "userId": "u", "messageId": "m" + FORGED}])
        DestinationWorker(route, store, HttpClient(timeout=5), owner="t", policy=RetryPolicy(retry_for=0),
                          rng=random.Random(1)).run_once()
        assert [r.state for r in store.list()] == [DEAD]
    lines = stream.getvalue().splitlines()
    assert all(RECORD.match(line) for line in lines)   # every line is a record of its own, none forged
    [dead] = [line for line in lines if "FORGED" in line]
    assert "dead letter" in dead and "(messageId m\\n2026-11-29 14:07:39,777 CRITICAL eventmap.deliver: FORGED)" in dead


# --------------------------------------------------------------------------- write keys in request paths

@pytest.mark.parametrize("path, shown", [
    ("/v1/projects/KEY/settings", "/v1/projects/***/settings"),
    ("//v1/projects/KEY/settings", "//v1/projects/***/settings"),
    ("/v1//projects/KEY/settings/", "/v1//projects/***/settings/"),
    ("/V1/Projects/KEY/settings", "/V1/Projects/***/settings"),
    ("/v1/projects/KEY", "/v1/projects/***"),
    ("/v1/projects/KEY/settingsX", "/v1/projects/***/***"),
    ("/v1/projects/KE/Y/settings", "/v1/projects/***/***/settings"),     # a key holding '/' (%2F)
    ("/v1/projects/settings/settings", "/v1/projects/***/settings"),    # the key slot is masked whatever it says
    ("/analytics.js/v1/KEY/analytics.min.js", "/analytics.js/v1/***/analytics.min.js"),
    ("/analytics.js/v1/KEY", "/analytics.js/v1/***"),
    ("/v1/track", "/v1/track"),
    ("/v1/projects", "/v1/projects"),
    ("/sources/gladly", "/sources/gladly"),
])
def test_masked_path_hides_the_key_wherever_the_path_puts_its_place(path, shown):
    assert masked_path(path) == shown


def raw_request(server: Server, head: str) -> bytes:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("kind", ["text", "json"])
def test_no_log_line_shows_a_write_key_from_a_path(tmp_path, kind):
    path = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    path.write_text(path.read_text(encoding="utf-8") + f"logging: {{format: {kind}}}\n", encoding="utf-8")
    unknown = "unknown-key-0c5e"
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        answers = {}
        for key in (WRITE_KEY, unknown):
            for head in (f"POST //v1/projects/{key}/settings HTTP/1.1", f"GET /v1/projects/{key} HTTP/1.1",
                         f"GET /v1/projects/{key}/settingsX HTTP/1.1", f"DELETE /analytics.js/v1/{key}/x HTTP/1.1",
                         f"GET /V1/Projects/{key}/settings HTTP/1.1"):
                answers[head] = raw_request(server, head)
        output = server.output()
    assert answers[f"POST //v1/projects/{WRITE_KEY}/settings HTTP/1.1"].startswith(b"HTTP/1.1 405 ")
    assert answers[f"GET /v1/projects/{WRITE_KEY}/settingsX HTTP/1.1"].startswith(b"HTTP/1.1 404 ")
    assert "/v1/projects/***/settings: 405" in output and "/v1/projects/***/***: 404" in output
    assert WRITE_KEY not in output and unknown not in output
    for answer in answers.values():
        assert WRITE_KEY.encode() not in answer and unknown.encode() not in answer


# --------------------------------------------------------------------------- the formats themselves

def test_a_stack_is_indented_like_a_traceback(logged):
    stream = logged("text")
    logging.getLogger("eventmap.test").warning("where %s", "now", stack_info=True)
    lines = stream.getvalue().splitlines()
    assert RECORD.match(lines[0]) and lines[0].endswith("where now")
    assert lines[1] == "  Stack (most recent call last):" and all(line.startswith("  ") for line in lines[1:])


def test_the_plain_format_is_the_message_alone_and_escaped():
    stream = io.StringIO()
    configure(LogOptions(), stream=stream, plain=True)
    try:
        logging.getLogger("eventmap.test").info("store: %s", "x\ny")
    finally:
        configure(LogOptions(), stream=io.StringIO())
    assert stream.getvalue() == "store: x\\ny\n"


def test_configuring_again_replaces_the_handler_and_leaves_others(logged):
    first = logged("text")
    other = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(other)
    try:
        second = logged("json")
        logging.getLogger("eventmap.test").warning("once")
        assert first.getvalue().count("once") == 1   # one handler of ours, writing JSON now
        assert json.loads(second.getvalue().splitlines()[-1])["message"] == "once"
        assert "once" in other.stream.getvalue()
    finally:
        logging.getLogger().removeHandler(other)


def test_a_json_record_holds_time_level_logger_message_the_facts_and_the_exception(logged):
    stream = logged("json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("eventmap.test").error("dead letter %d", 7, exc_info=True,
                                                 extra={"event": "dead_letter", "delivery": 7, "_internal": 1})
    record = json.loads(stream.getvalue())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert (record["level"], record["logger"], record["message"]) == ("error", "eventmap.test", "dead letter 7")
    assert (record["event"], record["delivery"]) == ("dead_letter", 7)
    assert record["exception"].startswith("Traceback") and "RuntimeError: boom" in record["exception"]
    assert not {"msg", "args", "levelno", "exc_info", "_internal"} & set(record)


def test_the_logging_section_is_read_and_a_bad_every_is_located():
    from engine.logs import log_options
    options, problems = log_options({"logging": {"format": "json", "level": "warning", "every": "30s"}},
                                    lambda path, message: (path, message))
    assert options == LogOptions("json", "warning", 30.0) and problems == []
    options, problems = log_options({}, lambda path, message: (path, message))
    assert options == LogOptions("text", "info", 60.0) and problems == []
    options, problems = log_options({"logging": {"every": "soon"}}, lambda path, message: (path, message))
    [(path, message)] = problems
    assert options.every == 60.0 and path == ("logging", "every") and "soon" in message
