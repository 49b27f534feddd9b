"""One shape for everything that can go wrong with user input.

A Problem names where (file, line, JSON path) and what was expected, so the
CLI can print ``file:line: path: message`` and the library can hand the same
facts to callers as data, never as a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    file: str | None = None
    line: int | None = None
    severity: str = "error"  # "error" rejects; "warning" only informs

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        path = f"{self.path}: " if self.path else ""
        return f"{where}{path}{self.message}"

    def as_dict(self) -> dict:
        return {"path": self.path, "message": self.message}


def bare_yaml_key(key) -> str | None:
    """Why a mapping key YAML read as a boolean or null is wrong (None for an ordinary key): YAML 1.1 reads a
    bare no, yes, on, off, y, n or ~ so, and a vendor field or setting of that name silently became another."""
    if not (isinstance(key, bool) or key is None):
        return None
    spelled = "null" if key is None else str(key).lower()
    return (f"a key YAML reads as {spelled} (a bare no, yes, on, off, y, n or ~): quote it to mean that name, "
            "e.g. \"no\": ...")


class EventmapError(Exception):
    """Base of every error eventmap raises on purpose."""


class ConfigError(EventmapError):
    """Mapping files, schemas or settings are wrong; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
