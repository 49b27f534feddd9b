"""The shared store: PostgreSQL, for several collectors and workers on several hosts.

Same behaviour as the SQLite store, built on what PostgreSQL does well:
leasing with ``FOR UPDATE SKIP LOCKED`` (workers never wait on each other
and never take the same row), dedupe with ``INSERT ... ON CONFLICT`` (two
collectors accepting one messageId at once: exactly one queues it), pruning
in small transactions so ingestion is never blocked for long. Each process
has its own thread-safe connection pool. The schema is created and migrated
only by ``eventmap db upgrade``; opening checks the version.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from ..jsoncodec import dumps as _dumps  # orjson where it writes what json would; json for the rest
from ..problems import ConfigError, Problem
from ..secrets import Masker
from . import violations as plan_violations
from .base import (
    DEAD,
    PENDING_SQL,
    PRUNABLE_SQL,
    QUEUED,
    RECORD_COLUMNS,
    REPLAY_COLUMNS,
    REPLAY_FINAL_SQL,
    REPLAY_RUNNING,
    RETRYING,
    Accepted,
    Archived,
    ArchivedEvents,
    Attempt,
    DeliveryRecord,
    Finish,
    Ids,
    Leased,
    NewEvent,
    Received,
    Replay,
    Replays,
    ReplayStep,
    Rows,
    Store,
    ViolationRecords,
    archived_filters,
    claims_wanted,
    duplicates,
    event_columns,
    inbox_free,
    queued_in,
    with_duplicates,
)
from .group import GroupCommit
from .migrations import migrations, statements
from .pg_listen import PgListener
from .urls import masked_url, url_secrets
from .violations import ViolationQuery
from .wake import ALL, INBOX, Hear, Notifier, wake_text

# any constant will do: it serialises 'eventmap db upgrade' runs on one database
MIGRATION_LOCK = 0x6576_656E_746D_6170  # "eventmap"
OPTIONS = ("pool_size", "pool_timeout", "connect_timeout")


# A batch's deliveries go in by COPY ... (FORMAT BINARY): 0.9 ms less per 400 rows than one
# INSERT ... SELECT FROM unnest(...) of seven arrays (bench_accept). The ids are drawn beforehand, as
# for events; COPY writes them into the identity column as given. errors is JSON text, which json's
# binary form is.
_COPY_DELIVERIES = ("COPY deliveries(id, event_id, destination, message_id, state, created_at, updated_at, first_at,"
                    " next_at, reason, errors) FROM STDIN (FORMAT BINARY)")
_DELIVERY_TYPES = ["int8", "int8", "text", "text", "text", "float8", "float8", "float8", "float8", "text", "text"]


class PostgresStore(Store):
    def __init__(self, url: str, upgrade: bool = False, pool_size: int = 10, pool_timeout: float = 30.0,
                 connect_timeout: int = 10, **unknown):
        self.url = masked_url(url)
        self._receiving = GroupCommit(self._receive_group)
        self._masker = Masker(url_secrets(url))
        self._wakes = Notifier(self._notify, self._masker)
        if unknown:
            raise ConfigError([Problem(f"storage.{name}", f"not an option of PostgreSQL storage (it takes "
                                       f"{', '.join(OPTIONS)})") for name in unknown])
        if not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigError([Problem("storage.pool_size", f"expected a whole number of connections, at least 1, "
                                       f"not {pool_size!r}")])
        try:
            params: dict[str, Any] = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ConfigError([Problem("storage", f"not a PostgreSQL URL {self.url}: {self._masker.text(str(exc))}")]) \
                from None
        params.setdefault("connect_timeout", connect_timeout)
        params["autocommit"] = True  # transactions are explicit; reads need none
        self._params = params
        self._check(upgrade)
        self._pool = ConnectionPool(kwargs=params, min_size=1, max_size=pool_size, timeout=pool_timeout,
                                    name="eventmap", open=False)
        self._pool.open(wait=False)

    def __repr__(self) -> str:
        return f"<PostgresStore {self.url}>"

    @property
    def location(self) -> str:
        return self.url

    # --- connections and transactions
    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(**self._params)
        except psycopg.Error as exc:
            raise ConfigError([Problem("storage", f"cannot connect to PostgreSQL at {self.url}: "
                                       f"{self._masker.text(str(exc).strip())}")]) from None

    @contextmanager
    def _conn(self):
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:  # the pool's own message names no server; say which one
            raise PoolTimeout(f"no PostgreSQL connection to {self.url} within {self._pool.timeout:g}s "
                              f"(pool_size {self._pool.max_size}): {exc}") from None

    @contextmanager
    def _write(self):
        with self._conn() as conn, conn.transaction():
            yield conn

    def _notify(self, names: set[str]) -> None:
        """The wake-up, from the Notifier's thread, in a transaction of its own: NOTIFY takes a lock for the whole
        database as it commits, which no intake transaction should wait for. Not flushed to disk before it
        returns (``synchronous_commit`` off for this one statement): a wake-up need not survive a crash."""
        with self._conn() as conn:
            conn.execute("SELECT set_config('synchronous_commit', 'off', true), pg_notify(%s, %s)",
                         (self._channel, wake_text(names)))

    def listen(self, hear: Hear) -> PgListener:
        return PgListener(self._params, self._channel, hear, self._masker, self.url)

    def close(self) -> None:
        self._receiving.close()
        self._wakes.close()
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()

    # --- schema
    def _check(self, upgrade: bool) -> None:
        with self._connect() as conn:
            if upgrade:
                self._upgrade(conn)
            else:
                latest, found = migrations("postgres")[-1][0], _version_in(conn)
                self._check_version(found, latest)
            # the id sequences, named once: nextval(pg_get_serial_sequence(...)) looked the name up for every
            # id drawn, which was 1.3 ms of a 100-event batch's accept
            events, deliveries, sent, schema = conn.execute(
                "SELECT pg_get_serial_sequence('events', 'id'), pg_get_serial_sequence('deliveries', 'id'),"
                " pg_get_serial_sequence('sent_requests', 'id'), current_schema()").fetchone() or ("", "", "", "")
            self._sequences: tuple[str, str, str] = (events, deliveries, sent)
            self._channel = wake_channel(schema)

    def _check_version(self, found: int, latest: int) -> None:
        if found < latest:
            raise ConfigError([Problem("storage", f"the PostgreSQL store {self.url} is at schema version {found}, "
                                       f"this eventmap needs {latest}: run 'eventmap db upgrade'")])
        if found > latest:
            raise ConfigError([Problem("storage", f"the PostgreSQL store {self.url} is at schema version {found}, "
                                       f"newer than this eventmap knows ({latest}): upgrade eventmap")])

    def version(self) -> int:
        with self._conn() as conn:
            return _version_in(conn)

    def upgrade(self) -> Ids:
        with self._connect() as conn:
            return self._upgrade(conn)

    @staticmethod
    def _upgrade(conn) -> Ids:
        """Each migration in its own transaction under an advisory lock: two upgrades at once take turns,
        and the second finds nothing left to do."""
        applied = []
        for number, script in migrations("postgres"):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                if number <= _version_in(conn):
                    continue
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version(version) VALUES (%s)", (number,))
                applied.append(number)
        return applied

    # --- intake
    def accept(self, events: list[NewEvent], now: float, dedupe_window: float = 0.0) -> list[Accepted]:
        if not events:
            return []
        with self._write() as conn:
            accepted = self._insert(conn, events, now, dedupe_window)
        self._wake(queued_in(accepted))
        return accepted

    def _insert(self, conn, events: list[NewEvent], now: float, window: float) -> list[Accepted]:
        """Every row of a batch in the open transaction: ids drawn first (one round trip), then the events
        in one multi-row INSERT from arrays (``unnest``) and the deliveries in one binary COPY, so a batch
        costs the same few round trips whatever its size. Arrays go in binary (``%b``): as text, psycopg
        escapes every element in Python."""
        repeated = self._claim(conn, events, now, window)
        plans = [with_duplicates(new, repeated.get(position), window) for position, new in enumerate(events)]
        count = sum(len(plan) for plan in plans)
        event_ids, delivery_ids = conn.execute(
            "SELECT ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s)),"
            " ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s))",
            (self._sequences[0], len(events), self._sequences[1], count)).fetchone()
        ids = iter(delivery_ids)
        columns = [event_columns(new.event) for new in events]
        conn.execute(
            "INSERT INTO events(id, message_id, received_at, body, type, name, user_id, archived, source)"
            " OVERRIDING SYSTEM VALUE SELECT i, m, %s, b::json, t, n, u, a, s FROM unnest(%b::bigint[], %b::text[],"
            " %b::text[], %b::text[], %b::text[], %b::text[], %b::bool[], %b::text[]) AS e(i, m, b, t, n, u, a, s)",
            (now, event_ids, [_text(new.message_id) for new in events], [_dumps(new.event) for new in events],
             *([_text(c[k]) for c in columns] for k in range(3)),
             [new.archive and position not in repeated for position, new in enumerate(events)],
             [_text(new.source) for new in events]))
        if count:
            with conn.cursor().copy(_COPY_DELIVERIES) as copy:
                copy.set_types(_DELIVERY_TYPES)
                for event_id, new, plan in zip(event_ids, events, plans):
                    message_id = _text(new.message_id)
                    for (destination, state, reason), d in zip(plan, new.deliveries):
                        copy.write_row((next(ids), event_id, destination, message_id, state, now, now, now,
                                        now if state == QUEUED else None, _text(reason),
                                        _dumps(d.errors) if d.errors else None))
        accepted, position = [], 0
        for event_id, plan in zip(event_ids, plans):
            accepted.append(Accepted(event_id, [(delivery_ids[position + i], destination, state)
                                                for i, (destination, state, _) in enumerate(plan)]))
            position += len(plan)
        broken = [v for new in events if new.violations for v in new.violations]
        if broken:
            with conn.cursor() as cursor:
                cursor.executemany(plan_violations.upsert("%s", "::json"),
                                   [tuple(_text(v) if isinstance(v, str) else v for v in row)
                                    for row in plan_violations.rows(broken, now, _dumps)])
        return accepted

    # --- the inbox (server.intake: queue)
    def _receive_group(self, jobs: list[list[Received]]) -> list[None]:
        requests = [r for requests in jobs for r in requests]
        with self._conn() as conn:   # one statement: its own transaction
            conn.execute("INSERT INTO inbox(call, body, received_at, ip, source) SELECT * FROM unnest(%b::text[],"
                         " %b::bytea[], %b::float8[], %b::text[], %b::text[])",
                         ([r.call for r in requests], [r.body for r in requests], [r.received_at for r in requests],
                          [_text(r.ip) for r in requests], [r.source for r in requests]))
        self._wake({INBOX})
        return [None] * len(jobs)

    def take_received(self, limit: int, owner: str, now: float, lease_for: float) -> list[Received]:
        with self._conn() as conn:
            if not conn.execute(_INBOX_FREE + " LIMIT 1", (now,)).fetchone():
                return []
            rows = conn.execute(f"UPDATE inbox SET taken_by = %s, taken_until = %s WHERE id IN ({_INBOX_FREE}"
                                f" ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id, call, body, received_at,"
                                f" ip, source", (owner, now + lease_for, now, limit)).fetchall()
        return sorted((Received(r[1], bytes(r[2]), r[3], r[4], r[0], r[5]) for r in rows), key=lambda r: r.id)

    def _remove_received(self, conn, ids: Ids, owner: str) -> int:
        return conn.execute("DELETE FROM inbox WHERE id = ANY(%s) AND taken_by = %s", (list(ids), owner)).rowcount

    def waiting_requests(self) -> int:
        with self._conn() as conn:
            return conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]

    def inbox_size(self) -> tuple[int, int]:
        with self._conn() as conn:   # octet_length of a TOASTed bytea reads its header, not the value
            requests, size = conn.execute("SELECT COUNT(*), SUM(octet_length(body)) FROM inbox").fetchone()
        return requests, int(size or 0)

    @staticmethod
    def _claim(conn, events: list[NewEvent], now: float, window: float) -> dict[int, float]:
        """Claim the batch's messageIds in one statement; returns the duplicates.

        ``ON CONFLICT`` makes the claim atomic across collectors (of two accepting one messageId at once,
        exactly one wins), and claims go in key order, so overlapping batches cannot deadlock."""
        wanted = claims_wanted(events) if window > 0 else {}
        if not wanted:
            return {}
        keys = sorted(wanted)
        won = {row[0] for row in conn.execute(
            "INSERT INTO claims(message_id, at) SELECT m, %s FROM unnest(%s::text[]) AS m ORDER BY m"
            " ON CONFLICT (message_id) DO UPDATE SET at = excluded.at WHERE claims.at < %s RETURNING message_id",
            (now, [_text(k) for k in keys], now - window))}
        lost = [key for key in keys if _text(key) not in won]
        earlier = {}
        if lost:
            found = dict(conn.execute("SELECT message_id, at FROM claims WHERE message_id = ANY(%s)",
                                      ([_text(k) for k in lost],)).fetchall())
            earlier = {key: found[_text(key)] for key in lost}
        return duplicates(wanted, earlier, now)

    # --- workers
    def lease(self, destination: str, limit: int, owner: str, now: float, lease_for: float) -> list[Leased]:
        with self._conn() as conn:  # one statement: its own transaction, one round trip
            rows = conn.execute(
                "UPDATE deliveries d SET lease_owner = %s, lease_until = %s"
                " FROM (SELECT id FROM deliveries WHERE destination = %s AND state IN " + PENDING_SQL +
                " AND next_at <= %s AND (lease_until IS NULL OR lease_until < %s)"
                " ORDER BY next_at, id LIMIT %s FOR UPDATE SKIP LOCKED) due, events e"
                " WHERE d.id = due.id AND e.id = d.event_id"
                " RETURNING d.id, d.message_id, e.body, d.round_attempts, d.first_at, d.progress",
                (owner, now + lease_for, destination, now, now, limit)).fetchall()
        return sorted((Leased(r[0], destination, r[1], r[2], r[3], r[4], r[5]) for r in rows), key=lambda item: item.id)

    def finish(self, results: list[Finish], owner: str, now: float) -> int:
        """One statement (one round trip, its own transaction): verdicts, then attempts of those applied and
        the requests they sent (a batch's once); one more round trip first draws ids for those requests."""
        if not results:
            return 0
        with self._conn() as conn:
            sent_ids, sent = self._sent_rows(conn, [r.attempt for r in results])
            columns = list(zip(*[(
                r.id, r.state, r.next_at, int(r.attempt is not None), _text(r.reason),
                _dumps(r.errors) if r.errors else None, r.attempt.status if r.attempt else None,
                _text(r.attempt.error) if r.attempt else None, _dumps(r.request) if r.request else None,
                r.attempt.at if r.attempt else None, r.attempt.duration if r.attempt else None,
                r.attempt.step if r.attempt else None,
                sent_ids.get(id(r.attempt.sent)) if r.attempt and r.attempt.sent else None) for r in results]))
            return conn.execute(
                "WITH input AS (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::int[], %s::text[],"
                " %s::text[], %s::int[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::text[], %s::bigint[])"
                " AS i(id, state, next_at, tried, reason, errors, status, error, request, at, duration, step, sent_id)),"
                " done AS (UPDATE deliveries d SET state = i.state, next_at = i.next_at, lease_owner = NULL,"
                " lease_until = NULL, attempts = d.attempts + i.tried, round_attempts = d.round_attempts + i.tried,"
                " updated_at = %s, reason = COALESCE(i.reason, d.reason), errors = COALESCE(i.errors::json, d.errors),"
                " last_status = COALESCE(i.status, d.last_status), last_error = i.error,"
                " request = COALESCE(i.request::json, d.request)"
                " FROM input i WHERE d.id = i.id AND d.lease_owner = %s RETURNING d.id, d.destination),"
                " logged AS (INSERT INTO attempts(delivery_id, at, status, error, duration, step, destination, sent_id)"
                " SELECT i.id, i.at, i.status, i.error, i.duration, i.step, done.destination, i.sent_id"
                " FROM input i JOIN done ON done.id = i.id WHERE i.tried = 1),"
                " kept AS (INSERT INTO sent_requests(id, destination, at, events, request) OVERRIDING SYSTEM VALUE"
                " SELECT s.id, s.destination, s.at, s.events, s.request::json FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::int[], %s::text[])"
                " AS s(id, destination, at, events, request)"
                " WHERE s.id IN (SELECT i.sent_id FROM input i JOIN done ON done.id = i.id WHERE i.tried = 1))"
                " SELECT COUNT(*) FROM done", (*[list(c) for c in columns], now, owner, *sent)).fetchone()[0]

    def _sent_rows(self, conn, attempts: list[Attempt | None]) -> tuple[dict[int, int], list[list]]:
        """Ids for the distinct requests these attempts sent ({id(SentRequest): id}) and their columns for
        unnest; a request is written only if one of its attempts is (a verdict whose lease was lost is not)."""
        distinct = {id(a.sent): a for a in attempts if a is not None and a.sent is not None}
        if not distinct:
            return {}, [[], [], [], [], []]
        ids = conn.execute("SELECT ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s))",
                           (self._sequences[2], len(distinct))).fetchone()[0]
        by_object = dict(zip(distinct, ids))
        rows = [(by_object[key], a.sent.destination, a.at, a.sent.events, a.sent.text or _dumps(a.sent.request))
                for key, a in distinct.items() if a.sent is not None]
        return by_object, [list(column) for column in zip(*rows)]

    def step_done(self, delivery_id: int, owner: str, progress: dict, attempt: Attempt, now: float,
                  lease_until: float | None = None) -> bool:
        with self._conn() as conn:  # one statement: the step's answers and its attempt together
            sent_ids, sent = self._sent_rows(conn, [attempt])
            sent_id = sent_ids.get(id(attempt.sent)) if attempt.sent is not None else None
            return bool(conn.execute(
                "WITH done AS (UPDATE deliveries SET progress = %s::json, attempts = attempts + 1, last_status = %s,"
                " last_error = NULL, updated_at = %s, lease_until = COALESCE(%s::float8, lease_until)"
                " WHERE id = %s AND lease_owner = %s RETURNING id, destination),"
                " kept AS (INSERT INTO sent_requests(id, destination, at, events, request) OVERRIDING SYSTEM VALUE"
                " SELECT s.id, s.destination, s.at, s.events, s.request::json FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::int[], %s::text[])"
                " AS s(id, destination, at, events, request) WHERE EXISTS (SELECT 1 FROM done))"
                " INSERT INTO attempts(delivery_id, at, status, error, duration, step, destination, sent_id)"
                " SELECT id, %s, %s, %s, %s, %s, destination, %s FROM done RETURNING delivery_id",
                (_dumps(progress), attempt.status, now, lease_until, delivery_id, owner, *sent, attempt.at,
                 attempt.status, _text(attempt.error), attempt.duration, attempt.step, sent_id)).fetchone())

    def release(self, owner: str, ids: Ids | None = None) -> int:
        if ids is not None and not ids:
            return 0
        where, params = "lease_owner = %s", list[object]([owner])
        if ids is not None:
            where += " AND id = ANY(%s)"
            params.append(list(ids))
        with self._conn() as conn:
            if ids is None:
                conn.execute("UPDATE inbox SET taken_by = NULL, taken_until = NULL WHERE taken_by = %s", (owner,))
            released = conn.execute(f"UPDATE deliveries SET lease_owner = NULL, lease_until = NULL WHERE {where}",
                                    params).rowcount
        if ids is None:   # a clean stop: another process may take the rest now
            self._wake({ALL})
        return released

    def next_due(self, destinations: list[str], now: float) -> float | None:
        if not destinations:
            return None
        with self._conn() as conn:
            return conn.execute(
                "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until >= %s THEN GREATEST(next_at, lease_until)"
                " ELSE next_at END) FROM deliveries WHERE state IN " + PENDING_SQL + " AND destination = ANY(%s)",
                (now, list(destinations))).fetchone()[0]

    # --- inspection
    _mark = "%s"
    _bucket = "floor(at / %s)::bigint"

    def _rows(self, sql: str, params=()) -> Rows:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchall()

    @staticmethod
    def _text(value: str | None) -> str | None:
        return _text(value)

    def counts(self, now: float) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        with self._conn() as conn:
            for destination, state, n in conn.execute(
                    "SELECT destination, state, COUNT(*) FROM deliveries GROUP BY destination, state"):
                result.setdefault(destination, {})[state] = n
            for destination, n in conn.execute(
                    "SELECT destination, COUNT(*) FROM deliveries WHERE state IN " + PENDING_SQL +
                    " AND lease_until >= %s GROUP BY destination", (now,)):
                result.setdefault(destination, {})["in_flight"] = n
        return result

    def list(self, destination=None, state=None, limit=50, after_id=0) -> list[DeliveryRecord]:
        where, params = ["id > %s"], [after_id]
        if destination:
            where.append("destination = %s")
            params.append(destination)
        if state:
            where.append("state = %s")
            params.append(state)
        with self._conn() as conn:
            rows = conn.execute(f"SELECT {RECORD_COLUMNS} FROM deliveries WHERE {' AND '.join(where)}"
                                f" ORDER BY id LIMIT %s", (*params, limit)).fetchall()
        return [DeliveryRecord(*row) for row in rows]

    def get(self, delivery_id: int) -> DeliveryRecord | None:
        with self._conn() as conn:
            row = conn.execute(f"SELECT {RECORD_COLUMNS}, request, progress FROM deliveries WHERE id = %s",
                               (delivery_id,)).fetchone()
            if row is None:
                return None
            record = DeliveryRecord(*row[:-2])
            record.request, record.progress = row[-2], row[-1]
            record.event = conn.execute("SELECT body FROM events WHERE id = %s", (record.event_id,)).fetchone()[0]
            record.history = [Attempt(*a) for a in conn.execute(
                "SELECT at, status, error, duration, step, sent_id FROM attempts WHERE delivery_id = %s ORDER BY id",
                (delivery_id,))]
        latest = next((a.sent_id for a in reversed(record.history) if a.sent_id is not None), None)
        record.sent = self.sent_request(latest) if latest is not None else None
        return record

    def violations(self, query: ViolationQuery) -> ViolationRecords:
        with self._conn() as conn:
            sql, params = plan_violations.summary(query, "%s")
            summaries = conn.execute(sql, params).fetchall()
            if not summaries:
                return []
            sql, params = plan_violations.examples([(row[0], row[-1]) for row in summaries], "%s")
            found = {row[0]: row[1:] for row in conn.execute(sql, params)}
        return plan_violations.records(summaries, found, lambda example: example)

    def violation_counts(self) -> dict[tuple[str, str, str], int]:
        with self._conn() as conn:
            return {(source, event, rule): int(n) for source, event, rule, n in conn.execute(plan_violations.COUNTS)}

    def requeue(self, now, ids=None, destination=None, state=DEAD) -> int:
        where, params = ["state = %s"], [state]
        if ids is not None:
            if not ids:
                return 0
            where.append("id = ANY(%s)")
            params.append(list(ids))
        if destination:
            where.append("destination = %s")
            params.append(destination)
        with self._conn() as conn:
            count = conn.execute(
                f"UPDATE deliveries SET state = %s, next_at = %s, first_at = %s, round_attempts = 0, updated_at = %s,"
                f" lease_owner = NULL, lease_until = NULL, reason = NULL, errors = NULL WHERE {' AND '.join(where)}",
                (QUEUED, now, now, now, *params)).rowcount
        if count:
            self._wake({destination or ALL})
        return count

    def hurry(self, destination: str, now: float) -> int:
        with self._conn() as conn:
            return conn.execute(
                "UPDATE deliveries SET next_at = %s WHERE destination = %s AND state = %s AND next_at > %s"
                " AND (lease_until IS NULL OR lease_until < %s)", (now, destination, RETRYING, now, now)).rowcount

    def prune(self, before: float, batch: int = 1000, archive_before: float | None = None) -> int:
        """Each batch is its own short transaction; rows another transaction holds are left for next time."""
        archive_before = before if archive_before is None else archive_before
        deleted = 0
        while True:
            with self._write() as conn:
                rows = conn.execute(
                    "SELECT id, event_id FROM deliveries WHERE state IN " + PRUNABLE_SQL + " AND updated_at < %s"
                    " LIMIT %s FOR UPDATE SKIP LOCKED", (before, batch)).fetchall()
                ids, event_ids = [r[0] for r in rows], sorted({r[1] for r in rows})
                if ids:
                    sent = [r[0] for r in conn.execute("SELECT DISTINCT sent_id FROM attempts WHERE delivery_id ="
                                                       " ANY(%s) AND sent_id IS NOT NULL", (ids,))]
                    conn.execute("DELETE FROM attempts WHERE delivery_id = ANY(%s)", (ids,))
                    if sent:   # a batch's request goes with the last of its deliveries' attempts
                        conn.execute("DELETE FROM sent_requests s WHERE s.id = ANY(%s) AND NOT EXISTS"
                                     " (SELECT 1 FROM attempts a WHERE a.sent_id = s.id)", (sent,))
                    conn.execute("DELETE FROM deliveries WHERE id = ANY(%s)", (ids,))
                    conn.execute("DELETE FROM events e WHERE e.id = ANY(%s) AND e.received_at < %s AND NOT EXISTS"
                                 " (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)", (event_ids, archive_before))
                seen = conn.execute(
                    "DELETE FROM claims WHERE message_id IN (SELECT message_id FROM claims"
                    " WHERE at < %s LIMIT %s FOR UPDATE SKIP LOCKED)", (before, batch)).rowcount
            deleted += len(ids)
            if len(ids) < batch and seen < batch:
                break
        while True:  # events without deliveries (every route disabled, or theirs pruned while the archive kept them)
            with self._write() as conn:
                gone = conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.received_at < %s AND NOT"
                    " EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT %s FOR UPDATE SKIP LOCKED)",
                    (archive_before, batch)).rowcount
            if gone < batch:
                break
        with self._write() as conn:   # one row per violation (or refusal) kind and hour: few, in one statement each
            conn.execute("DELETE FROM violations WHERE last_at < %s", (before,))
            conn.execute("DELETE FROM refusals WHERE last_at < %s", (before,))
        return deleted

    # --- the archive and replays
    def archive_bounds(self, since: float, until: float) -> tuple[int, int] | None:
        with self._conn() as conn:
            # OFFSET 0 keeps the subquery whole: else the planner reads MIN(id) off the primary key from the
            # table's first row on, filtering every event older than the range (all but a day of a month's)
            row = conn.execute("SELECT MIN(id), MAX(id) FROM (SELECT id FROM events WHERE received_at >= %s"
                               " AND received_at < %s AND archived OFFSET 0) AS in_range", (since, until)).fetchone()
        return None if row is None or row[0] is None else (row[0], row[1])

    def archived(self, after_id, last_id, since, until, source, limit) -> ArchivedEvents:
        where, params = archived_filters(after_id, last_id, since, until, source, "%s")
        with self._conn() as conn:
            rows = conn.execute(f"SELECT id, received_at, message_id, source, body FROM events WHERE {where}"
                                f" ORDER BY id LIMIT %s", (*params, limit)).fetchall()
        return [Archived(*row) for row in rows]

    def start_replay(self, replay: Replay, now: float) -> Replay:
        with self._conn() as conn:
            row = conn.execute(
                f"INSERT INTO replays(state, since, until, source, destinations, condition, first_id, last_id,"
                f" after_id, events, matched, counts, owner, created_at, updated_at)"
                f" VALUES (%s, %s, %s, %s, %s::json, %s, %s, %s, %s, %s, %s, %s::json, %s, %s, %s)"
                f" RETURNING {REPLAY_COLUMNS}",
                (REPLAY_RUNNING, replay.since, replay.until, _text(replay.source),
                 _dumps(replay.destinations) if replay.destinations is not None else None, _text(replay.where),
                 replay.first_id, replay.last_id, replay.after_id, replay.events, replay.matched,
                 _dumps(replay.counts), replay.owner, now, now)).fetchone()
        return Replay(*row)

    def replay_step(self, replay_id: int, owner: str, after_id: int, step: ReplayStep, now: float) -> bool:
        with self._write() as conn:
            moved = conn.execute("UPDATE replays SET after_id = %s, events = %s, matched = %s, counts = %s::json,"
                                 " updated_at = %s WHERE id = %s AND owner = %s AND after_id = %s AND state = %s",
                                 (step.after_id, step.events, step.matched, _dumps(step.counts), now, replay_id, owner,
                                  after_id, REPLAY_RUNNING)).rowcount
            if moved and step.deliveries:
                copied = {archived: conn.execute(
                    "INSERT INTO events(message_id, received_at, body, type, name, user_id, archived, source)"
                    " SELECT message_id, received_at, %s::json, %s, %s, %s, false, source FROM events WHERE id = %s"
                    " RETURNING id", (_dumps(event), *(_text(c) for c in event_columns(event)), archived)).fetchone()[0]
                    for archived, event in step.copies.items()}
                columns = list(zip(*[(copied.get(event_id, event_id), d.destination, _text(message_id), d.state,
                                      now if d.state == QUEUED else None, _text(d.reason),
                                      _dumps(d.errors) if d.errors else None)
                                     for event_id, message_id, d in step.deliveries]))
                conn.execute(
                    "INSERT INTO deliveries(event_id, destination, message_id, state, created_at, updated_at, first_at,"
                    " next_at, reason, errors) SELECT e, d, m, s, %s, %s, %s, n, r, x::json FROM unnest(%b::bigint[],"
                    " %b::text[], %b::text[], %b::text[], %b::float8[], %b::text[], %b::text[]) AS i(e, d, m, s, n, r, x)",
                    (now, now, now, *[list(c) for c in columns]))
        if moved:   # the deliveries it queued wake their workers, as accept's do
            self._wake({d.destination for _, _, d in step.deliveries if d.state == QUEUED})
        return bool(moved)

    def take_replay(self, replay_id: int, owner: str, now: float) -> Replay | None:
        with self._conn() as conn:
            row = conn.execute(f"UPDATE replays SET owner = %s, state = %s, updated_at = %s WHERE id = %s"
                               f" AND state NOT IN {REPLAY_FINAL_SQL} RETURNING {REPLAY_COLUMNS}",
                               (owner, REPLAY_RUNNING, now, replay_id)).fetchone()
        return None if row is None else Replay(*row)

    def end_replay(self, replay_id: int, owner: str | None, state: str, now: float) -> bool:
        with self._conn() as conn:
            return bool(conn.execute(f"UPDATE replays SET state = %s, updated_at = %s WHERE id = %s"
                                     f" AND (owner = %s OR %s) AND state NOT IN {REPLAY_FINAL_SQL}",
                                     (state, now, replay_id, owner, owner is None)).rowcount)

    def replays(self, limit: int = 50, replay_id: int | None = None) -> Replays:
        where, params = ("id = %s", [replay_id]) if replay_id is not None else ("true", [])
        with self._conn() as conn:
            rows = conn.execute(f"SELECT {REPLAY_COLUMNS} FROM replays WHERE {where} ORDER BY id DESC LIMIT %s",
                                (*params, limit)).fetchall()
        return [Replay(*row) for row in rows]


_INBOX_FREE = inbox_free("%s")


def wake_channel(schema: str | None) -> str:
    """The NOTIFY channel of the eventmap tables in ``schema``: two installs sharing a database in schemas of
    their own do not wake each other. At most 63 bytes, PostgreSQL's longest identifier."""
    name = "eventmap" if schema in (None, "public") else f"eventmap.{schema}"
    return name.encode()[:63].decode("utf-8", "ignore")


def _version_in(conn) -> int:
    if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return row[0] if row else 0



def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; a vendor's binary error page must not make a verdict unrecordable."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value

