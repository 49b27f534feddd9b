"""docs/destinations/NAME.md is generated from each destination's YAML file, and kept current.

As tests/test_registry.py does for the language reference: a page that disagrees with its YAML file
fails here, with the command that regenerates it.
"""
from __future__ import annotations

import re
from pathlib import Path

from engine import destination_docs
from engine.destination_docs import cited, comment_of

ROOT = Path(__file__).resolve().parents[1]
SLUGS = sorted(path.stem for path in (ROOT / "mappings" / "destinations").glob("*.yaml"))


def test_every_destination_has_a_current_page():
    wanted = destination_docs.pages()
    assert sorted(path.stem for path in wanted) == SLUGS
    assert destination_docs.stale(wanted) == [], f"run: {destination_docs.COMMAND}"


def test_the_command_checks_rewrites_and_removes(tmp_path, monkeypatch):
    assert destination_docs.main([]) == 0
    monkeypatch.setattr(destination_docs, "DOCS", tmp_path)
    (tmp_path / "gone.md").write_text("a destination that no longer exists\n", encoding="utf-8")
    assert destination_docs.main([]) == 1
    assert destination_docs.main(["--write-docs"]) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.md")) == SLUGS
    (tmp_path / "slack.md").write_text("edited by hand\n", encoding="utf-8")
    assert destination_docs.main([]) == 1
    assert destination_docs.main(["--write-docs"]) == 0
    assert destination_docs.main([]) == 0


def test_a_page_names_settings_calls_fields_limits_and_sources():
    text = destination_docs.pages()[destination_docs.DOCS / "mixpanel.md"]
    assert "| `api_secret` | string |  | yes |" in text            # secret, not required
    assert "| `region` | `api` \\| `api-eu` \\| `api-in` |  |  | `api` |" in text
    assert "| group | [group](#group) | every group |" in text
    assert "| `properties.$insert_id` | `path event.messageId \\| uuid5` |" in text
    assert "- batches of at most 2,000 events and 10,000,000 bytes, as one request:" in text
    assert "- https://developer.mixpanel.com/reference/import-events" in text
    assert "#### step identify_event" in text and "Runs when `settings.id_merge == 'original'" in text
    ga4 = destination_docs.pages()[destination_docs.DOCS / "google-analytics-4.md"]
    assert "| track | [purchase](#purchase) | events 'Order Completed' |" in ga4
    assert "- no batching: one request per event" in ga4


def test_sources_are_the_urls_in_comments_only():
    text = "\n".join([
        "# Source: https://example.com/a, and https://example.com/b.",
        'url: "https://api.example.com/v1"   # the API: https://example.com/c',
        'channel: "#general https://example.com/not-a-comment"',
        "# a template is no source: https://{region}.example.com, nor an example: https://x.example/T.../",
        "# again https://example.com/a",
    ])
    assert cited(text) == ["https://example.com/a", "https://example.com/b", "https://example.com/c"]
    assert comment_of('a: "#not" # yes') == " yes"
    assert comment_of("a: b#c") == ""


def test_the_readme_table_links_every_destination_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\(docs/destinations/([a-z0-9-]+)\.md\)", readme))
    assert linked == set(SLUGS)
