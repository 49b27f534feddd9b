"""Where the shipped schemas and mappings are: the repository's top-level folders in a
checkout or editable install, or their copies inside the package after a regular install."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    in_checkout = _PACKAGE.parent / name
    return in_checkout if in_checkout.is_dir() else _PACKAGE / "shipped" / name


SCHEMA_DIR = _shipped("schemas")
MAPPINGS_DIR = _shipped("mappings")
