"""Hold the PostgreSQL read store's statements; every value is a bind parameter.

Tables are named without a schema (each connection's search_path is the store's schema) and
with ``{p}``, a generation's table prefix put in by `render` from an integer. A batch is
written with one statement per table, whose columns travel as arrays (``unnest``).
"""

from __future__ import annotations

from functools import cache

from pointex.server.query.readstore.migrations import META_TABLE, PREFIX_MARK, table_prefix
from pointex.server.query.readstore.rows import (
    IN_FLIGHT_COLUMNS,
    PENDING_ISSUE_COLUMNS,
    PROGRAM_RULES_COLUMNS,
)


@cache
def render(statement: str, generation: int) -> str:
    """Return `statement` for the tables of `generation`."""
    return statement.replace(PREFIX_MARK, table_prefix(generation))


TAKE_LOCK = "SELECT pg_advisory_xact_lock($1)"
SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)"
CREATE_META = f"""
CREATE TABLE IF NOT EXISTS {META_TABLE} (
    key    text NOT NULL PRIMARY KEY,
    value  text NOT NULL
)
"""
GET_META = f"SELECT value FROM {META_TABLE} WHERE key = $1"  # noqa: S608 - constant name.
SET_META = f"""
INSERT INTO {META_TABLE} (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""  # noqa: S608 - constant name.
LIST_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = $1"

CREATE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS {p}schema_migrations (
    version        integer NOT NULL PRIMARY KEY,
    applied_at_us  bigint  NOT NULL
)
"""
SELECT_MIGRATIONS = "SELECT version FROM {p}schema_migrations"
INSERT_MIGRATION = """
INSERT INTO {p}schema_migrations (version, applied_at_us)
VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
"""
DROP_TABLE = "DROP TABLE IF EXISTS {p}{table}"

CHECKPOINT = "SELECT position FROM {p}checkpoint"
ADVANCE_CHECKPOINT = """
UPDATE {p}checkpoint SET position = $2, events_applied = events_applied + $3
WHERE position = $1
"""

ACCOUNT_COLUMNS = (
    "account_id, kind, status, owner_partner_id, display_name, available_points, held_points, "
    "version, frozen_by_role, opened_at_us, updated_at_us, tier, pending_points, "
    "debt_floor_points"
)
ACCOUNTS_BY_ID = f"""
SELECT {ACCOUNT_COLUMNS} FROM {{p}}accounts WHERE account_id = ANY($1::text::text[])
"""  # noqa: S608 - constant column list.
# Each column as an array literal in a text parameter (pointex.server.pg_arrays).
UPSERT_ACCOUNTS = f"""
INSERT INTO {{p}}accounts ({ACCOUNT_COLUMNS})
SELECT * FROM unnest(
    $1::text::text[], $2::text::text[], $3::text::text[], $4::text::text[], $5::text::text[],
    $6::text::bigint[], $7::text::bigint[], $8::text::bigint[], $9::text::text[],
    $10::text::bigint[], $11::text::bigint[], $12::text::text[], $13::text::bigint[],
    $14::text::bigint[]
)
ON CONFLICT (account_id) DO UPDATE SET
    status = excluded.status,
    available_points = excluded.available_points,
    held_points = excluded.held_points,
    version = excluded.version,
    frozen_by_role = excluded.frozen_by_role,
    updated_at_us = excluded.updated_at_us,
    tier = excluded.tier,
    pending_points = excluded.pending_points,
    debt_floor_points = excluded.debt_floor_points
"""  # noqa: S608 - constant column list.
_ACCOUNT_FILTERS = """
    AND ($2::text[] IS NULL OR kind = ANY($2::text[]))
    AND ($3::text[] IS NULL OR status = ANY($3::text[]))
"""
LIST_ACCOUNTS = f"""
SELECT {ACCOUNT_COLUMNS} FROM {{p}}accounts
WHERE account_id > $1 {_ACCOUNT_FILTERS}
ORDER BY account_id LIMIT $4
"""  # noqa: S608 - constant fragments.
LIST_OWNER_ACCOUNTS = f"""
SELECT {ACCOUNT_COLUMNS} FROM {{p}}accounts
WHERE owner_partner_id = $5 AND account_id > $1 {_ACCOUNT_FILTERS}
ORDER BY account_id LIMIT $4
"""  # noqa: S608 - constant fragments.

MOVEMENT_COLUMNS = (
    "account_id, position, recorded_at_us, account_version, kind, available_delta_points, "
    "held_delta_points, available_points, held_points, counterparty_account_id, transfer_id, "
    "order_id, trade_id, memo, pending_delta_points, pending_points, fee_points"
)
# Movements and notifications are only ever added: written by binary COPY (no arrays to build).
MOVEMENTS_TABLE = "{p}movements"
_HISTORY_FILTERS = """
    AND ($3::text[] IS NULL OR kind = ANY($3::text[]))
    AND ($4::bigint IS NULL OR recorded_at_us >= $4)
    AND ($5::bigint IS NULL OR recorded_at_us < $5)
"""
HISTORY_ASCENDING = f"""
SELECT {MOVEMENT_COLUMNS} FROM {{p}}movements
WHERE account_id = $1 AND position > $2 {_HISTORY_FILTERS}
ORDER BY position LIMIT $6
"""  # noqa: S608 - constant fragments.
HISTORY_DESCENDING = f"""
SELECT {MOVEMENT_COLUMNS} FROM {{p}}movements
WHERE account_id = $1 AND position < $2 {_HISTORY_FILTERS}
ORDER BY position DESC LIMIT $6
"""  # noqa: S608 - constant fragments.

