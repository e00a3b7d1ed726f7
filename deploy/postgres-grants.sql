-- Pointex on PostgreSQL with least-privilege roles: the command server's grants.
--
-- Run after every `pointex-command-server migrate`, as pointex_owner or a superuser,
-- connected to the database Pointex uses; running it again changes nothing:
--     psql -v ON_ERROR_STOP=1 -d pointex -f deploy/postgres-grants.sql
-- A release whose migration adds a table the command server uses adds its grant here.

GRANT USAGE ON SCHEMA pointex_events TO pointex_command;
-- At start the server checks that every migration it knows is applied.
GRANT SELECT ON pointex_events.pointex_schema_migrations TO pointex_command;
-- The log: read and append, nothing else. UPDATE, DELETE and TRUNCATE fail for want of the
-- privilege, and the table's triggers refuse them to every role, its owner included.
GRANT SELECT, INSERT ON pointex_events.events TO pointex_command;
-- A large group commit in one call (migrations 0002, 0003); it runs with the caller's
-- privileges.
GRANT EXECUTE ON FUNCTION pointex_events.append_events(
    text[], bigint[], integer[], text[], integer[], bytea[], bytea[], text[], bigint[], bigint[]
) TO pointex_command;
-- Slice-range leases (migrations 0003, 0004): taken (INSERT, and SELECT FOR UPDATE of the
-- expired rows), renewed and given up (UPDATE); the insert guard locks the rows of the
-- ranges an append writes (FOR KEY SHARE needs UPDATE).
GRANT SELECT, INSERT, UPDATE ON pointex_events.slice_leases TO pointex_command;
-- The members that balance the ranges (migration 0006): joined, renewed, left.
GRANT SELECT, INSERT, UPDATE, DELETE ON pointex_events.slice_members TO pointex_command;
-- Snapshots cache what the log says; saving one is an upsert (INSERT ... ON CONFLICT DO
-- UPDATE), which needs UPDATE. The server never deletes one.
GRANT SELECT, INSERT, UPDATE ON pointex_events.snapshots TO pointex_command;
