-- Pointex event store, schema version 4 (PostgreSQL): where each slice range's owner is
-- reached (docs/scale-out.md), and a fence that lets an owner renew its leases while it
-- appends.
--
-- A command server that does not own a call's range forwards the call to the range's owner,
-- at the address the owner wrote when it took the range: host:port, as other command servers
-- reach it. Empty for leases taken before this migration, and for owners that cannot be
-- reached: a call for such a range is refused as UNAVAILABLE until another server owns it.

ALTER TABLE slice_leases ADD COLUMN owner_address text NOT NULL DEFAULT '';

-- The insert guard of 0003, whose fence now takes KEY SHARE locks, in range order.
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
    -- The fence. The lease rows of the ranges written are locked until COMMIT: a takeover,
    -- which locks them FOR UPDATE first, waits for this insert, and an insert after a
    -- takeover sees the new epoch. KEY SHARE, not SHARE: the owner's renewals (an UPDATE of
    -- the expiry alone) neither wait for its appends nor deadlock with them.
    PERFORM 1 FROM slice_leases
        WHERE slice_range IN (SELECT DISTINCT n.slice / 16 FROM new_events AS n)
        ORDER BY slice_range
        FOR KEY SHARE;
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
