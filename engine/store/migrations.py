"""Versioned schema changes per backend. Append, never edit: a database records the last number applied."""
from __future__ import annotations

SQLITE = [
    (1, """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    message_id TEXT,
    received_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id),
    destination TEXT NOT NULL,
    message_id TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    round_attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    first_at REAL NOT NULL,
    next_at REAL,
    lease_owner TEXT,
    lease_until REAL,
    reason TEXT,
    errors TEXT,
    last_status INTEGER,
    last_error TEXT,
    request TEXT
);
CREATE INDEX deliveries_due ON deliveries(destination, next_at) WHERE state IN ('queued', 'retrying');
CREATE INDEX deliveries_state ON deliveries(destination, state);
CREATE INDEX deliveries_finished ON deliveries(updated_at) WHERE state IN ('delivered', 'skipped', 'rejected');
CREATE INDEX deliveries_event ON deliveries(event_id);
CREATE TABLE attempts (
    delivery_id INTEGER NOT NULL,
    at REAL NOT NULL,
    status INTEGER,
    error TEXT,
    duration REAL NOT NULL DEFAULT 0
);
CREATE INDEX attempts_delivery ON attempts(delivery_id);
CREATE TABLE seen (
    destination TEXT NOT NULL,
    message_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (destination, message_id)
);
CREATE INDEX seen_at ON seen(at)
"""),
    # dry_run (a delivery handed to the dry-run sink, not a vendor) is pruned like delivered
    (2, """
DROP INDEX deliveries_finished;
CREATE INDEX deliveries_finished ON deliveries(updated_at) WHERE state IN ('delivered', 'dry_run', 'skipped', 'rejected')
"""),
    # the console: events filtered by type, name, userId and messageId without parsing bodies per query
    # (base.event_columns fills the new columns at intake); attempts per time bucket from an index alone
    (3, """
ALTER TABLE events ADD COLUMN type TEXT;
ALTER TABLE events ADD COLUMN name TEXT;
ALTER TABLE events ADD COLUMN user_id TEXT;
UPDATE events SET type = json_extract(body, '$.type'), user_id = CAST(json_extract(body, '$.userId') AS TEXT),
    name = COALESCE(json_extract(body, '$.event'), json_extract(body, '$.name'))
    WHERE json_type(body) = 'object';
CREATE INDEX events_message ON events(message_id);
CREATE INDEX events_user ON events(user_id);
CREATE INDEX attempts_at ON attempts(at, status, delivery_id)
"""),
    # multi-step actions (engine/steps.py): the answers of completed steps, so a retry resumes at the
    # failing step without repeating the others; and which step each attempt was
    (4, """
ALTER TABLE deliveries ADD COLUMN progress TEXT;
ALTER TABLE attempts ADD COLUMN step TEXT
"""),
    # issue 16, fewer writes per event: one dedupe claim per messageId instead of one per destination
    # (the latest sighting of each is kept); and the inbox, where 'server.intake: queue' keeps each
    # accepted request whole until a processor fans its events out
    (5, """
CREATE TABLE claims (
    message_id TEXT PRIMARY KEY,
    at REAL NOT NULL
) WITHOUT ROWID;
INSERT INTO claims(message_id, at) SELECT message_id, MAX(at) FROM seen GROUP BY message_id;
CREATE INDEX claims_at ON claims(at);
DROP TABLE seen;
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    call TEXT NOT NULL,
    body BLOB NOT NULL,
    received_at REAL NOT NULL,
    ip TEXT,
    taken_by TEXT,
    taken_until REAL
)
"""),
    # tracking plans (issue 27): violations counted per key and hour, with one example each
    # (store/violations.py); and the source of each inbox request, whose plan the processor applies
    (6, """
CREATE TABLE violations (
    key TEXT NOT NULL,
    hour REAL NOT NULL,
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    rule TEXT NOT NULL,
    path TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    action TEXT NOT NULL,
    message TEXT NOT NULL,
    message_id TEXT,
    example TEXT NOT NULL,
    PRIMARY KEY (key, hour)
) WITHOUT ROWID;
CREATE INDEX violations_last ON violations(last_at);
ALTER TABLE inbox ADD COLUMN source TEXT
"""),
    # issue 27, replay: the events table is the archive. An event stays while it has deliveries or is
    # younger than delivery.archive_for; archived says whether a replay may send it again (an accepted Segment
    # event, not one rejected at intake, a duplicate or a webhook payload waiting to be mapped), source which
    # source it came in from (inbox requests have kept theirs since migration 6). Events found by time for a
    # replay's range (PostgreSQL has had this index since migration 1). Each replay is recorded with its
    # range, filters and progress, which move with its deliveries in one transaction per chunk.
    (7, """
ALTER TABLE events ADD COLUMN archived INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN source TEXT;
UPDATE events SET archived = 0 WHERE id IN (SELECT event_id FROM deliveries WHERE destination = '(intake)'
    OR destination LIKE 'source:%' OR reason LIKE 'duplicate:%');
CREATE INDEX events_received ON events(received_at);
CREATE TABLE replays (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    since REAL NOT NULL,
    until REAL NOT NULL,
    source TEXT,
    destinations TEXT,
    condition TEXT,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    after_id INTEGER NOT NULL,
    events INTEGER NOT NULL DEFAULT 0,
    matched INTEGER NOT NULL DEFAULT 0,
    counts TEXT NOT NULL,
    owner TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)
"""),
    # issue 26, the console shows the whole path of an event: the request each attempt sent (a batch kept
    # once, its deliveries' attempts pointing at it), each attempt's destination (charts per destination
    # read one covering index, no join), deliveries found by destination and state newest first, and the
    # sample of requests refused at the door (store/refusals.py)
    (8, """
CREATE TABLE sent_requests (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    at REAL NOT NULL,
    events INTEGER NOT NULL,
    request TEXT NOT NULL
);
ALTER TABLE attempts ADD COLUMN destination TEXT;
ALTER TABLE attempts ADD COLUMN sent_id INTEGER;
UPDATE attempts SET destination = (SELECT d.destination FROM deliveries d WHERE d.id = attempts.delivery_id);
DROP INDEX attempts_at;
CREATE INDEX attempts_at ON attempts(at, destination, status);
CREATE INDEX attempts_sent ON attempts(sent_id) WHERE sent_id IS NOT NULL;
DROP INDEX deliveries_state;
CREATE INDEX deliveries_state ON deliveries(destination, state, event_id);
CREATE TABLE refusals (
    key TEXT NOT NULL,
    hour REAL NOT NULL,
    status INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    path TEXT NOT NULL,
    source TEXT,
    key_prefix TEXT,
    origin TEXT,
    ip TEXT,
    user_agent TEXT,
    count INTEGER NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (key, hour)
) WITHOUT ROWID;
CREATE INDEX refusals_last ON refusals(last_at)
"""),
]

