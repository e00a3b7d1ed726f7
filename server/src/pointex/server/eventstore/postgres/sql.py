"""Hold the PostgreSQL adapter's statements; every value is a bind parameter.

Tables are named without a schema: each connection's search_path is the store's schema.
"""

TAKE_LOCK = "SELECT pg_advisory_xact_lock($1)"

SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)"

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS pointex_schema_migrations (
    version        integer NOT NULL PRIMARY KEY,
    applied_at_us  bigint  NOT NULL
)
"""

# Asked before anything is created: a role without CREATE on the schema (the servers'
# least-privilege role) must open an up-to-date store without a DDL statement, and even
# CREATE TABLE IF NOT EXISTS needs CREATE on the schema.
MIGRATIONS_TABLE_EXISTS = """
SELECT EXISTS (
    SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'pointex_schema_migrations'
)
"""

SELECT_MIGRATIONS = "SELECT version FROM pointex_schema_migrations"

# The database's clock, so that several command servers record one clock.
_NOW_US = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
# The time the statement started: one instant for every row it looks at. A lease taken
# only once expired at the statement's start is expired at every later instant too.
_STATEMENT_US = "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint"

INSERT_MIGRATION = f"""
INSERT INTO pointex_schema_migrations (version, applied_at_us) VALUES ($1, {_NOW_US})
"""  # noqa: S608 - _NOW_US is a constant of this module, not input.

SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM pointex_schema_migrations"

# One round trip under the position lock: the head, the clock, and the current version of
# each stream in $1 (an array literal, see below), in its order (0 for a stream that does
# not exist).
HEAD_CLOCK_VERSIONS = f"""
SELECT
    (SELECT coalesce(max(position), 0) FROM events),
    {_NOW_US},
    ARRAY(
        SELECT coalesce(
            (SELECT max(e.stream_version) FROM events AS e WHERE e.stream_id = s.stream_id), 0)
        FROM unnest($1::text::text[]) WITH ORDINALITY AS s(stream_id, n)
        ORDER BY s.n
    )
"""  # noqa: S608 - _NOW_US is a constant of this module, not input.

# A batch's rows, and where they go: $1 is the first row's position (the others follow it
# without a gap) and $2 to $8 hold one array per column (appender._columns). Positions and
# categories are derived here rather than sent: each array element costs the driver a type
# check and an encoding. The text and integer columns are sent as one array literal each
# (text, parsed by the server): asyncpg checks every element of a Python list it encodes as
# an array against three abstract base classes, which cost more than the whole literal.
_INTO_EVENTS = """
INSERT INTO events (
    position, stream_id, stream_version, slice, category, type, schema_version,
    data, metadata, recorded_at_us, epoch
)"""
_ROWS = """unnest(
    $2::text::text[], $3::text::bigint[], $4::text::integer[], $5::text::text[],
    $6::text::integer[], $7::bytea[], $8::bytea[]
) WITH ORDINALITY AS u(stream_id, stream_version, slice, type, schema_version, data, metadata, n)"""
_ROW_VALUES = """$1::bigint + u.n - 1, u.stream_id, u.stream_version, u.slice,
    split_part(u.stream_id, '-', 1), u.type, u.schema_version, u.data, u.metadata"""

# $9 is the clock, $10 the epoch of each slice range the writer holds (leases.py): an event of
# range r is written at epoch $10[r + 1], 0 where the writer holds no lease.
INSERT_EVENTS = f"""{_INTO_EVENTS}
SELECT {_ROW_VALUES}, $9::bigint,
    coalesce(($10::text::bigint[])[u.slice / 16 + 1], 0)
FROM {_ROWS}
"""  # noqa: S608 - both parts are constants of this module, not input.

# One statement outside any transaction (migration 0002): the rows of a batch ($1 to $7, as
# the columns of INSERT_EVENTS) go in at the head, once the position lock is free, only if
# every stream of $8 is at its version in $9. Returns the rows inserted (all, or 0 when a
# version differs), the head they went in after, and the clock recorded with them. $10 holds
# the writer's epochs, as in INSERT_EVENTS.
APPEND_EVENTS = """
SELECT inserted, head, recorded_at_us FROM append_events(
    $1::text::text[], $2::text::bigint[], $3::text::integer[], $4::text::text[],
    $5::text::integer[], $6::bytea[], $7::bytea[], $8::text::text[], $9::text::bigint[],
    $10::text::bigint[]
)
"""

EVENT_COLUMNS = (
    "position, stream_id, stream_version, slice, type, schema_version, data, metadata, "
    "recorded_at_us"
)

READ_STREAM = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE stream_id = $1 AND stream_version >= $2
ORDER BY stream_version
LIMIT $3
"""  # noqa: S608 - EVENT_COLUMNS is a constant of this module, not input.

