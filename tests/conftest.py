"""Shared test helpers: small mapping folders written into a test's tmp_path."""
from __future__ import annotations

import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_mappings(tmp_path: Path, files: dict[str, str]) -> Path:
    """Write ``{"name.yaml": text}`` into ``tmp_path/mappings/destinations/`` and return the mappings dir.

    Text is dedented, so tests can indent YAML with the code around it.
    """
    root = Path(tmp_path) / "mappings"
    folder = root / "destinations"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root

