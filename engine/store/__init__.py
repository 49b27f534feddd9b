"""Durable storage behind one interface; ``open_store`` picks the backend from a URL.

    sqlite:///var/eventmap.db        (relative: sqlite:///eventmap.db; absolute: sqlite:////var/eventmap.db)
    postgresql://user@host/dbname
"""
from __future__ import annotations

from pathlib import Path

from ..problems import ConfigError, Problem
from .base import (
    DEAD,
    DELIVERED,
    DRY_RUN,
    DUPLICATE,
    FINAL,
    INTAKE,
    NOT_RECORDED,
    PENDING,
    PRUNABLE,
    QUEUED,
    REJECTED,
    REPLAY_ABANDONED,
    REPLAY_DONE,
    REPLAY_RUNNING,
    REPLAY_STATES,
    REPLAY_STOPPED,
    RETRYING,
    SKIPPED,
    STATES,
    Accepted,
    Archived,
    Attempt,
    DeliveryRecord,
    EventQuery,
    EventRecord,
    Finish,
    Leased,
    NewDelivery,
    NewEvent,
    Received,
    Replay,
    ReplayStep,
    SentRequest,
    Store,
)
from .refusals import Refusal
from .violations import NewViolation, ViolationQuery, ViolationRecord
from .wake import INBOX

DEFAULT_URL = "sqlite:///eventmap.db"


def open_store(url: str = DEFAULT_URL, *, base: Path | None = None, upgrade: bool | None = None,
               create: bool = True, **options) -> Store:
    """A store for ``url``. SQLite files are created and upgraded on open (embedded, nothing to run);
    PostgreSQL must be upgraded with ``eventmap db upgrade`` and is checked on open.

    ``create=False`` refuses a SQLite file that does not exist yet, so a command that only reads
    (or delivers) never leaves an empty store behind where the user mistyped a path.
    """
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteStore
        path = Path(url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite://"):])
        if not path.is_absolute() and base is not None:
            path = base / path
        if not create and not path.exists():
            raise ConfigError([Problem("storage", f"no store at {path.absolute()}: nothing has been stored there "
                                       "yet (eventmap enqueue, eventmap serve and eventmap db upgrade create one)")])
        return SQLiteStore(path, upgrade=True if upgrade is None else upgrade, **options)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError([Problem("storage", f"PostgreSQL storage needs the postgres extra: "
                                       f"pip install 'eventmap[postgres]' ({exc})")]) from None
        return PostgresStore(url, upgrade=bool(upgrade), **options)
    raise ConfigError([Problem("storage", f"unknown storage URL {_scheme(url)!r}: expected sqlite:///FILE or "
                               "postgresql://USER@HOST/DB")])


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] + "://..." if "://" in url else url


__all__ = [
    "DEAD",
    "DEFAULT_URL",
    "DELIVERED",
    "DRY_RUN",
    "DUPLICATE",
    "FINAL",
    "INBOX",
    "INTAKE",
    "NOT_RECORDED",
    "PENDING",
    "PRUNABLE",
    "QUEUED",
    "REJECTED",
    "REPLAY_ABANDONED",
    "REPLAY_DONE",
    "REPLAY_RUNNING",
    "REPLAY_STATES",
    "REPLAY_STOPPED",
    "RETRYING",
    "SKIPPED",
    "STATES",
    "Accepted",
    "Archived",
    "Attempt",
    "DeliveryRecord",
    "EventQuery",
    "EventRecord",
    "Finish",
    "Leased",
    "NewDelivery",
    "NewEvent",
    "NewViolation",
    "Received",
    "Refusal",
    "Replay",
    "ReplayStep",
    "SentRequest",
    "Store",
    "ViolationQuery",
    "ViolationRecord",
    "open_store",
]
