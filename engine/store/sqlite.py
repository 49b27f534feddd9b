"""The embedded store: one SQLite file in WAL mode, nothing to start.

Several threads and processes may share the file (a server, workers): each
thread has its own connection, writers take their turn on a lock file beside
the store (``_turn``), then SQLite's lock up front with ``BEGIN IMMEDIATE``,
waiting for it (``busy_timeout``) instead of failing.
``synchronous=FULL`` by default: an acknowledged event survives a killed
process and a power cut; ``NORMAL`` survives a killed process only, faster.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .. import jsoncodec
from ..jsoncodec import dumps as _dump  # orjson where it writes what json would; json for the rest
from ..problems import ConfigError, Problem
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
    record_of,
    with_duplicates,
    yield_lock,
)
from .fifo import FifoListener, ring, wake_folder
from .group import GroupCommit
from .migrations import migrations, statements
from .violations import ViolationQuery
from .wake import ALL, INBOX, Hear, Notifier


class SQLiteStore(Store):
    def __init__(self, path: str | os.PathLike, synchronous: str = "FULL", upgrade: bool = True, **unknown):
        self.path = Path(path)
        if unknown:  # e.g. pool_size left over from a PostgreSQL configuration
            raise ConfigError([Problem(f"storage.{name}", "not an option of SQLite storage (it takes synchronous)")
                               for name in unknown])
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError([Problem("storage", f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")])
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._turns: list[int] = []   # each connection's descriptor of the writers' lock file (_turn)
        self._lock = threading.Lock()
        self._accepting = GroupCommit(self._accept_group, turn=self._turn)
        self._receiving = GroupCommit(self._receive_group, turn=self._turn)
        self._wakes = Notifier(lambda names: ring(wake_folder(self.path), names))
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if upgrade:
            self.upgrade()
        else:
            self.check_version()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    @property
    def location(self) -> str:
        return str(self.path.absolute())

    # --- connections and transactions
    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT)
                _use_wal(conn)
            except sqlite3.Error as exc:
                raise ConfigError([Problem("storage", f"cannot open the SQLite store {self.path}: {exc}")]) from None
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            self._local.turn = os.open(f"{self.path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
            with self._lock:
                self._all.append(conn)
                self._turns.append(self._local.turn)
        return conn

    @contextmanager
    def _turn(self):
        """This thread's turn among the writers of every process: a lock file (``flock``) taken before
        SQLite's write lock. The kernel wakes the next writer the moment the last one is done, where
        SQLite's busy handler sleeps 1, 2, 5 ms... between tries, which capped two server processes
        below one. Held once per thread however deeply nested (a group commit's leader holds it
        across the transaction it writes)."""
        self._connection()
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            fcntl.flock(self._local.turn, fcntl.LOCK_EX)
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                fcntl.flock(self._local.turn, fcntl.LOCK_UN)

    @contextmanager
    def _write(self):
        conn = self._connection()
        with self._turn():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def listen(self, hear: Hear) -> FifoListener:
        return FifoListener(wake_folder(self.path), hear)

    def close(self) -> None:
        self._receiving.close()
        self._wakes.close()
        with self._lock:
            for conn in self._all:
                conn.close()
            for turn in self._turns:
                os.close(turn)
            self._all.clear()
            self._turns.clear()
        self._local = threading.local()

    # --- schema
    def version(self) -> int:
        conn = self._connection()
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='schema_version'").fetchone():
            return 0
        return conn.execute("SELECT version FROM schema_version").fetchone()[0]

    def upgrade(self) -> Ids:
        """Apply the migrations this file lacks, each in its own transaction; safe to run twice."""
        applied = []
        for number, script in migrations("sqlite"):
            with self._write() as conn:
                current = self._version_in(conn)
                if number <= current:
                    continue
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version(version) VALUES (?)", (number,))
                applied.append(number)
        return applied

    def check_version(self) -> None:
        latest = migrations("sqlite")[-1][0]
        found = self.version()
        if found < latest:
            raise ConfigError([Problem("storage", f"the store {self.path} is at schema version {found}, this eventmap "
                                       f"needs {latest}: run 'eventmap db upgrade'")])
        if found > latest:
            raise ConfigError([Problem("storage", f"the store {self.path} is at schema version {found}, newer than "
                                       f"this eventmap knows ({latest}): upgrade eventmap")])

    @staticmethod
    def _version_in(conn) -> int:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='schema_version'").fetchone():
            return 0
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0

    # --- intake
    def accept(self, events: list[NewEvent], now: float, dedupe_window: float = 0.0) -> list[Accepted]:
        """Written with what other threads of this process accept at the same moment: one commit for all
        (``group.GroupCommit``); returns once this batch is durable."""
        if not events:
            return []
        return self._accepting.run((events, now, dedupe_window))

    def _accept_group(self, jobs: list[tuple[list[NewEvent], float, float]]) -> list[list[Accepted]]:
        with self._write() as conn:
            accepted = [self._insert(conn, events, now, window) for events, now, window in jobs]
        self._wake(queued_in([one for job in accepted for one in job]))
        return accepted

    def _insert(self, conn, events: list[NewEvent], now: float, window: float) -> list[Accepted]:
        """Every row of a batch with two multi-row inserts (events, then deliveries) in the open transaction.

        Ids come back without RETURNING: under the write lock nobody else inserts, and SQLite gives each
        new row the next id after the largest, so a batch's rows have consecutive ids."""
        repeated = self._claim(conn, events, now, window)
        conn.executemany("INSERT INTO events(message_id, received_at, body, type, name, user_id, archived, source)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         [(new.message_id, now, _dump(new.event), *event_columns(new.event),
                           new.archive and position not in repeated, new.source)
                          for position, new in enumerate(events)])
        event_id = _last_id(conn) - len(events) + 1
        rows, planned = [], []
        for position, new in enumerate(events):
            plan = with_duplicates(new, repeated.get(position), window)
            errors = [_dump(d.errors) if d.errors else None for d in new.deliveries]
            rows += [(event_id + position, destination, new.message_id, state, now, now, now,
                      now if state == QUEUED else None, reason, error)
                     for (destination, state, reason), error in zip(plan, errors)]
            planned.append(plan)
        delivery_id = 0
        if rows:
            conn.executemany("INSERT INTO deliveries(event_id, destination, message_id, state, created_at,"
                             " updated_at, first_at, next_at, reason, errors) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             rows)
            delivery_id = _last_id(conn) - len(rows) + 1
        accepted = []
        for position, plan in enumerate(planned):
            accepted.append(Accepted(event_id + position, [(delivery_id + i, destination, state)
                                                           for i, (destination, state, _) in enumerate(plan)]))
            delivery_id += len(plan)
        broken = [v for new in events if new.violations for v in new.violations]
        if broken:
            conn.executemany(plan_violations.upsert("?"), plan_violations.rows(broken, now, _dump))
        return accepted

    # --- the inbox (server.intake: queue)
    def _receive_group(self, jobs: list[list[Received]]) -> list[None]:
        with self._write() as conn:
            conn.executemany("INSERT INTO inbox(call, body, received_at, ip, source) VALUES (?, ?, ?, ?, ?)",
                             [(r.call, r.body, r.received_at, r.ip, r.source) for requests in jobs for r in requests])
        self._wake({INBOX})
        return [None] * len(jobs)

    def take_received(self, limit: int, owner: str, now: float, lease_for: float) -> list[Received]:
        conn = self._connection()
        if not conn.execute(_INBOX_FREE + " LIMIT 1", (now,)).fetchone():
            return []   # nothing waiting: no write lock taken (processors poll often)
        with self._write() as conn:
            rows = conn.execute(f"UPDATE inbox SET taken_by = ?, taken_until = ? WHERE id IN ({_INBOX_FREE}"
                                f" ORDER BY id LIMIT ?) RETURNING id, call, body, received_at, ip, source",
                                (owner, now + lease_for, now, limit)).fetchall()
        return sorted((Received(r[1], r[2], r[3], r[4], r[0], r[5]) for r in rows), key=lambda r: r.id)

    def _remove_received(self, conn, ids: Ids, owner: str) -> int:
        return conn.execute(f"DELETE FROM inbox WHERE id IN ({','.join('?' * len(ids))}) AND taken_by = ?",
                            (*ids, owner)).rowcount

    def waiting_requests(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM inbox").fetchone()[0]

    def inbox_size(self) -> tuple[int, int]:
        # length() of a BLOB reads its size from the row, not the overflow pages that hold the body
        requests, size = self._connection().execute("SELECT COUNT(*), SUM(length(body)) FROM inbox").fetchone()
        return requests, size or 0

    @staticmethod
    def _claim(conn, events: list[NewEvent], now: float, window: float) -> dict[int, float]:
        """Claim the batch's messageIds (one read, one write under the write lock); returns the duplicates."""
        wanted = claims_wanted(events) if window > 0 else {}
        if not wanted:
            return {}
        keys, earlier = list(wanted), {}
        for start in range(0, len(keys), _MARKS):
            part = keys[start:start + _MARKS]
            earlier.update(conn.execute(f"SELECT message_id, at FROM claims WHERE message_id IN"
                                        f" ({','.join('?' * len(part))}) AND at >= ?", (*part, now - window)))
        conn.executemany("INSERT INTO claims(message_id, at) VALUES (?, ?)"
                         " ON CONFLICT(message_id) DO UPDATE SET at = excluded.at",
                         [(message_id, now) for message_id in keys if message_id not in earlier])
        return duplicates(wanted, earlier, now)

    # --- workers
    def lease(self, destination: str, limit: int, owner: str, now: float, lease_for: float) -> list[Leased]:
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id IN ("
                " SELECT id FROM deliveries WHERE destination = ? AND state IN " + PENDING_SQL + " AND next_at <= ?"
                " AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_at, id LIMIT ?)"
                " RETURNING id, event_id, message_id, round_attempts, first_at, progress",
                (owner, now + lease_for, destination, now, now, limit)).fetchall()
            if not rows:
                return []
            bodies = dict(conn.execute(
                f"SELECT id, body FROM events WHERE id IN ({','.join('?' * len(rows))})",
                [r[1] for r in rows]).fetchall())
        leased = [Leased(r[0], destination, r[2], jsoncodec.loads(bodies[r[1]]), r[3], r[4],
                         jsoncodec.loads(r[5]) if r[5] else None) for r in rows]
        return sorted(leased, key=lambda item: item.id)

    def finish(self, results: list[Finish], owner: str, now: float) -> int:
        applied, tried = 0, []
        with self._write() as conn:
            for r in results:
                a = r.attempt
                cursor = conn.execute(
                    "UPDATE deliveries SET state = ?, next_at = ?, lease_owner = NULL, lease_until = NULL,"
                    " attempts = attempts + ?, round_attempts = round_attempts + ?, updated_at = ?,"
                    " reason = COALESCE(?, reason), errors = COALESCE(?, errors),"
                    " last_status = COALESCE(?, last_status), last_error = ?, request = COALESCE(?, request)"
                    " WHERE id = ? AND lease_owner = ?",
                    (r.state, r.next_at, int(a is not None), int(a is not None), now, r.reason,
                     _dump(r.errors) if r.errors else None, a.status if a else None, a.error if a else None,
                     _dump(r.request) if r.request else None, r.id, owner))
                if cursor.rowcount and a is not None:
                    tried.append((r.id, a))
                applied += cursor.rowcount
            self._attempts(conn, tried)
        return applied

    @staticmethod
    def _attempts(conn, tried: list[tuple[int, Attempt]]) -> None:
        """The attempts of deliveries whose verdicts applied, each with the request it sent: a batch's request
        is kept once (``SentRequest`` objects are shared by the deliveries of one request)."""
        sent_ids: dict[int, int] = {}
        for _, a in tried:
            if a.sent is not None and id(a.sent) not in sent_ids:
                conn.execute("INSERT INTO sent_requests(destination, at, events, request) VALUES (?, ?, ?, ?)",
                             (a.sent.destination, a.at, a.sent.events, a.sent.text or _dump(a.sent.request)))
                sent_ids[id(a.sent)] = _last_id(conn)
        # the destination from the request sent, else from the delivery (COALESCE reads it only then)
        conn.executemany("INSERT INTO attempts(delivery_id, at, status, error, duration, step, destination, sent_id)"
                         " VALUES (?, ?, ?, ?, ?, ?, COALESCE(?, (SELECT destination FROM deliveries WHERE id = ?)), ?)",
                         [(delivery_id, a.at, a.status, a.error, a.duration, a.step,
                           a.sent.destination if a.sent else None, delivery_id,
                           sent_ids[id(a.sent)] if a.sent else None) for delivery_id, a in tried])

    def step_done(self, delivery_id: int, owner: str, progress: dict, attempt: Attempt, now: float,
                  lease_until: float | None = None) -> bool:
        with self._write() as conn:
            applied = conn.execute(
                "UPDATE deliveries SET progress = ?, attempts = attempts + 1, last_status = ?, last_error = NULL,"
                " updated_at = ?, lease_until = COALESCE(?, lease_until) WHERE id = ? AND lease_owner = ?",
                (_dump(progress), attempt.status, now, lease_until, delivery_id, owner)).rowcount
            if applied:
                self._attempts(conn, [(delivery_id, attempt)])
        return bool(applied)

    def release(self, owner: str, ids: Ids | None = None) -> int:
        where, params = "lease_owner = ?", list[object]([owner])
        if ids is not None:
            if not ids:
                return 0
            where += f" AND id IN ({','.join('?' * len(ids))})"
            params += list(ids)
        with self._write() as conn:
            if ids is None:
                conn.execute("UPDATE inbox SET taken_by = NULL, taken_until = NULL WHERE taken_by = ?", (owner,))
            released = conn.execute(f"UPDATE deliveries SET lease_owner = NULL, lease_until = NULL WHERE {where}",
                                    params).rowcount
        if ids is None:   # a clean stop: another process may take the rest now
            self._wake({ALL})
        return released

    def next_due(self, destinations: list[str], now: float) -> float | None:
        if not destinations:
            return None
        marks = ",".join("?" * len(destinations))
        row = self._connection().execute(
            f"SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until >= ? THEN MAX(next_at, lease_until)"
            f" ELSE next_at END) FROM deliveries WHERE state IN {PENDING_SQL} AND destination IN ({marks})",
            (now, *destinations)).fetchone()
        return row[0]

    # --- inspection
    def _rows(self, sql: str, params=()) -> Rows:
        return self._connection().execute(sql, params).fetchall()

    def counts(self, now: float) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        conn = self._connection()
        for destination, state, n in conn.execute(
                "SELECT destination, state, COUNT(*) FROM deliveries GROUP BY destination, state"):
            result.setdefault(destination, {})[state] = n
        for destination, n in conn.execute(
                "SELECT destination, COUNT(*) FROM deliveries WHERE state IN " + PENDING_SQL + " AND lease_until >= ?"
                " GROUP BY destination", (now,)):
            result.setdefault(destination, {})["in_flight"] = n
        return result

    def list(self, destination=None, state=None, limit=50, after_id=0) -> list[DeliveryRecord]:
        where, params = ["id > ?"], [after_id]
        if destination:
            where.append("destination = ?")
            params.append(destination)
        if state:
            where.append("state = ?")
            params.append(state)
        rows = self._connection().execute(
            f"SELECT {RECORD_COLUMNS} FROM deliveries WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
            (*params, limit)).fetchall()
        return [record_of(row) for row in rows]

    def get(self, delivery_id: int) -> DeliveryRecord | None:
        conn = self._connection()
        row = conn.execute(f"SELECT {RECORD_COLUMNS}, request, progress FROM deliveries WHERE id = ?",
                           (delivery_id,)).fetchone()
        if row is None:
            return None
        record = record_of(row[:-2])
        record.request = jsoncodec.loads(row[-2]) if row[-2] else None
        record.progress = jsoncodec.loads(row[-1]) if row[-1] else None
        record.event = jsoncodec.loads(conn.execute("SELECT body FROM events WHERE id = ?", (record.event_id,)).fetchone()[0])
        record.history = [Attempt(*a) for a in conn.execute(
            "SELECT at, status, error, duration, step, sent_id FROM attempts WHERE delivery_id = ? ORDER BY rowid",
            (delivery_id,))]
        latest = next((a.sent_id for a in reversed(record.history) if a.sent_id is not None), None)
        record.sent = self.sent_request(latest) if latest is not None else None
        return record

    def violations(self, query: ViolationQuery) -> ViolationRecords:
        conn = self._connection()
        sql, params = plan_violations.summary(query, "?")
        summaries = conn.execute(sql, params).fetchall()
        if not summaries:
            return []
        sql, params = plan_violations.examples([(row[0], row[-1]) for row in summaries], "?")
        found = {row[0]: row[1:] for row in conn.execute(sql, params)}
        return plan_violations.records(summaries, found, jsoncodec.loads)

    def violation_counts(self) -> dict[tuple[str, str, str], int]:
        return {(source, event, rule): n for source, event, rule, n in
                self._connection().execute(plan_violations.COUNTS)}

    def requeue(self, now, ids=None, destination=None, state=DEAD) -> int:
        where, params = ["state = ?"], [state]
        if ids is not None:
            if not ids:
                return 0
            where.append(f"id IN ({','.join('?' * len(ids))})")
            params += list(ids)
        if destination:
            where.append("destination = ?")
            params.append(destination)
        with self._write() as conn:
            count = conn.execute(
                f"UPDATE deliveries SET state = ?, next_at = ?, first_at = ?, round_attempts = 0, updated_at = ?,"
                f" lease_owner = NULL, lease_until = NULL, reason = NULL, errors = NULL WHERE {' AND '.join(where)}",
                (QUEUED, now, now, now, *params)).rowcount
        if count:
            self._wake({destination or ALL})
        return count

    def hurry(self, destination: str, now: float) -> int:
        with self._write() as conn:
            return conn.execute(
                "UPDATE deliveries SET next_at = ? WHERE destination = ? AND state = ? AND next_at > ?"
                " AND (lease_until IS NULL OR lease_until < ?)", (now, destination, RETRYING, now, now)).rowcount

    def prune(self, before: float, batch: int = 250, archive_before: float | None = None) -> int:
        """Delete old finished deliveries (dead letters stay), their attempts, events left with no delivery
        once the archive lets them go, and old message ids, in short transactions that each leave the write
        lock free after them (``yield_lock``): intake keeps its turn while a large prune runs."""
        archive_before = before if archive_before is None else archive_before
        deleted = 0
        while True:
            began = time.monotonic()
            with self._write() as conn:
                # states spelt in the SQL: only then can SQLite use the partial index deliveries_finished
                rows = conn.execute(f"SELECT id, event_id FROM deliveries WHERE state IN {PRUNABLE_SQL}"
                                    " AND updated_at < ? LIMIT ?", (before, batch)).fetchall()
                if rows:
                    ids, marks = [r[0] for r in rows], ",".join("?" * len(rows))
                    events = sorted({r[1] for r in rows})
                    sent = [r[0] for r in conn.execute(f"SELECT DISTINCT sent_id FROM attempts WHERE delivery_id IN"
                                                       f" ({marks}) AND sent_id IS NOT NULL", ids)]
                    conn.execute(f"DELETE FROM attempts WHERE delivery_id IN ({marks})", ids)
                    if sent:   # a batch's request goes with the last of its deliveries' attempts
                        conn.execute(f"DELETE FROM sent_requests WHERE id IN ({','.join('?' * len(sent))}) AND NOT"
                                     f" EXISTS (SELECT 1 FROM attempts a WHERE a.sent_id = sent_requests.id)", sent)
                    conn.execute(f"DELETE FROM deliveries WHERE id IN ({marks})", ids)
                    conn.execute(f"DELETE FROM events WHERE id IN ({','.join('?' * len(events))})"
                                 " AND received_at < ? AND NOT EXISTS"
                                 " (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)", (*events, archive_before))
            deleted += len(rows)
            yield_lock(time.monotonic() - began)
            if len(rows) < batch:
                break
        while True:
            began = time.monotonic()
            with self._write() as conn:
                seen = conn.execute("DELETE FROM claims WHERE message_id IN (SELECT message_id FROM claims"
                                    " WHERE at < ? LIMIT ?)", (before, batch)).rowcount
            yield_lock(time.monotonic() - began)
            if seen < batch:
                break
        self._prune_undelivered_events(archive_before, batch)
        with self._write() as conn:   # one row per violation (or refusal) kind and hour: few, in one statement each
            conn.execute("DELETE FROM violations WHERE last_at < ?", (before,))
            conn.execute("DELETE FROM refusals WHERE last_at < ?", (before,))
        return deleted

    def _prune_undelivered_events(self, before: float, batch: int) -> None:
        """Events without deliveries (every route disabled, or theirs pruned while the archive kept them).
        Found by reading, which takes no lock, in id order (the order they came in) up to the first one
        too young to go."""
        conn, after = self._connection(), 0
        while True:
            rows = conn.execute("SELECT e.id, e.received_at, EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)"
                                " FROM events e WHERE e.id > ? ORDER BY e.id LIMIT ?", (after, batch)).fetchall()
            old = [r for r in rows if r[1] < before]
            doomed = [r[0] for r in old if not r[2]]
            if doomed:
                began = time.monotonic()
                with self._write() as writer:
                    writer.execute(f"DELETE FROM events WHERE id IN ({','.join('?' * len(doomed))}) AND NOT EXISTS"
                                   " (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)", doomed)
                yield_lock(time.monotonic() - began)
            if len(rows) < batch or len(old) < len(rows):
                return
            after = rows[-1][0]

    # --- the archive and replays
    def archive_bounds(self, since: float, until: float) -> tuple[int, int] | None:
        row = self._connection().execute("SELECT MIN(id), MAX(id) FROM events WHERE received_at >= ?"
                                         " AND received_at < ? AND archived", (since, until)).fetchone()
        return None if row[0] is None else (row[0], row[1])

    def archived(self, after_id, last_id, since, until, source, limit) -> ArchivedEvents:
        where, params = archived_filters(after_id, last_id, since, until, source, "?")
        rows = self._connection().execute(f"SELECT id, received_at, message_id, source, body FROM events"
                                          f" WHERE {where} ORDER BY id LIMIT ?", (*params, limit)).fetchall()
        return [Archived(r[0], r[1], r[2], r[3], jsoncodec.loads(r[4])) for r in rows]

    def start_replay(self, replay: Replay, now: float) -> Replay:
        with self._write() as conn:
            conn.execute("INSERT INTO replays(state, since, until, source, destinations, condition, first_id, last_id,"
                         " after_id, events, matched, counts, owner, created_at, updated_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (REPLAY_RUNNING, replay.since, replay.until, replay.source,
                          _dump(replay.destinations) if replay.destinations is not None else None, replay.where,
                          replay.first_id, replay.last_id, replay.after_id, replay.events, replay.matched,
                          _dump(replay.counts), replay.owner, now, now))
            replay_id = _last_id(conn)
        return self.replays(replay_id=replay_id)[0]

    def replay_step(self, replay_id: int, owner: str, after_id: int, step: ReplayStep, now: float) -> bool:
        with self._write() as conn:
            moved = conn.execute("UPDATE replays SET after_id = ?, events = ?, matched = ?, counts = ?, updated_at = ?"
                                 " WHERE id = ? AND owner = ? AND after_id = ? AND state = ?",
                                 (step.after_id, step.events, step.matched, _dump(step.counts), now, replay_id, owner,
                                  after_id, REPLAY_RUNNING)).rowcount
            if moved and step.deliveries:
                copied = {archived: conn.execute(
                    "INSERT INTO events(message_id, received_at, body, type, name, user_id, archived, source)"
                    " SELECT message_id, received_at, ?, ?, ?, ?, 0, source FROM events WHERE id = ?",
                    (_dump(event), *event_columns(event), archived)).lastrowid for archived, event in step.copies.items()}
                conn.executemany(
                    "INSERT INTO deliveries(event_id, destination, message_id, state, created_at, updated_at, first_at,"
                    " next_at, reason, errors) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(copied.get(event_id, event_id), d.destination, message_id, d.state, now, now, now,
                      now if d.state == QUEUED else None, d.reason, _dump(d.errors) if d.errors else None)
                     for event_id, message_id, d in step.deliveries])
        if moved:   # the deliveries it queued wake their workers, as accept's do
            self._wake({d.destination for _, _, d in step.deliveries if d.state == QUEUED})
        return bool(moved)

    def take_replay(self, replay_id: int, owner: str, now: float) -> Replay | None:
        with self._write() as conn:
            taken = conn.execute(f"UPDATE replays SET owner = ?, state = ?, updated_at = ? WHERE id = ?"
                                 f" AND state NOT IN {REPLAY_FINAL_SQL}", (owner, REPLAY_RUNNING, now, replay_id)).rowcount
        return self.replays(replay_id=replay_id)[0] if taken else None

    def end_replay(self, replay_id: int, owner: str | None, state: str, now: float) -> bool:
        with self._write() as conn:
            return bool(conn.execute(f"UPDATE replays SET state = ?, updated_at = ? WHERE id = ? AND (owner = ? OR ?)"
                                     f" AND state NOT IN {REPLAY_FINAL_SQL}",
                                     (state, now, replay_id, owner, owner is None)).rowcount)

    def replays(self, limit: int = 50, replay_id: int | None = None) -> Replays:
        where, params = ("id = ?", [replay_id]) if replay_id is not None else ("1 = 1", [])
        rows = self._connection().execute(f"SELECT {REPLAY_COLUMNS} FROM replays WHERE {where} ORDER BY id DESC"
                                          f" LIMIT ?", (*params, limit)).fetchall()
        return [_replay(row) for row in rows]


def _replay(row) -> Replay:
    values = list(row)
    values[5] = jsoncodec.loads(values[5]) if values[5] else None
    values[12] = jsoncodec.loads(values[12])
    return Replay(*values)


_INBOX_FREE = inbox_free("?")


def _last_id(conn) -> int:
    return conn.execute("SELECT last_insert_rowid()").fetchone()[0]


_MARKS = 500   # bound parameters per IN list, well under SQLite's limit


_BUSY_TIMEOUT = 60.0  # seconds a connection waits for another's write lock


def _use_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode, waiting out other connections doing the same.

    Switching a new file to WAL needs it alone for a moment, and SQLite answers
    "database is locked" at once instead of calling its busy handler: several
    processes (or threads) opening a new store together would fail. Retry as
    the busy timeout would have waited.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
