"""Hold the SQLite adapter's statements; every value is a bind parameter."""

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS pointex_schema_migrations (
    version        INTEGER NOT NULL PRIMARY KEY,
    applied_at_us  INTEGER NOT NULL
) STRICT
"""

SELECT_MIGRATIONS = "SELECT version FROM pointex_schema_migrations"

INSERT_MIGRATION = "INSERT INTO pointex_schema_migrations (version, applied_at_us) VALUES (?, ?)"

SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM pointex_schema_migrations"

HEAD_POSITION = "SELECT coalesce(max(position), 0) FROM events"

# The streams come as one JSON array, so the statement is the same for any number of them.
# One row per stream asked, NULL for a stream without events. Each version is a max() of its
# own, which SQLite reads off the end of the (stream_id, stream_version) index; a max() per
# GROUP BY group would read every event of the stream instead, so a hot account's long
# history made each commit slower than the last.
STREAM_VERSIONS = """
SELECT s.value, (SELECT max(e.stream_version) FROM events AS e WHERE e.stream_id = s.value)
FROM json_each(?) AS s
"""

INSERT_EVENT = """
INSERT INTO events (
    position, stream_id, stream_version, slice, category, type, schema_version,
    data, metadata, recorded_at_us
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

EVENT_COLUMNS = (
    "position, stream_id, stream_version, slice, type, schema_version, data, metadata, "
    "recorded_at_us"
)

# The first events of many streams (a JSON array of ids, how many of each).
READ_STREAM_STARTS = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE stream_id IN (SELECT value FROM json_each(?)) AND stream_version <= ?
ORDER BY stream_id, stream_version
"""  # noqa: S608 - EVENT_COLUMNS is a constant of this module, not input.

READ_STREAM = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE stream_id = ? AND stream_version >= ?
ORDER BY stream_version
LIMIT ?
"""  # noqa: S608 - EVENT_COLUMNS is a constant of this module, not input.

READ_ALL = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE position > ?
ORDER BY position
LIMIT ?
"""  # noqa: S608 - EVENT_COLUMNS is a constant of this module, not input.

# Newest wins; an equal version replaces (a re-snapshot after a snapshot schema change).
UPSERT_SNAPSHOT = """
INSERT INTO snapshots (stream_id, stream_version, type, schema_version, data, saved_at_us)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (stream_id) DO UPDATE SET
    stream_version = excluded.stream_version,
    type = excluded.type,
    schema_version = excluded.schema_version,
    data = excluded.data,
    saved_at_us = excluded.saved_at_us
WHERE snapshots.stream_version <= excluded.stream_version
"""

LOAD_SNAPSHOT = """
SELECT stream_id, stream_version, type, schema_version, data FROM snapshots
WHERE stream_id = ?
"""

DELETE_SNAPSHOT = "DELETE FROM snapshots WHERE stream_id = ?"

DELETE_ALL_SNAPSHOTS = "DELETE FROM snapshots"
