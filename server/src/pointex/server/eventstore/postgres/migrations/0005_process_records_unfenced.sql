-- Pointex event store, schema version 5 (PostgreSQL): the epoch fence covers entity streams,
-- and process records are kept by their versions alone (docs/scale-out.md).
--
-- A unit a command commits is the events of one entity (an account, a market, the program)
-- with the records of the process or request it belongs to: `transfer-`, `trade-` and
-- `request-` streams. With slice ranges split across command servers, a step of a process
-- runs on the server that owns the step's entity, and the process's record lives in a range
-- of its own, often another server's. The fence therefore checks the events of every
-- category but those three, and locks only their ranges' leases. A record is still written
-- at an expected version under the unique (stream_id, stream_version) index, so two servers
-- that both advance one process cannot both commit the same step. A unit that holds an
-- entity's events is still refused whole when they are stale; a unit of records alone (a
-- trade's payment news) is decided from those records, at their versions. The epoch written
-- with a record stays the writer's epoch for its range, 0 where it holds none.

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
    -- The fence, on the events of entity streams (every category but the process records
    -- below). The lease rows of the ranges written are locked until COMMIT: a takeover,
    -- which locks them FOR UPDATE first, waits for this insert, and an insert after a
    -- takeover sees the new epoch. KEY SHARE, not SHARE: the owner's renewals (an UPDATE of
    -- the expiry alone) neither wait for its appends nor deadlock with them.
    PERFORM 1 FROM slice_leases
        WHERE slice_range IN (
            SELECT DISTINCT n.slice / 16 FROM new_events AS n
            WHERE n.category NOT IN ('transfer', 'trade', 'request')
        )
        ORDER BY slice_range
        FOR KEY SHARE;
    SELECT n.slice / 16 AS slice_range, n.epoch AS written, coalesce(l.epoch, 0) AS held
        INTO stale
        FROM new_events AS n LEFT JOIN slice_leases AS l ON l.slice_range = n.slice / 16
        WHERE n.epoch <> coalesce(l.epoch, 0)
            AND n.category NOT IN ('transfer', 'trade', 'request')
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
