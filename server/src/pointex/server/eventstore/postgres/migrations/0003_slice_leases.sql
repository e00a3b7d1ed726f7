-- Pointex event store, schema version 3 (PostgreSQL): slice ownership by lease, fenced by an
-- epoch written on every event (docs/scale-out.md).
--
-- Several command servers may share one database, each owning some of the 64 slice ranges
-- (range r holds the slices 16r to 16r + 15 of `events.slice`). A server owns a range while
-- it holds the range's row in `slice_leases`: its owner id, an expiry it renews, and an epoch
-- that goes up by one whenever the range changes hands. Every event carries the epoch its
-- writer held for the event's range (0: no lease, a server that runs alone), and the insert
-- guard refuses an insert in which any event's epoch is not its range's epoch now. The guard
-- locks the ranges' lease rows until COMMIT, so a takeover (which updates the row) waits for
-- the appends under way, and once it commits, the old owner's appends are refused, however
-- long it was paused: the lease gives a range to one writer at a time, the epoch makes sure a
-- writer that lost it cannot write.

CREATE TABLE slice_leases (
    slice_range    integer NOT NULL,
    owner_id       text    NOT NULL,
    epoch          bigint  NOT NULL,
    expires_at_us  bigint  NOT NULL,
    CONSTRAINT slice_leases_pkey PRIMARY KEY (slice_range),
    CONSTRAINT slice_leases_range CHECK (slice_range BETWEEN 0 AND 63),
    CONSTRAINT slice_leases_epoch_positive CHECK (epoch >= 1),
    CONSTRAINT slice_leases_owner_present CHECK (owner_id <> '')
);

-- Every event written before this migration, and every one a server without a lease writes,
-- is at epoch 0.
ALTER TABLE events ADD COLUMN epoch bigint NOT NULL DEFAULT 0;

-- The insert guard of 0001, and the fence.
CREATE OR REPLACE FUNCTION events_check_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    low bigint;
    high bigint;
    inserted bigint;
    below bigint;
    stale record;
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
    -- The fence. The lease rows of the ranges written are locked until COMMIT: a takeover
    -- waits for this insert, and an insert after a takeover sees the new epoch.
    PERFORM 1 FROM slice_leases
        WHERE slice_range IN (SELECT DISTINCT n.slice / 16 FROM new_events AS n)
        FOR SHARE;
    SELECT n.slice / 16 AS slice_range, n.epoch AS written, coalesce(l.epoch, 0) AS held
        INTO stale
        FROM new_events AS n LEFT JOIN slice_leases AS l ON l.slice_range = n.slice / 16
        WHERE n.epoch <> coalesce(l.epoch, 0)
        LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'slice range % is at epoch %, not %: its lease changed hands',
            stale.slice_range, stale.held, stale.written
            USING ERRCODE = 'PX001';
    END IF;
    -- Delivered at COMMIT only: wakes subscribers in other processes (payload: this schema).
    PERFORM pg_notify('pointex_events', current_schema());
    RETURN NULL;
END
$$;

-- append_events of 0002, with the epoch of each slice range its writer holds: p_epochs[r + 1]
-- for range r (empty, or 0 at a range: no lease held there).
DROP FUNCTION append_events(
    text[], bigint[], integer[], text[], integer[], bytea[], bytea[], text[], bigint[]
);

CREATE FUNCTION append_events(
    p_stream_ids text[],
    p_stream_versions bigint[],
    p_slices integer[],
    p_types text[],
    p_schema_versions integer[],
    p_data bytea[],
    p_metadata bytea[],
    p_expected_streams text[],
    p_expected_versions bigint[],
    p_epochs bigint[]
) RETURNS TABLE (inserted bigint, head bigint, recorded_at_us bigint)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    v_head bigint;
    v_now bigint;
    v_count bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(8101810177782937601);
    SELECT coalesce(max(position), 0) INTO v_head FROM events;
    -- Read after the lock: the clock of consecutive commits does not go back with positions.
    v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    IF EXISTS (
        SELECT 1
        FROM unnest(p_expected_streams, p_expected_versions) AS s(stream_id, version)
        WHERE coalesce(
            (SELECT max(e.stream_version) FROM events AS e WHERE e.stream_id = s.stream_id), 0
        ) <> s.version
    ) THEN
        RETURN QUERY SELECT 0::bigint, v_head, v_now;
        RETURN;
    END IF;
    INSERT INTO events (
        position, stream_id, stream_version, slice, category, type, schema_version,
        data, metadata, recorded_at_us, epoch
    )
    SELECT v_head + u.n, u.stream_id, u.stream_version, u.slice,
        split_part(u.stream_id, '-', 1), u.type, u.schema_version, u.data, u.metadata, v_now,
        coalesce(p_epochs[u.slice / 16 + 1], 0)
    FROM unnest(
        p_stream_ids, p_stream_versions, p_slices, p_types, p_schema_versions, p_data,
        p_metadata
    ) WITH ORDINALITY AS u(stream_id, stream_version, slice, type, schema_version, data,
        metadata, n);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN QUERY SELECT v_count, v_head, v_now;
END
$$;
