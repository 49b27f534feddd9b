"""Shared test helpers: small mapping folders written into a test's tmp_path."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

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


def typed(value):
    """A value with its types spelt out: 1, 1.0 and true are three different answers (translation tests)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


@pytest.fixture(scope="session")
def engine():
    """The shipped mappings, loaded once for every test that renders them."""
    from engine import Engine
    return Engine()



# --------------------------------------------------------------------------- stores: SQLite and PostgreSQL
# The shared store suite runs every test on both backends. PostgreSQL comes from
# EVENTMAP_TEST_POSTGRES (default: the local server, trust auth); each test session
# makes a database of its own and drops it at the end, each test a schema of its own.
# Without a server the PostgreSQL tests skip and say why, unless EVENTMAP_REQUIRE_POSTGRES=1
# (set by .ci/run), where they fail.

import os  # noqa: E402
import uuid  # noqa: E402
from urllib.parse import quote, urlsplit, urlunsplit  # noqa: E402

POSTGRES_SERVER = os.environ.get("EVENTMAP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_unavailable(reason: str):
    if os.environ.get("EVENTMAP_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here (EVENTMAP_REQUIRE_POSTGRES=1) but {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {reason}. Start one and set EVENTMAP_TEST_POSTGRES (see the README)")


def url_with(url: str, database: str | None = None, search_path: str | None = None) -> str:
    """``url`` pointing at another database, and/or with every table looked up in one schema."""
    parts = urlsplit(url)
    path = f"/{database}" if database else parts.path
    query = parts.query
    if search_path:
        query = "&".join(q for q in (query, f"options={quote(f'-csearch_path={search_path}', safe='')}") if q)
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_database():
    """The URL of a database made for this test session (dropped when it ends)."""
    try:
        import psycopg
    except ImportError as exc:
        postgres_unavailable(f"psycopg is not installed ({exc}): pip install '.[test]'")
    from engine.store.postgres import masked_url
    try:
        admin = psycopg.connect(POSTGRES_SERVER, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        postgres_unavailable(f"cannot connect to {masked_url(POSTGRES_SERVER)}: {str(exc).strip()}")
    name = f"eventmap_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_with(POSTGRES_SERVER, database=name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def postgres_url(postgres_database):
    """A URL whose tables live in a fresh schema of the session's database, for one test."""
    import psycopg
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield url_with(postgres_database, search_path=schema)
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class Backend:
    """One store backend under test: its URL, and a way to open it and to poke at it with plain SQL."""

    def __init__(self, name: str, url: str):
        self.name, self.url = name, url

    def open(self, upgrade: bool = True, **options):
        from engine.store import open_store
        return open_store(self.url, upgrade=upgrade, **options)

    def execute(self, sql: str) -> None:
        if self.name == "sqlite":
            import sqlite3
            with sqlite3.connect(self.url[len("sqlite:///"):]) as conn:
                conn.execute(sql)
        else:
            import psycopg
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(sql)

    def __repr__(self) -> str:
        return self.name


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path}/outbox.db")
    return Backend("postgres", request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(backend):
    """An upgraded, empty store of each backend."""
    opened = backend.open()
    yield opened
    opened.close()
