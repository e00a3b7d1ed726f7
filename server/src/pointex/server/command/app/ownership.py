"""Keeping the slice ranges a command server owns by lease (docs/scale-out.md).

With `POINTEX_SLICE_LEASE_MS` set, the command server owns every slice range through a lease
in the PostgreSQL event store (eventstore/postgres/leases.py). It takes all of them before
it recovers or takes a command, and renews them a third of the way through each lease. While
another server holds them, it is a standby: it waits, and forwards every call to the server
that holds them (`route`, read by grpc_edge/forwarding.py), at the address that server wrote
in its leases.

The store writes each event at the epoch held for its range, and the database refuses it
once the range changed hands: a server paused past its lease, which another server has since
replaced, cannot commit anything when it resumes. At its next renewal (at once, when an
append was refused so) it finds the ranges lost and stops (fail-stop): its actors, open
processes and timers describe a past it no longer owns, and a fresh run, started by its
supervisor, becomes a standby with none of it.

Owning every range is the first step: one active server and standbys that take over when it
stops renewing. Ranges split across several active servers need each call routed to its
range's owner and a range's processes recovered when it changes hands, which are not built
yet.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    """Take every slice range, keep it by renewing, and give it up at a clean stop.

    Until it holds every range, it routes calls to the server that does.
    """

    def __init__(self, store: PostgresEventStore, lease_ms: int, server_name: str) -> None:
        """Hold the leases of `store` for `lease_ms` each, as one run of `server_name`."""
        self.owner_id = f"{server_name}-{secrets.token_hex(6)}"
        self._store = store
        self._lease_ms = lease_ms
        self._leases: SliceLeases = store.slice_leases(self.owner_id, lease_ms)
        self._task: asyncio.Task[None] | None = None
        # Where calls go while this server does not serve them (empty: nowhere known).
        self._owner_address = ""
        self._serving = False  # Holding every range, and recovered.
        # Told whether calls can go anywhere now (here or to the owner), when that changes.
        self._tell_routable: Callable[[bool], Awaitable[None]] | None = None
        self._routable = False
        # Set when ranges were taken over: the server stops (see the module's docstring).
        self.lost = asyncio.Event()
        # Counts since start, read by the metrics at each scrape.
        self.ranges_lost = 0

    @property
    def ranges_held(self) -> int:
        """Return how many slice ranges this server holds now."""
        return len(self._leases.held())

    def advertise(self, address: str) -> None:
        """Write `address` (host:port) in the leases taken from now on, for others to forward."""
        self._leases.address = address

    def route(self) -> str | None:
        """Return where a call goes: None, served here; an address; "", nowhere now."""
        if self._serving:
            return None
        if self.ranges_held or self.lost.is_set():
            return ""  # Recovering the ranges just taken, or stopping after losing them.
        return self._owner_address

    def watch_routable(self, tell: Callable[[bool], Awaitable[None]]) -> None:
        """Tell `tell` whether calls can go anywhere now (its health), whenever that changes."""
        self._tell_routable = tell

    async def serve(self) -> None:
        """Serve calls here from now on: every range is held and recovered."""
        assert self.ranges_held == SLICE_RANGES, self.ranges_held
        self._serving = True
        await self._routing_changed()

    async def _routing_changed(self) -> None:
        routable = self.route() != ""
        if routable != self._routable:
            self._routable = routable
            if self._tell_routable is not None:
                await self._tell_routable(routable)

    async def take_all(self) -> None:
        """Take every range, waiting while another server holds some; then keep them."""
        waiting_logged = False
        while True:
            try:
                await self._take_missing()
            except StoreError as error:  # A deadlock with an append, the database away.
                log.warning("slice ranges not taken: %s", error)
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
                try:
                    await self._leases.release()
                except StoreError as error:  # They expire on their own.
                    log.warning("slice ranges not released: %s", error)
            await self._find_owner()
            await asyncio.sleep(self._renew_every_s * random.uniform(0.5, 1.5))  # noqa: S311
        log.info("holding every slice range", extra={"owner_id": self.owner_id})
        self._owner_address = ""
        await self._routing_changed()  # Recovering: nowhere, until `serve`.
        self._task = asyncio.create_task(self._keep(), name="slice-leases")

    async def stop(self) -> None:
        """Stop renewing and give every range up at once, for a standby to take."""
        self._serving = False
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
            await self._leases.acquire(missing)

    async def _find_owner(self) -> None:
        """Note the address of the one server that holds every range (empty: none does)."""
        try:
            leases = await self._store.leases()
        except StoreError as error:  # The database is away: the next round looks again.
            log.warning("slice range owners not read: %s", error)
            return
        live = {
            (lease.owner_id, lease.owner_address) for lease in leases if lease.expires_in_ms > 0
        }
        whole = len(leases) == SLICE_RANGES and len(live) == 1
        owner_id, address = next(iter(live)) if whole else ("", "")
        if owner_id == self.owner_id:
            address = ""
        if address != self._owner_address:
            log.info("forwarding calls", extra={"owner_id": owner_id, "owner_address": address})
            self._owner_address = address
            await self._routing_changed()

    async def _keep(self) -> None:
        fenced = self._leases.fenced
        while True:
            # A third of the way through the leases, or at once when an append was refused
            # by its epochs: the ranges it wrote changed hands.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fenced.wait(), self._renew_every_s)
            fenced.clear()
            try:
                lost = await self._leases.renew()
            except StoreError as error:  # The database is away: the next round retries.
                log.warning("slice leases not renewed: %s", error)
                continue
            if lost:
                self.ranges_lost += len(lost)
                self._serving = False
                log.error(
                    "slice ranges taken over by another server; stopping, as its actors and "
                    "processes are no longer this server's",
                    extra={"ranges": sorted(lost), "owner_id": self.owner_id},
                )
                self.lost.set()
                await self._routing_changed()
                return
