"""Slice ranges owned by lease, and the epochs that fence their appends (migration 0003).

Several command servers may share one PostgreSQL, each owning some of the `SLICE_RANGES`
ranges of slices (range r holds the slices `r * SLICES_PER_RANGE` onwards). A server owns a
range while it holds the range's row in `slice_leases`: it takes a range that is free or
whose lease expired, which raises the range's epoch by one, and renews its leases well
before they expire. Its store writes every event at the epoch it holds for the event's range
(`PostgresEventStore.slice_leases` hands `SliceLeases.epochs` to its appends), and the
database refuses an event whose epoch is not its range's epoch now (`FencedOff`). The
statements are in sql.py, with the store's others. The lease alone would not be safe: a
server paused past its lease (SIGSTOP, a VM stall, a partition) could append after another
took the range over. The epoch is what stops it, in the database, whatever the paused server
believes.

Every time comes from PostgreSQL's clock, so the servers' clocks play no part. The design,
its failure cases and what is not built yet are in docs/scale-out.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from pointex.server.eventstore.postgres import sql
from pointex.server.eventstore.postgres.appender import Lender
from pointex.server.slices import SLICE_RANGES, SLICES_PER_RANGE


def slice_range(slice_: int) -> int:
    """Return the range a slice belongs to."""
    return slice_ // SLICES_PER_RANGE


@dataclass(frozen=True, slots=True)
class Lease:
    """One range's lease as the database holds it."""

    slice_range: int
    owner_id: str
    epoch: int
    expires_in_ms: int  # Negative once expired: the range may be taken over.
    # host:port where other command servers reach the owner (empty: not reachable).
    owner_address: str = ""


class SliceLeases:
    """The ranges one command server holds, and the epoch its appends carry for each."""

    def __init__(self, connection: Lender, owner_id: str, lease_ms: int, address: str = "") -> None:
        """Hold leases as `owner_id`, each for `lease_ms` after it is taken or renewed.

        `address` (host:port) is where other command servers reach this one to forward the
        calls of its ranges; empty when they cannot.

        The owner id names one run of one server: a restarted server takes its ranges again
        under a new id, at a new epoch, since it cannot know what its earlier run appended.
        """
        assert owner_id, "an owner id names the server's run"
        assert lease_ms > 0, lease_ms
        self._connection = connection
        self.owner_id = owner_id
        self._lease_ms = lease_ms
        # Where other command servers reach this one; set once the server listens.
        self.address = address
        self._epochs = [0] * SLICE_RANGES
        # Set when the database refused an append by its epochs: a range changed hands.
        self.fenced = asyncio.Event()

    def epochs(self) -> list[int]:
        """Return the epoch held for each range, 0 where none is held (the store's `epochs`)."""
        return self._epochs

    def held(self) -> dict[int, int]:
        """Return each range held, with its epoch."""
        return {r: epoch for r, epoch in enumerate(self._epochs) if epoch}

    async def acquire(self, ranges: Sequence[int]) -> dict[int, int]:
        """Take each of `ranges` that is free or whose lease expired; return those taken.

        A range taken is at a new epoch: events written under an earlier one are refused from
        now on. Ranges held already, by this server or another, are left as they are.
        """
        assert all(0 <= r < SLICE_RANGES for r in ranges), ranges
        async with self._connection() as connection:
            rows = await connection.fetch(
                sql.ACQUIRE_LEASES,
                list(ranges),
                self.owner_id,
                self._lease_ms * 1000,
                self.address,
            )
        taken = {int(row["slice_range"]): int(row["epoch"]) for row in rows}
        for r, epoch in taken.items():
            self._epochs[r] = epoch
        return taken

    async def renew(self) -> set[int]:
        """Extend every lease still held; return the ranges lost (another server took them).

        A lost range's epoch is forgotten here: appends to it carry 0, which its new epoch
        refuses, as it refuses the old one.
        """
        held = self.held()
        if not held:
            return set()
        async with self._connection() as connection:
            rows = await connection.fetch(
                sql.RENEW_LEASES,
                list(held),
                self.owner_id,
                self._lease_ms * 1000,
                list(held.values()),
            )
        lost = set(held) - {int(row["slice_range"]) for row in rows}
        for r in lost:
            self._epochs[r] = 0
        return lost

    async def release(self, ranges: Sequence[int] | None = None) -> None:
        """Give up `ranges` (all held when None) at once, for another server to take."""
        held = self.held()
        given = [r for r in (held if ranges is None else ranges) if r in held]
        if not given:
            return
        for r in given:
            self._epochs[r] = 0
        async with self._connection() as connection:
            await connection.execute(
                sql.RELEASE_LEASES, given, self.owner_id, [held[r] for r in given]
            )

    async def join(self) -> None:
        """Be one of the members balancing the ranges until a lease from now (migration 0006)."""
        async with self._connection() as connection:
            await connection.execute(
                sql.JOIN_MEMBERS, self.owner_id, self.address, self._lease_ms * 1000
            )

    async def leave(self) -> None:
        """Stop being a member: the others share the ranges without this server at once."""
        async with self._connection() as connection:
            await connection.execute(sql.LEAVE_MEMBERS, self.owner_id)


async def read_members(connection: Lender) -> list[str]:
    """Return the owner ids of the live members balancing the ranges, in order."""
    async with connection() as lent:
        rows = await lent.fetch(sql.LIST_MEMBERS)
    return [str(row["member_id"]) for row in rows]


async def read_leases(connection: Lender) -> list[Lease]:
    """Return every range's lease, in range order (ranges never taken have none)."""
    async with connection() as lent:
        rows = await lent.fetch(sql.LIST_LEASES)
    return [
        Lease(
            int(row["slice_range"]),
            str(row["owner_id"]),
            int(row["epoch"]),
            (int(row["expires_at_us"]) - int(row["now_us"])) // 1000,
            str(row["owner_address"]),
        )
        for row in rows
    ]
