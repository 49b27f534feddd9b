"""Property-based fuzz of request bodies against the collector: no input gets a 500.

Bodies are arbitrary JSON (lone surrogates, NaN, Infinity, huge numbers, deep
nesting, wrong types) wrapped as Segment calls and batches, sent plain, gzipped,
as gzip garbage, truncated, or with a Content-Length that lies. Every answer is
one the API documents, and every event of a 200 batch is either accepted or
listed as rejected. Runs on both stores; bounded by the number of examples.
"""
from __future__ import annotations

import base64
import gzip
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_harness import WRITE_KEY, environment, write_config
from werkzeug.test import Client

from engine.paths import MAPPINGS_DIR
from engine.serve import Collector
from engine.serve.config import load_serve_config
from engine.serve.setup import build

AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
ANSWERS = {200, 400, 401, 404, 405, 413, 415, 429}

surrogates = st.sampled_from(["\ud800", "a\udfffb", "\udbff\ud800", "ok\U0001F600"])
texts = st.text(max_size=20) | surrogates
numbers = (st.integers() | st.integers(min_value=2**63, max_value=10**400) | st.floats()
           | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0]))
scalars = st.none() | st.booleans() | numbers | texts
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(texts, inner, max_size=4), max_leaves=20)
call_types = st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "nonsense"]) | values
events = st.fixed_dictionaries(
    {}, optional={"type": call_types, "event": values, "userId": values, "anonymousId": values,
                  "messageId": values, "timestamp": values | st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01"]),
                  "sentAt": values | st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999+14:00"]),
                  "properties": values, "traits": values, "context": values, "integrations": values,
                  "writeKey": texts})
bodies = (st.builds(lambda batch, extra: {"batch": batch, **extra}, st.lists(events | values, max_size=6),
                    st.fixed_dictionaries({}, optional={"context": values, "sentAt": values, "writeKey": texts}))
          | events | values)


def encoded(body, how: str) -> tuple[bytes, dict]:
    """The JSON text (json.dumps writes NaN, Infinity and lone surrogates as Python reads them), sent ``how``."""
    data = json.dumps(body).encode("utf-8")
    if how == "deep":
        data = b'{"batch":[' + b"[" * 3000 + b"]" * 3000 + b"]}"
    if how == "gzip":
        return gzip.compress(data), {"Content-Encoding": "gzip"}
    if how == "gzip garbage":
        return data[:40], {"Content-Encoding": "gzip"}
    if how == "truncated":
        return data[: len(data) // 2], {}
    if how == "short body":   # a Content-Length that promises more than is sent
        return data, {"Content-Length": str(len(data) + 100)}
    if how == "long body":    # ... or less
        return data, {"Content-Length": str(max(len(data) - 3, 0))}
    return data, {}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    path = write_config(folder, "http://127.0.0.1:9", "http://127.0.0.1:9/gladly")
    return build(load_serve_config(path, environment()), MAPPINGS_DIR, environment())


@pytest.fixture
def client(setup, backend):
    backend.open().close()   # upgraded once
    return Client(Collector(setup.config, setup.engine, setup.routes, backend.open))


def test_no_request_body_makes_the_collector_answer_500(client):
    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=bodies, path=st.sampled_from(["/v1/batch", "/v1/track", "/v1/identify", "/v1/b"]),
           how=st.sampled_from(["plain", "plain", "gzip", "gzip garbage", "truncated", "short body", "long body",
                                "deep"]),
           basic=st.booleans())
    def check(body, path, how, basic):
        data, headers = encoded(body, how)
        headers = {"Content-Type": "application/json", **({"Authorization": AUTH} if basic else {}), **headers}
        overrides = {"CONTENT_LENGTH": headers.pop("Content-Length")} if "Content-Length" in headers else {}
        answer = client.post(path, data=data, headers=headers, environ_overrides=overrides)
        assert answer.status_code in ANSWERS, answer.get_data(as_text=True)
        report = answer.get_json()
        assert report is not None and isinstance(report.get("success"), bool)
        if answer.status_code == 200 and path in ("/v1/batch", "/v1/b"):
            items = body["batch"] if how in ("plain", "gzip") else None
            rejected = [r["index"] for r in report["rejected"]]
            assert len(set(rejected)) == len(rejected)
            if items is not None:
                assert report["accepted"] + len(rejected) == len(items)
                assert all(0 <= i < len(items) for i in rejected)

    check()