# The first events of many streams ($1: a text array literal, $2: how many of each).
READ_STREAM_STARTS = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE stream_id = ANY($1::text::text[]) AND stream_version <= $2
ORDER BY stream_id, stream_version
"""  # noqa: S608 - EVENT_COLUMNS is a constant of this module, not input.

READ_ALL = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE position > $1
ORDER BY position
LIMIT $2
"""  # noqa: S608 - EVENT_COLUMNS is a constant of this module, not input.

HEAD_POSITION = "SELECT coalesce(max(position), 0) FROM events"

# Newest wins; an equal version replaces (a re-snapshot after a snapshot schema change).
UPSERT_SNAPSHOT = f"""
INSERT INTO snapshots (stream_id, stream_version, type, schema_version, data, saved_at_us)
VALUES ($1, $2, $3, $4, $5, {_NOW_US})
ON CONFLICT (stream_id) DO UPDATE SET
    stream_version = excluded.stream_version,
    type = excluded.type,
    schema_version = excluded.schema_version,
    data = excluded.data,
    saved_at_us = excluded.saved_at_us
WHERE snapshots.stream_version <= excluded.stream_version
"""  # noqa: S608 - _NOW_US is a constant of this module, not input.

LOAD_SNAPSHOT = """
SELECT stream_id, stream_version, type, schema_version, data FROM snapshots
WHERE stream_id = $1
"""

DELETE_SNAPSHOT = "DELETE FROM snapshots WHERE stream_id = $1"

DELETE_ALL_SNAPSHOTS = "DELETE FROM snapshots"

# --- Slice-range leases (migration 0003, leases.py) ----------------------------------------

# Take each range asked for that has no lease or whose lease expired; raise its epoch, and
# say where the new owner is reached (migration 0004). The expired rows are locked FOR
# UPDATE first, in range order: that waits for the appends under way, whose insert guard
# holds them FOR KEY SHARE until COMMIT (a plain upsert would not: it changes no key).
# Expiry is judged at the statement's start, not row by row: leases renewed together are
# taken together, even by a statement that waited across the instant they expired.
ACQUIRE_LEASES = f"""
WITH expired AS (
    SELECT slice_range FROM slice_leases
    WHERE slice_range = ANY($1::integer[]) AND expires_at_us < {_STATEMENT_US}
    ORDER BY slice_range
    FOR UPDATE
)
INSERT INTO slice_leases AS l (slice_range, owner_id, epoch, expires_at_us, owner_address)
SELECT r, $2, 1, {_NOW_US} + $3, $4 FROM unnest($1::integer[]) AS r
WHERE (SELECT count(*) FROM expired) >= 0
ON CONFLICT (slice_range) DO UPDATE
    SET owner_id = excluded.owner_id, epoch = l.epoch + 1, expires_at_us = excluded.expires_at_us,
        owner_address = excluded.owner_address
    WHERE l.expires_at_us < {_STATEMENT_US}
RETURNING slice_range, epoch
"""  # noqa: S608 - _NOW_US is a constant of this module, not input.

# Extend the leases still held at the epochs taken; a range another owner took is not found.
RENEW_LEASES = f"""
UPDATE slice_leases AS l SET expires_at_us = {_NOW_US} + $3
FROM unnest($1::integer[], $4::bigint[]) AS h(slice_range, epoch)
WHERE l.slice_range = h.slice_range AND l.owner_id = $2 AND l.epoch = h.epoch
RETURNING l.slice_range
"""  # noqa: S608 - _NOW_US is a constant of this module, not input.

# Give ranges up at once: the next owner takes them without waiting for the lease to expire.
RELEASE_LEASES = """
UPDATE slice_leases AS l SET expires_at_us = 0
FROM unnest($1::integer[], $3::bigint[]) AS h(slice_range, epoch)
WHERE l.slice_range = h.slice_range AND l.owner_id = $2 AND l.epoch = h.epoch
"""

LIST_LEASES = f"""
SELECT slice_range, owner_id, owner_address, epoch, expires_at_us, {_NOW_US} AS now_us
FROM slice_leases ORDER BY slice_range
"""  # noqa: S608 - _NOW_US is a constant of this module, not input.

# --- The members that balance the ranges (migration 0006, leases.py) -----------------------

# Be a member, or stay one, for `$3` microseconds more; members long expired are forgotten.
JOIN_MEMBERS = f"""
WITH forgotten AS (
    DELETE FROM slice_members WHERE expires_at_us < {_NOW_US} - $3 * 10 AND member_id <> $1
)
INSERT INTO slice_members AS m (member_id, member_address, expires_at_us)
VALUES ($1, $2, {_NOW_US} + $3)
ON CONFLICT (member_id) DO UPDATE
    SET member_address = excluded.member_address, expires_at_us = excluded.expires_at_us
"""  # noqa: S608 - _NOW_US is a constant of this module, not input.

LEAVE_MEMBERS = "DELETE FROM slice_members WHERE member_id = $1"

# The members whose rows have not expired, by id.
LIST_MEMBERS = f"""
SELECT member_id, member_address FROM slice_members
WHERE expires_at_us >= {_NOW_US} ORDER BY member_id
"""  # noqa: S608 - _NOW_US is a constant of this module, not input.
