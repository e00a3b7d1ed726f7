-- Pointex event store, schema version 2 (PostgreSQL): the same insert guard, checked on the
-- primary key instead of a transition table.
--
-- Version 1 checked each INSERT statement's rows through a transition table (REFERENCING NEW
-- TABLE), which copies every inserted row once more and was half of the database's work per
-- appended event. The rules are unchanged:
--   * rows are inserted only by a transaction holding the position lock (advisory lock key
--     8101810177782937601, POSITION_LOCK_KEY in appender.py), held until COMMIT;
--   * they go at head + 1 onwards without a gap.
-- Before the statement, the guard takes (or confirms) the lock and records the head in a
-- setting local to the transaction; after it, it reads the positions above that head off the
-- primary key. While the lock is held no other writer can add any, so they are this
-- statement's rows, and they must run from head + 1 without a hole.

DROP TRIGGER events_insert_guard ON events;
DROP FUNCTION events_check_insert();

CREATE FUNCTION events_before_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    -- Succeeds at once when this transaction holds the lock (the store's path), fails when
    -- another transaction holds it, and takes it otherwise, so that it is held to COMMIT.
    IF NOT pg_try_advisory_xact_lock(8101810177782937601) THEN
        RAISE EXCEPTION 'events are inserted only while holding the position lock'
            USING ERRCODE = 'lock_not_available';
    END IF;
    -- A new statement, hence (READ COMMITTED) a snapshot taken after the lock: every
    -- committed row is in it.
    PERFORM set_config(
        'pointex.head_before_insert',
        (SELECT coalesce(max(position), 0) FROM events)::text,
        true
    );
    RETURN NULL;
END
$$;

CREATE FUNCTION events_after_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    head bigint := current_setting('pointex.head_before_insert')::bigint;
    low bigint;
    high bigint;
    inserted bigint;
BEGIN
    SELECT min(position), max(position), count(*) INTO low, high, inserted
    FROM events WHERE position > head;
    IF inserted = 0 THEN
        RETURN NULL;
    END IF;
    -- A position at or below the head is a duplicate, which the primary key refuses.
    IF low <> head + 1 OR high - low + 1 <> inserted THEN
        RAISE EXCEPTION 'positions % to % do not follow the head % without a gap',
            low, high, head
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- Delivered at COMMIT only: wakes subscribers in other processes (payload: this schema).
    PERFORM pg_notify('pointex_events', current_schema());
    RETURN NULL;
END
$$;

CREATE TRIGGER events_insert_lock BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_before_insert();
CREATE TRIGGER events_insert_guard AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_after_insert();
