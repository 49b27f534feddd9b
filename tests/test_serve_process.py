"""The server as a process: killed, restarted, started without a configuration, misconfigured."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import requests
import segment.analytics as analytics
from serve_harness import (
    HOOK_PASSWORD,
    HOOK_USER,
    ROOT,
    WRITE_KEY,
    BatchSenders,
    Server,
    environment,
    ok_vendor,
    wait_for,
    write_config,
)

from engine.store import QUEUED, SKIPPED, open_store


def all_message_ids(store) -> set[str]:
    ids, after = set(), 0
    while page := store.list(limit=1000, after_id=after):
        ids |= {r.message_id for r in page}
        after = page[-1].id
    return ids


def test_the_segment_sdk_delivers_through_eventmap_serve_to_a_stand_in_for_each_vendor(tmp_path):
    with ok_vendor() as vendor:
        base = vendor.url_for("").rstrip("/")
        write_config(tmp_path, base, "http://127.0.0.1:9", f"""\
            richpanel:
              settings: {{api_key: rp-key, api_secret: rp-secret, base_url: {base}/richpanel}}
            segment:
              settings: {{write_key: downstream-key, base_url: {base}/segment}}
            """)
        with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1") as server:
            sdk = analytics.Client(WRITE_KEY, host=server.url, sync_mode=True, max_retries=0)
            sdk.identify("ada", {"email": "ada@example.com", "name": "Ada"})
            sdk.track("ada", "Order Completed", {"order_id": "o-9", "revenue": 10})
            prefixes = ("/planhat", "/crisp", "/richpanel", "/segment")
            wait_for(lambda: all(any(r.path.startswith(p) for r, _ in vendor.log) for p in prefixes), 30,
                     "a request at every stand-in vendor")
            with open_store("sqlite:///events.db", base=tmp_path) as store:
                wait_for(lambda: store.counts(time.time()).get("planhat", {}).get("delivered") == 2, 20,
                         "both events delivered to planhat")


def test_sigkill_after_acknowledging_loses_nothing(tmp_path):
    """Four senders post batches until the whole server is SIGKILLed; every batch that got a 200 is stored."""
    write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    server = Server(tmp_path, "--config", "eventmap.yaml", "--workers", "2").start()
    with BatchSenders(server.url) as senders:
        wait_for(lambda: len(senders.acknowledged) >= 400, 30, "400 acknowledged events")
        server.kill()        # SIGKILL to every process of the server while requests are in flight
    acknowledged = senders.acknowledged

    with Server(tmp_path, "--config", "eventmap.yaml", "--intake-only") as restarted:
        assert requests.get(restarted.url + "/healthz", timeout=5).status_code == 200
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            missing = set(acknowledged) - all_message_ids(store)
    assert len(acknowledged) >= 400
    assert not missing, f"{len(missing)} acknowledged events were lost"


def test_with_no_configuration_it_starts_on_localhost_with_a_store_in_the_current_folder(tmp_path):
    env = environment()
    with Server(tmp_path, env=env) as server:
        assert server.url.startswith("http://127.0.0.1:")
        message_id = f"demo-{uuid.uuid4()}"
        answer = requests.post(server.url + "/v1/track", auth=("whatever-key", ""), timeout=5,
                               json={"userId": "u", "event": "Tried It", "messageId": message_id})
        assert answer.status_code == 200, answer.text
        assert "dry-run sink" in server.output()
        # the background process delivers it to the dry-run sink, which prints each request
        def printed():
            found = [json.loads(line) for line in server.output().splitlines()
                     if line.startswith("{") and message_id in line]
            return found if {p["destination"] for p in found} >= {"Planhat", "Segment", "Richpanel"} else None
        # (Crisp rejects it: Crisp needs an email, and the store says so)
        requests_printed = wait_for(printed, 20, "a dry-run request for each destination that takes it")
        assert all("dry-run-tenant-token" not in json.dumps(p) for p in requests_printed)   # masked even here
    with open_store("sqlite:///eventmap.db", base=tmp_path) as store:
        records = [r for r in store.list(limit=100) if r.message_id == message_id]
    assert {r.destination for r in records} == {"planhat", "richpanel", "crisp", "segment"}


def test_with_no_configuration_it_refuses_to_listen_beyond_localhost(tmp_path):
    done = run_serve(tmp_path, "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 1
    assert "listens on localhost only" in done.stderr and "Traceback" not in done.stderr


def test_configuration_errors_are_file_line_and_nothing_listens(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "destinations:\n  planhat:\n    settings: {tenant_token: t}\n"
        "sources:\n  web:\n    write_key: {env: NOT_SET_ANYWHERE}\n  hook:\n    webhook: gladly\n"
        "server:\n  workers: 0\n", encoding="utf-8")
    done = run_serve(tmp_path, "--config", "bad.yaml")
    assert done.returncode == 1
    assert "bad.yaml:10: server.workers: must be at least 1" in done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "bad.yaml").write_text(
        "destinations:\n  planhat:\n    settings: {tenant_token: t}\n"
        "sources:\n  web:\n    write_key: {env: NOT_SET_ANYWHERE}\n  hook:\n    webhook: gladly\n", encoding="utf-8")
    done = run_serve(tmp_path, "--config", "bad.yaml")
    assert "bad.yaml:6: sources.web.write_key: the environment variable NOT_SET_ANYWHERE is not set" in done.stderr
    assert "bad.yaml:7: sources.hook: a webhook source needs auth" in done.stderr


def test_the_background_process_maps_webhooks_after_the_acknowledgement(tmp_path):
    """Without --intake-only the server runs the SourceWorker itself; a PING needs no Gladly API."""
    write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    ping = json.loads((ROOT / "fixtures/gladly/payloads/ping.json").read_text(encoding="utf-8"))
    ping["id"] = f"ping-{uuid.uuid4()}"
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1") as server:
        answer = requests.post(server.url + "/sources/gladly", json=ping, auth=(HOOK_USER, HOOK_PASSWORD), timeout=5)
        assert answer.status_code == 200
        with open_store("sqlite:///events.db", base=tmp_path) as store:
            def finished():
                records = [r for r in store.list(destination="source:gladly") if r.message_id == f"gladly:{ping['id']}"]
                return records and records[0].state not in (QUEUED,) and records[0]
            record = wait_for(finished, 20, "the background process to map the webhook")
    assert record.state == SKIPPED and "PING" in record.reason


def run_serve(folder, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "serve", *args], cwd=folder, env=environment(),
                          capture_output=True, text=True, timeout=60)
