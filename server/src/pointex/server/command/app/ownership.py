"""Keeping the slice ranges a command server owns by lease (docs/scale-out.md).

With `POINTEX_SLICE_LEASE_MS` set, the command server owns every slice range through a lease
in the PostgreSQL event store (eventstore/postgres/leases.py). It takes all of them before
it recovers or takes a command, waiting as a standby while another server holds them, and
then renews them a third of the way through each lease, taking again any that it lost and
that expired since. The store writes each event at the epoch held for its range, and the
database refuses it once the range changed hands: a server paused past its lease, which
another server has since replaced, cannot commit anything when it resumes. Its calls answer
UNAVAILABLE until it holds its ranges again.

Owning every range is the first step: one active server and standbys that take over when it
stops renewing. Ranges split across several active servers need calls routed to each
range's owner, which is not built yet.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable

from pointex.server.eventstore.port import EventStore
from pointex.server.eventstore.postgres.leases import SLICE_RANGES, Lease, SliceLeases
from pointex.server.eventstore.postgres.store import PostgresEventStore
from pointex.server.store_errors import StoreError

log = logging.getLogger(__name__)

_EVERY_RANGE = tuple(range(SLICE_RANGES))

# Reads every range's lease from the event store (none on a store without leases).
LeaseReader = Callable[[], Awaitable[list[Lease]]]


def lease_reader(store: EventStore) -> LeaseReader:
    """Return the reader of `store`'s leases: PostgreSQL's table, or none on SQLite."""
    if isinstance(store, PostgresEventStore):
        return store.leases

    async def no_leases() -> list[Lease]:
        return []

    return no_leases


class SliceOwnership:
    """Take every slice range, keep it by renewing, and give it up at a clean stop."""

    def __init__(self, store: PostgresEventStore, lease_ms: int, server_name: str) -> None:
        """Hold the leases of `store` for `lease_ms` each, as one run of `server_name`."""
        self.owner_id = f"{server_name}-{secrets.token_hex(6)}"
        self._lease_ms = lease_ms
        self._leases: SliceLeases = store.slice_leases(self.owner_id, lease_ms)
        self._task: asyncio.Task[None] | None = None
        # Told whether the server holds every range, each time that changes (its health).
        self._on_change: Callable[[bool], Awaitable[None]] | None = None
        self._holding_all = False
        # Counts since start, read by the metrics at each scrape.
        self.ranges_lost = 0

    @property
    def ranges_held(self) -> int:
        """Return how many slice ranges this server holds now."""
        return len(self._leases.held())

    def on_change(self, tell: Callable[[bool], Awaitable[None]]) -> None:
        """Tell `tell` whether this server holds every range, whenever that changes.

        The command server reports NOT_SERVING while it does not: its appends to the missing
        ranges are refused, so a load balancer should send calls to the server that holds
        them.
        """
        self._on_change = tell

    async def take_all(self) -> None:
        """Take every range, waiting while another server holds some; then keep them."""
        waiting_logged = False
        while True:
            await self._take_missing()
            missing = SLICE_RANGES - self.ranges_held
            if not missing:
                break
            if not waiting_logged:
                log.warning(
                    "waiting for slice ranges another server holds",
                    extra={"ranges_missing": missing, "owner_id": self.owner_id},
                )
                waiting_logged = True
            if self.ranges_held:
                # Another standby took the rest as the same leases expired: both give up what
                # they took, and wait a while of their own, so that one of them takes all.
                await self._leases.release()
            await asyncio.sleep(self._renew_every_s * random.uniform(0.5, 1.5))  # noqa: S311
        log.info("holding every slice range", extra={"owner_id": self.owner_id})
        self._holding_all = True
        self._task = asyncio.create_task(self._keep(), name="slice-leases")

    async def stop(self) -> None:
        """Stop renewing and give every range up at once, for a standby to take."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self._leases.release()
        except StoreError as error:  # They expire on their own.
            log.warning("slice ranges not released: %s", error)

    @property
    def _renew_every_s(self) -> float:
        return self._lease_ms / 3 / 1000

    async def _take_missing(self) -> None:
        held = self._leases.held()
        missing = [r for r in _EVERY_RANGE if r not in held]
        if missing:
            taken = await self._leases.acquire(missing)
            if taken and held:
                log.info("took slice ranges back", extra={"ranges": sorted(taken)})

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._renew_every_s)
            try:
                lost = await self._leases.renew()
                if lost:
                    self.ranges_lost += len(lost)
                    log.error(
                        "slice ranges taken over by another server; their appends are "
                        "refused until they are held again",
                        extra={"ranges": sorted(lost), "owner_id": self.owner_id},
                    )
                await self._take_missing()
            except StoreError as error:  # The database is away: the next round retries.
                log.warning("slice leases not renewed: %s", error)
            holding_all = self.ranges_held == SLICE_RANGES
            if holding_all != self._holding_all:
                self._holding_all = holding_all
                if self._on_change is not None:
                    await self._on_change(holding_all)
