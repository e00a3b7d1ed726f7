-- Pointex on PostgreSQL with least-privilege roles: the roles and the schemas.
--
-- Run once, as a superuser, connected to the database Pointex uses:
--     psql -v ON_ERROR_STOP=1 -d pointex -f deploy/postgres-roles.sql
-- Then pointex_owner applies the migrations (`pointex-command-server migrate`) and runs
-- deploy/postgres-grants.sql. docs/operations.md explains each privilege.
--
-- No password is set here: give each role one with psql's \password, which sends it hashed,
-- or authenticate them by client certificate (pg_hba.conf).

-- Owns the event store's schema and tables and applies its migrations; no server uses it.
CREATE ROLE pointex_owner LOGIN;
-- The command server: appends and reads events, saves snapshots; no DDL.
CREATE ROLE pointex_command LOGIN;
-- The query server: owns the read store's schema, since a rebuild creates and drops tables
-- in it; it has no privilege on the event store (it reads the log through the EventFeed).
CREATE ROLE pointex_query LOGIN;

-- Only these roles (besides superusers and the database's owner) may connect, and nobody may
-- create temporary tables.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format(
        'GRANT CONNECT ON DATABASE %I TO pointex_owner, pointex_command, pointex_query',
        current_database()
    );
END
$$;
-- PostgreSQL 15 and later refuse this to PUBLIC already; earlier releases grant it.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- The event store: POINTEX_STORE_URL=postgresql://pointex_command@.../pointex?schema=pointex_events
CREATE SCHEMA pointex_events AUTHORIZATION pointex_owner;
-- The read store: POINTEX_READ_STORE_URL=postgresql://pointex_query@.../pointex?schema=pointex_read
CREATE SCHEMA pointex_read AUTHORIZATION pointex_query;
