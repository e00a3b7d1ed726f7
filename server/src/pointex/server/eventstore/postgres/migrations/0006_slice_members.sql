-- Pointex event store, schema version 6 (PostgreSQL): the command servers that balance the
-- slice ranges among themselves (docs/scale-out.md, "Ranges balanced among the servers").
--
-- A command server started with `POINTEX_SLICE_RANGES=balanced` is a member while its row
-- here has not expired: it writes the row when it starts, renews it with its leases, and
-- deletes it at a clean stop. Each member reads the live members and computes the same
-- share of the 64 ranges for each of them; it gives up the ranges no longer its own and
-- takes the ranges that are, through `slice_leases`, whose epochs still fence every append.
-- The rows decide nothing on their own: a member missing from the table at a moment only
-- moves ranges, it never lets two servers write one range.

CREATE TABLE slice_members (
    member_id      text   NOT NULL,
    member_address text   NOT NULL DEFAULT '',
    expires_at_us  bigint NOT NULL,
    CONSTRAINT slice_members_pkey PRIMARY KEY (member_id),
    CONSTRAINT slice_members_id_present CHECK (member_id <> '')
);
