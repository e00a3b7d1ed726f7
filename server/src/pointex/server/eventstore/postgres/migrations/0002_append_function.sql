-- Pointex event store, schema version 2 (PostgreSQL): a group commit in one round trip that
-- waits for the position lock.
--
-- append_events inserts a batch at the head if every stream it names is at the version the
-- writer expects, and inserts nothing otherwise (the writer then plans the batch under the
-- lock in a transaction of its own, which tells each unit's conflict). It takes the position
-- lock first and waits for its holder's COMMIT. Each statement of a VOLATILE function takes
-- a fresh snapshot under READ COMMITTED, so the head and the versions it reads after the lock
-- include every commit before its own. A writer can therefore send its next batch while the
-- previous one commits, and several writers queue on the lock inside the database. The lock
-- is held to COMMIT, so commit order stays position order; the insert guard of 0001 still
-- checks the lock and the positions of every insert.

CREATE FUNCTION append_events(
    p_stream_ids text[],
    p_stream_versions bigint[],
    p_slices integer[],
    p_types text[],
    p_schema_versions integer[],
    p_data bytea[],
    p_metadata bytea[],
    p_expected_streams text[],
    p_expected_versions bigint[]
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
        data, metadata, recorded_at_us
    )
    SELECT v_head + u.n, u.stream_id, u.stream_version, u.slice,
        split_part(u.stream_id, '-', 1), u.type, u.schema_version, u.data, u.metadata, v_now
    FROM unnest(
        p_stream_ids, p_stream_versions, p_slices, p_types, p_schema_versions, p_data,
        p_metadata
    ) WITH ORDINALITY AS u(stream_id, stream_version, slice, type, schema_version, data,
        metadata, n);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN QUERY SELECT v_count, v_head, v_now;
END
$$;
