"""Decide whether a database's settings keep acknowledged commits, and refuse when not.

SPEC §3: the command server refuses to start on PostgreSQL with ``synchronous_commit`` or
``fsync`` off, or on SQLite below ``synchronous=FULL``, unless an override is given and
logged. The checks are pure functions, so they are tested without a misconfigured server.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pointex.server.eventstore.port import DurabilityUnsafe

# SQLite's PRAGMA synchronous levels: OFF=0, NORMAL=1, FULL=2, EXTRA=3.
SQLITE_SYNCHRONOUS_LEVELS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
SQLITE_SYNCHRONOUS_FULL = SQLITE_SYNCHRONOUS_LEVELS["FULL"]


def postgres_durability_problems(synchronous_commit: str, fsync: str) -> list[str]:
    """Return what in PostgreSQL's settings could lose an acknowledged commit.

    ``synchronous_commit=local`` is accepted: it still flushes the primary's WAL, which is
    what a single-node deployment promises. ``off`` acknowledges before the flush.
    """
    problems: list[str] = []
    if synchronous_commit.strip().lower() == "off":
        problems.append("PostgreSQL synchronous_commit is off")
    if fsync.strip().lower() != "on":
        problems.append(f"PostgreSQL fsync is {fsync}")
    return problems


def sqlite_durability_problems(synchronous_level: int) -> list[str]:
    """Return what in SQLite's settings could lose an acknowledged commit.

    In WAL mode, ``synchronous=NORMAL`` may lose the last commits on power loss; FULL
    syncs the WAL at every commit.
    """
    if synchronous_level < SQLITE_SYNCHRONOUS_FULL:
        return [f"SQLite synchronous is {synchronous_level}, below FULL (2)"]
    return []


def enforce_durability(
    problems: Sequence[str], *, allow_unsafe_durability: bool, logger: logging.Logger
) -> None:
    """Raise when the settings are unsafe, unless overridden; log the override.

    Raises:
        DurabilityUnsafe: There are problems and no override was given.
    """
    if not problems:
        return
    summary = "; ".join(problems)
    if not allow_unsafe_durability:
        raise DurabilityUnsafe(
            f"refusing to open the event store: {summary}; acknowledged commits could be "
            "lost (override with allow_unsafe_durability, for tests and benchmarks only)"
        )
    logger.warning("event store opened with UNSAFE durability (override given): %s", summary)
