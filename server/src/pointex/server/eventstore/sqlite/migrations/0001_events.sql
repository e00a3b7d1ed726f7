-- Pointex event store, schema version 1 (SQLite 3.37 or later, for STRICT tables).
--
-- The log is append-only and its positions are gap-free. SQLite admits one writer at a time
-- (the store opens every write with BEGIN IMMEDIATE), so commit order is position order; the
-- triggers below make the database itself refuse a gap, a second row for a stream version
-- (which also stops INSERT OR REPLACE from deleting history), UPDATE and DELETE.

CREATE TABLE events (
    position        INTEGER NOT NULL PRIMARY KEY,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    slice           INTEGER NOT NULL,
    category        TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    data            BLOB    NOT NULL,
    metadata        BLOB    NOT NULL,
    recorded_at_us  INTEGER NOT NULL,
    CONSTRAINT events_position_positive CHECK (position >= 1),
    CONSTRAINT events_stream_version_positive CHECK (stream_version >= 1),
    CONSTRAINT events_slice_range CHECK (slice BETWEEN 0 AND 1023),
    CONSTRAINT events_category_of_stream CHECK (
        instr(stream_id, '-') > 1
        AND length(stream_id) > instr(stream_id, '-')
        AND category = substr(stream_id, 1, instr(stream_id, '-') - 1)
    ),
    CONSTRAINT events_schema_version_positive CHECK (schema_version >= 1)
) STRICT;

-- read_stream and the expected-version check; also the final guard against two writers
-- giving a stream the same version.
CREATE UNIQUE INDEX events_stream_version ON events (stream_id, stream_version);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE on events refused');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: DELETE on events refused');
END;

CREATE TRIGGER events_insert_guard BEFORE INSERT ON events
WHEN NEW.position IS NOT (SELECT coalesce(max(position), 0) + 1 FROM events)
    OR EXISTS (
        SELECT 1 FROM events
        WHERE stream_id = NEW.stream_id AND stream_version = NEW.stream_version
    )
BEGIN
    SELECT RAISE(ABORT, 'events are inserted at the head, without a gap or a replaced row');
END;

-- Snapshots are caches of what the events say: one per stream, replaced by newer ones, and
-- deletable at any time.
CREATE TABLE snapshots (
    stream_id       TEXT    NOT NULL PRIMARY KEY,
    stream_version  INTEGER NOT NULL,
    type            TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    data            BLOB    NOT NULL,
    saved_at_us     INTEGER NOT NULL,
    CONSTRAINT snapshots_stream_version_positive CHECK (stream_version >= 1),
    CONSTRAINT snapshots_schema_version_positive CHECK (schema_version >= 1)
) STRICT;
