"""The outbox commands as a user meets them: configuration errors, enqueue, dry-run delivery."""
from __future__ import annotations

import json

from engine.cli import main
from engine.store.migrations import migrations


def write(tmp_path, text: str):
    config = tmp_path / "eventmap.yaml"
    config.write_text(text, encoding="utf-8")
    return config


GOOD = """\
storage: sqlite:///outbox.db
delivery:
  retry_for: 2h
destinations:
  planhat:
    settings: {tenant_token: cli-secret-token}
    limits: {rate: 10/s}
"""


def test_bad_durations_and_rates_are_named_with_file_and_line(tmp_path, capsys):
    config = write(tmp_path, GOOD.replace("retry_for: 2h", "retry_for: 2 fortnights\n  lease: soon")
                   .replace("rate: 10/s", "rate: fast"))
    assert main(["deliver", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "eventmap.yaml:3: delivery.retry_for:" in err
    assert "eventmap.yaml:4: delivery.lease:" in err
    assert "eventmap.yaml:8: destinations.planhat.limits.rate:" in err
    assert "Traceback" not in err


def test_a_dedupe_window_longer_than_retention_is_refused(tmp_path, capsys):
    config = write(tmp_path, GOOD.replace("retry_for: 2h", "dedupe_window: 30d\n  keep_done_for: 7d"))
    assert main(["enqueue", "-", "--config", str(config)]) == 1
    assert "delivery.dedupe_window: the dedupe window cannot be longer than keep_done_for" in capsys.readouterr().err


def test_an_unknown_storage_url_is_a_clear_error(tmp_path, capsys):
    config = write(tmp_path, GOOD)
    assert main(["deliveries", "--config", str(config), "--store", "mysql://u:pw@db/x"]) == 1
    err = capsys.readouterr().err
    assert "unknown storage URL 'mysql://...'" in err and "pw" not in err


def test_enqueue_reports_every_line_it_cannot_accept_and_deliver_dry_run_masks_secrets(tmp_path, capsys,
                                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path, GOOD)
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join([
        json.dumps({"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "a"}),
        "{not json",
        json.dumps({"type": "track", "userId": "u2", "messageId": "b"}),  # no event name
        json.dumps({"type": "identify", "userId": "u3"}),                 # messageId filled in
    ]) + "\n", encoding="utf-8")
    assert main(["enqueue", str(events), "--config", str(config)]) == 2
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["line"] for line in lines] == [2, 3]
    assert "not valid JSON" in lines[0]["errors"][0]["message"]
    assert lines[1]["deliveries"] == {"(intake)": "rejected"}
    assert "2 events accepted (2 deliveries queued, 0 skipped), 1 rejected (kept under '(intake)'), 1 unreadable lines" in captured.err

    assert main(["deliver", "--config", str(config), "--until-idle", "--dry-run"]) == 0
    captured = capsys.readouterr()
    sent = [json.loads(line) for line in captured.out.splitlines()]
    assert sum(len(s["messageIds"]) for s in sent) == 2
    assert all(s["url"].endswith("/analytics/bulk/***") for s in sent)
    assert "cli-secret-token" not in captured.out + captured.err
    assert "planhat: 0 delivered, 2 dry-run" in captured.err   # a dry run delivers nothing
    assert main(["deliveries", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["destination", "queued", "retrying", "in_flight", "delivered", "dry_run", "skipped",
                              "rejected", "dead"]
    rows = {line.split()[0]: line.split()[1:] for line in out[1:]}
    assert rows == {"(intake)": ["0", "0", "0", "0", "0", "0", "1", "0"],
                    "planhat": ["0", "0", "0", "0", "2", "0", "0", "0"]}


def test_db_upgrade_is_safe_to_run_twice(tmp_path, capsys):
    config = write(tmp_path, GOOD)
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert main(["db", "status", "--config", str(config)]) == 0
    assert f"is at schema version {migrations('sqlite')[-1][0]}" in capsys.readouterr().out