NOTIFICATION_COLUMNS = "position, idx, account_id, owner_partner_id, kind, occurred_at_us, body"
NOTIFICATIONS_TABLE = "{p}notifications"
_NOTIFICATION_FILTERS = """
    AND ($3::text[] IS NULL OR account_id = ANY($3::text[]))
    AND ($4::text[] IS NULL OR kind = ANY($4::text[]))
"""
NOTIFICATIONS = f"""
SELECT {NOTIFICATION_COLUMNS} FROM {{p}}notifications
WHERE (position, idx) > ($1, $2) {_NOTIFICATION_FILTERS}
ORDER BY position, idx LIMIT $5
"""  # noqa: S608 - constant fragments.
OWNER_NOTIFICATIONS = f"""
SELECT {NOTIFICATION_COLUMNS} FROM {{p}}notifications
WHERE owner_partner_id = $6 AND (position, idx) > ($1, $2) {_NOTIFICATION_FILTERS}
ORDER BY position, idx LIMIT $5
"""  # noqa: S608 - constant fragments.

IN_FLIGHT_BY_ID = f"""
SELECT {IN_FLIGHT_COLUMNS} FROM {{p}}in_flight WHERE process_id = ANY($1::text[])
"""  # noqa: S608 - constant column list.
INSERT_IN_FLIGHT = f"""
INSERT INTO {{p}}in_flight ({IN_FLIGHT_COLUMNS})
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
"""  # noqa: S608 - constant column list.
DELETE_IN_FLIGHT = "DELETE FROM {p}in_flight WHERE process_id = ANY($1::text[])"
ADD_TOTALS = """
UPDATE {p}totals SET
    minted_points = minted_points + $1,
    burned_points = burned_points + $2,
    expired_points = expired_points + $3
"""

PROGRAM_RULES = f"SELECT {PROGRAM_RULES_COLUMNS} FROM {{p}}program_rules"  # noqa: S608
SET_PROGRAM_RULES = f"""
INSERT INTO {{p}}program_rules (id, {PROGRAM_RULES_COLUMNS}) VALUES (1, $1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET
    version = excluded.version,
    body = excluded.body,
    set_at_us = excluded.set_at_us,
    position = excluded.position,
    fee_schedule_version = excluded.fee_schedule_version
"""  # noqa: S608 - constant column list.

PENDING_ISSUES_BY_ID = f"""
SELECT {PENDING_ISSUE_COLUMNS} FROM {{p}}pending_issues WHERE transfer_id = ANY($1::text[])
"""  # noqa: S608 - constant column list.
UPSERT_PENDING_ISSUES = f"""
INSERT INTO {{p}}pending_issues ({PENDING_ISSUE_COLUMNS})
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[]
)
ON CONFLICT (transfer_id) DO UPDATE SET amount_points = excluded.amount_points
"""  # noqa: S608 - constant column list.
DELETE_PENDING_ISSUES = "DELETE FROM {p}pending_issues WHERE transfer_id = ANY($1::text[])"

AUDIT_SUMS = """
SELECT
    (SELECT position FROM {p}checkpoint),
    (SELECT minted_points FROM {p}totals),
    (SELECT burned_points FROM {p}totals),
    (SELECT coalesce(sum(available_points), 0) FROM {p}accounts),
    (SELECT coalesce(sum(held_points), 0) FROM {p}accounts),
    (SELECT coalesce(sum(pending_points), 0) FROM {p}accounts),
    (SELECT coalesce(sum(amount_points), 0) FROM {p}in_flight),
    (SELECT count(*) FROM {p}accounts),
    (SELECT expired_points FROM {p}totals)
"""
# An account's total is available + held + pending, as the command side counts it against
# the ceiling ($1 in the ceiling statements). Available points may be below 0 down to the
# account's debt floor (0 unless a reversal under the debt policy left it in debt; the
# column's CHECK keeps it ≤ 0).
_NEGATIVE = "available_points < debt_floor_points OR held_points < 0 OR pending_points < 0"
_OVER_CEILING = "available_points + held_points + pending_points > $1"
AUDIT_NEGATIVE = f"""
SELECT {ACCOUNT_COLUMNS} FROM {{p}}accounts
WHERE {_NEGATIVE} ORDER BY account_id LIMIT $1
"""  # noqa: S608 - constant fragments.
AUDIT_NEGATIVE_COUNT = f"SELECT count(*) FROM {{p}}accounts WHERE {_NEGATIVE}"  # noqa: S608
AUDIT_OVER_CEILING = f"""
SELECT {ACCOUNT_COLUMNS} FROM {{p}}accounts
WHERE {_OVER_CEILING} ORDER BY account_id LIMIT $2
"""  # noqa: S608 - constant fragments.
AUDIT_OVER_CEILING_COUNT = f"SELECT count(*) FROM {{p}}accounts WHERE {_OVER_CEILING}"  # noqa: S608 - constant.
COUNT_DIFFERENCES = """
SELECT
    (SELECT count(*) FROM (SELECT * FROM {a}{table} EXCEPT SELECT * FROM {b}{table}) AS d)
    + (SELECT count(*) FROM (SELECT * FROM {b}{table} EXCEPT SELECT * FROM {a}{table}) AS d)
"""