# PostgreSQL: the same tables; times stay epoch seconds (double precision) so both backends speak one
# interface, and JSON stays json (kept as written, key order included) rather than jsonb.
POSTGRES = [
    (1, """
CREATE TABLE schema_version (version integer NOT NULL);
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id text,
    received_at double precision NOT NULL,
    body json NOT NULL
);
CREATE INDEX events_received ON events(received_at);
CREATE TABLE deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES events(id),
    destination text NOT NULL,
    message_id text,
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    round_attempts integer NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    first_at double precision NOT NULL,
    next_at double precision,
    lease_owner text,
    lease_until double precision,
    reason text,
    errors json,
    last_status integer,
    last_error text,
    request json
);
CREATE INDEX deliveries_due ON deliveries(destination, next_at, id) WHERE state IN ('queued', 'retrying');
CREATE INDEX deliveries_state ON deliveries(destination, state);
CREATE INDEX deliveries_finished ON deliveries(updated_at) WHERE state IN ('delivered', 'skipped', 'rejected');
CREATE INDEX deliveries_event ON deliveries(event_id);
CREATE INDEX deliveries_owner ON deliveries(lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id bigint NOT NULL,
    at double precision NOT NULL,
    status integer,
    error text,
    duration double precision NOT NULL DEFAULT 0
);
CREATE INDEX attempts_delivery ON attempts(delivery_id);
CREATE TABLE seen (
    destination text NOT NULL,
    message_id text NOT NULL,
    at double precision NOT NULL,
    PRIMARY KEY (destination, message_id)
);
CREATE INDEX seen_at ON seen(at)
"""),
    (2, """
DROP INDEX deliveries_finished;
CREATE INDEX deliveries_finished ON deliveries(updated_at) WHERE state IN ('delivered', 'dry_run', 'skipped', 'rejected')
"""),
    # the console: events filtered by type, name, userId and messageId without parsing bodies per query
    # (base.event_columns fills the new columns at intake; bodies holding \u0000, which PostgreSQL
    # will not read as text, keep them empty); attempts per time bucket from an index alone (no index
    # on reasons: a btree refuses entries over about 2.7 KB, and a long reason must never stop a verdict)
    (3, """
ALTER TABLE events ADD COLUMN type text;
ALTER TABLE events ADD COLUMN name text;
ALTER TABLE events ADD COLUMN user_id text;
UPDATE events SET type = body->>'type', user_id = body->>'userId', name = COALESCE(body->>'event', body->>'name')
    WHERE json_typeof(body) = 'object' AND strpos(body::text, '\\u0000') = 0;
CREATE INDEX events_message ON events(message_id);
CREATE INDEX events_user ON events(user_id);
CREATE INDEX attempts_at ON attempts(at, status, delivery_id)
"""),
    (4, """
ALTER TABLE deliveries ADD COLUMN progress json;
ALTER TABLE attempts ADD COLUMN step text
"""),
    (5, """
CREATE TABLE claims (
    message_id text PRIMARY KEY,
    at double precision NOT NULL
);
INSERT INTO claims(message_id, at) SELECT message_id, MAX(at) FROM seen GROUP BY message_id;
CREATE INDEX claims_at ON claims(at);
DROP TABLE seen;
CREATE TABLE inbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call text NOT NULL,
    body bytea NOT NULL,
    received_at double precision NOT NULL,
    ip text,
    taken_by text,
    taken_until double precision
)
"""),
    # the key is a digest of the names (store/violations.py): a btree refuses entries over about 2.7 KB
    (6, """
CREATE TABLE violations (
    key text NOT NULL,
    hour double precision NOT NULL,
    source text NOT NULL,
    event text NOT NULL,
    rule text NOT NULL,
    path text NOT NULL,
    count bigint NOT NULL,
    first_at double precision NOT NULL,
    last_at double precision NOT NULL,
    action text NOT NULL,
    message text NOT NULL,
    message_id text,
    example json NOT NULL,
    PRIMARY KEY (key, hour)
);
CREATE INDEX violations_last ON violations(last_at);
ALTER TABLE inbox ADD COLUMN source text
"""),
    (7, """
ALTER TABLE events ADD COLUMN archived boolean NOT NULL DEFAULT true;
ALTER TABLE events ADD COLUMN source text;
UPDATE events SET archived = false WHERE id IN (SELECT event_id FROM deliveries WHERE destination = '(intake)'
    OR destination LIKE 'source:%' OR reason LIKE 'duplicate:%');
CREATE TABLE replays (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state text NOT NULL,
    since double precision NOT NULL,
    until double precision NOT NULL,
    source text,
    destinations json,
    condition text,
    first_id bigint NOT NULL,
    last_id bigint NOT NULL,
    after_id bigint NOT NULL,
    events bigint NOT NULL DEFAULT 0,
    matched bigint NOT NULL DEFAULT 0,
    counts json NOT NULL,
    owner text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
)
"""),
    (8, """
CREATE TABLE sent_requests (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination text NOT NULL,
    at double precision NOT NULL,
    events integer NOT NULL,
    request json NOT NULL
);
ALTER TABLE attempts ADD COLUMN destination text;
ALTER TABLE attempts ADD COLUMN sent_id bigint;
UPDATE attempts a SET destination = d.destination FROM deliveries d WHERE d.id = a.delivery_id;
DROP INDEX attempts_at;
CREATE INDEX attempts_at ON attempts(at, destination, status);
CREATE INDEX attempts_sent ON attempts(sent_id) WHERE sent_id IS NOT NULL;
DROP INDEX deliveries_state;
CREATE INDEX deliveries_state ON deliveries(destination, state, event_id);
CREATE TABLE refusals (
    key text NOT NULL,
    hour double precision NOT NULL,
    status integer NOT NULL,
    code text NOT NULL,
    reason text NOT NULL,
    path text NOT NULL,
    source text,
    key_prefix text,
    origin text,
    ip text,
    user_agent text,
    count bigint NOT NULL,
    first_at double precision NOT NULL,
    last_at double precision NOT NULL,
    PRIMARY KEY (key, hour)
);
CREATE INDEX refusals_last ON refusals(last_at)
"""),
]

BACKENDS = {"sqlite": SQLITE, "postgres": POSTGRES}


def migrations(backend: str) -> list[tuple[int, str]]:
    return BACKENDS[backend]


def statements(script: str) -> list[str]:
    """A migration's statements, one by one: both drivers run one statement per call."""
    return [s.strip() for s in script.split(";") if s.strip()]
