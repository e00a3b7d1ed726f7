-- Pointex event store, schema version 1 (PostgreSQL).
--
-- The log is append-only and its positions are gap-free and in commit order. Both rules are
-- enforced here, by the database, and not only by the store's code:
--   * rows are inserted only by a transaction holding the position lock (advisory lock key
--     8101810177782937601, the same constant as POSITION_LOCK_KEY in store.py), and only at
--     head + 1 onwards without a gap. The lock is held until COMMIT, so commit order equals
--     position order;
--   * UPDATE, DELETE and TRUNCATE raise.
-- Functions pin their search_path to this schema, so a session with another search_path
-- still checks this schema's tables.

CREATE TABLE events (
    position        bigint  NOT NULL,
    stream_id       text    NOT NULL,
    stream_version  bigint  NOT NULL,
    slice           integer NOT NULL,
    category        text    NOT NULL,
    type            text    NOT NULL,
    schema_version  integer NOT NULL,
    data            bytea   NOT NULL,
    metadata        bytea   NOT NULL,
    recorded_at_us  bigint  NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_position_positive CHECK (position >= 1),
    CONSTRAINT events_stream_version_positive CHECK (stream_version >= 1),
    CONSTRAINT events_slice_range CHECK (slice BETWEEN 0 AND 1023),
    CONSTRAINT events_category_of_stream CHECK (
        category <> '' AND stream_id LIKE '%-_%' AND category = split_part(stream_id, '-', 1)
    ),
    CONSTRAINT events_schema_version_positive CHECK (schema_version >= 1)
);

-- read_stream and the expected-version check; also the final guard against two writers
-- giving a stream the same version.
CREATE UNIQUE INDEX events_stream_version ON events (stream_id, stream_version);

CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- One check per INSERT statement (not per row), so a group commit of a thousand events pays
-- for it once.
CREATE FUNCTION events_check_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    low bigint;
    high bigint;
    inserted bigint;
    below bigint;
BEGIN
    -- Succeeds at once when this transaction holds the lock (the store's path), fails when
    -- another transaction holds it, and takes it otherwise, so that it is held to COMMIT.
    IF NOT pg_try_advisory_xact_lock(8101810177782937601) THEN
        RAISE EXCEPTION 'events are inserted only while holding the position lock'
            USING ERRCODE = 'lock_not_available';
    END IF;
    SELECT min(position), max(position), count(*) INTO low, high, inserted FROM new_events;
    IF inserted = 0 THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(max(position), 0) INTO below FROM events WHERE position < low;
    IF below <> low - 1 OR high - low + 1 <> inserted
        OR EXISTS (SELECT 1 FROM events WHERE position > high) THEN
        RAISE EXCEPTION 'positions % to % do not follow the head % without a gap',
            low, high, below
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- Delivered at COMMIT only: wakes subscribers in other processes (payload: this schema).
    PERFORM pg_notify('pointex_events', current_schema());
    RETURN NULL;
END
$$;

CREATE TRIGGER events_insert_guard AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION events_check_insert();

-- The application role needs SELECT and INSERT only; the triggers above hold even for the
-- table's owner, which privileges alone cannot restrain.
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM PUBLIC;

-- Snapshots are caches of what the events say: one per stream, replaced by newer ones, and
-- deletable at any time.
CREATE TABLE snapshots (
    stream_id       text    NOT NULL,
    stream_version  bigint  NOT NULL,
    type            text    NOT NULL,
    schema_version  integer NOT NULL,
    data            bytea   NOT NULL,
    saved_at_us     bigint  NOT NULL,
    CONSTRAINT snapshots_pkey PRIMARY KEY (stream_id),
    CONSTRAINT snapshots_stream_version_positive CHECK (stream_version >= 1),
    CONSTRAINT snapshots_schema_version_positive CHECK (schema_version >= 1)
);
