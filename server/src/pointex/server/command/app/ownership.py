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

A server may be given part of the ranges instead (`POINTEX_SLICE_RANGES`): servers given
disjoint parts split the entities between them, each serving the accounts of its part, and
servers given the same part share it as holder and standbys. Each keeps a map of every
range's owner (`find_owner_of`), read from the leases at each renewal, for the calls and the
steps that belong to another server's range.

Or the servers balance the ranges among themselves (`POINTEX_SLICE_RANGES=balanced`): each
is a member while it renews its row in `slice_members`, and every member computes the same
share of the ranges from the live members (`slices.shares`). At each renewal a member gives
up the ranges no longer its own (`Handover.give`: the work under way on them ends, its actors
and timers forget them, the leases are released) and takes the free ranges of its share
(`Handover.take`: the recovery scan finds their open processes, then they are served). A
member that joins or leaves moves ranges this way within a few renewals; one that dies
leaves its ranges to the others once its leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from pointex.server.elsewhere import Elsewhere
from pointex.server.eventstore.port import SLICE_RANGES, EventStore
from pointex.server.eventstore.postgres.leases import Lease, SliceLeases
from pointex.server.eventstore.postgres.store import PostgresEventStore
from pointex.server.slices import shares
from pointex.server.store_errors import StoreError

log = logging.getLogger(__name__)

_EVERY_RANGE = tuple(range(SLICE_RANGES))

# Reads every range's lease from the event store (none on a store without leases).
LeaseReader = Callable[[], Awaitable[list[Lease]]]


class Handover(Protocol):
    """What a server of balanced ranges does with the ranges it gives up and takes."""

    async def give(self, ranges: Sequence[int]) -> None:
        """Let the work under way on `ranges` end; forget their actors, transfers and timers.

        Called once they are no longer served here, before their leases are released.
        """

    async def take(self, ranges: Sequence[int], serve: Callable[[], None]) -> None:
        """Find the open processes of `ranges`, just taken; call `serve`, then resume them."""


def lease_reader(store: EventStore) -> LeaseReader:
    """Return the reader of `store`'s leases: PostgreSQL's table, or none on SQLite."""
    if isinstance(store, PostgresEventStore):
        return store.leases

    async def no_leases() -> list[Lease]:
        return []

    return no_leases


class SliceOwnership:
    """Take its slice ranges, keep them by renewing, and give them up at a clean stop.

    Until it holds them all, it routes calls to the server that does.
    """

    def __init__(
        self,
        store: PostgresEventStore,
        lease_ms: int,
        server_name: str,
        ranges: Sequence[int] = _EVERY_RANGE,
        *,
        balanced: bool = False,
    ) -> None:
        """Hold the leases of `store` for `lease_ms` each, as one run of `server_name`.

        `ranges`: the slice ranges it takes (every one by default). `balanced`: it takes its
        share of them among the live members instead, and hands ranges over (`handover`).
        """
        self.balanced = balanced
        self._served: set[int] = set()  # Balanced: the ranges held, recovered and served.
        self._taking: set[asyncio.Task[None]] = set()  # Balanced: recoveries under way.
        self._handover: Handover | None = None
        # Counts since start, read by the metrics at each scrape (balanced ranges).
        self.ranges_given = 0
        self.ranges_taken = 0
        self.owner_id = f"{server_name}-{secrets.token_hex(6)}"
        self.ranges = tuple(sorted(ranges))
        # Each range's owner's address, as the leases said at the last look (none: "").
        self._owners = [""] * SLICE_RANGES
        self._looking: asyncio.Future[None] | None = None  # A look at the leases under way.
        self._looked_at_s = -1e9  # When the last look asked for by a call ended.
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
        # Run after each renewal (with part of the ranges: the rules other servers changed).
        self._every_round: Callable[[], Awaitable[None]] | None = None

    @property
    def ranges_held(self) -> int:
        """Return how many slice ranges this server holds now."""
        return len(self._leases.held())

    def every_round(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` after each renewal while the ranges are held (its StoreError is logged)."""
        self._every_round = work

    def advertise(self, address: str) -> None:
        """Write `address` (host:port) in the leases taken from now on, for others to forward."""
        self._leases.address = address

    @property
    def lease_ms(self) -> int:
        """Return how long each lease lasts unless renewed, in milliseconds."""
        return self._lease_ms

    @property
    def split(self) -> bool:
        """Tell whether this server takes part of the ranges only (others own the rest)."""
        return self.balanced or len(self.ranges) < SLICE_RANGES

    def hand_over_with(self, handover: Handover) -> None:
        """Give and take balanced ranges through `handover` (set before `take_all`)."""
        self._handover = handover

    def holds(self, slice_range: int) -> bool:
        """Tell whether this server holds the range's lease now."""
        return self._leases.epochs()[slice_range] != 0

    def serves(self, slice_range: int) -> bool:
        """Tell whether the range's accounts are served here: held (balanced: and recovered)."""
        if self.balanced:
            return slice_range in self._served
        return self.holds(slice_range)

    async def find_owner_of(self, slice_range: int, moved_from: str = "") -> str:
        """Return the range's owner's address, reading the leases again when none is known.

        Concurrent callers share one read, and a read is not repeated within a tenth of the
        lease (an owner that just took a range is found; a range without one is not read for
        on every call). `moved_from`: the server at that address answered that the range is
        not its own (it moved since the last look): the leases are read again at once, and
        "" is returned if they still name it.
        """
        address = self._owners[slice_range]
        if address and address != moved_from:
            return address
        if self._looking is None:
            if not moved_from and time.monotonic() - self._looked_at_s < self._lease_ms / 10_000:
                return ""
            self._looking = asyncio.ensure_future(self._look_again())
        await asyncio.shield(self._looking)
        address = self._owners[slice_range]
        return "" if address == moved_from else address

    async def _look_again(self) -> None:
        try:
            await self._find_owner()
        finally:
            self._looked_at_s = time.monotonic()
            self._looking = None

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
        """Serve calls here from now on: its ranges are held and recovered."""
        assert self.balanced or self.ranges_held == len(self.ranges), self.ranges_held
        self._serving = True
        await self._routing_changed()

    async def _routing_changed(self) -> None:
        routable = self.route() != ""
        if routable != self._routable:
            self._routable = routable
            if self._tell_routable is not None:
                await self._tell_routable(routable)

    async def take_all(self) -> None:
        """Take its ranges, waiting while another server holds some; then keep them.

        Balanced, it joins the members and takes what of its share is free now, without
        waiting: the rest comes as the others give it up.
        """
        if self.balanced:
            await self._join()
            return
        waiting_logged = False
        while True:
            try:
                await self._take_missing()
            except StoreError as error:  # A deadlock with an append, the database away.
                log.warning("slice ranges not taken: %s", error)
            missing = len(self.ranges) - self.ranges_held
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
        log.info(
            "holding its slice ranges",
            extra={"owner_id": self.owner_id, "ranges_held": self.ranges_held},
        )
        self._owner_address = ""
        await self._find_owner()  # The other ranges' owners, for what goes there.
        await self._routing_changed()  # Recovering: nowhere, until `serve`.
        self._task = asyncio.create_task(self._keep(), name="slice-leases")

    async def _join(self) -> None:
        while True:
            try:
                await self._leases.join()
                await self._rebalance()
                break
            except StoreError as error:  # The database away: the next round tries again.
                log.warning("slice ranges not balanced: %s", error)
            await asyncio.sleep(self._renew_every_s)
        self._owner_address = ""
        await self._routing_changed()
        self._task = asyncio.create_task(self._keep(), name="slice-leases")
        await self.settled()  # The ranges free at once are recovered before it serves.
        log.info(
            "balancing the slice ranges",
            extra={"owner_id": self.owner_id, "ranges_held": self.ranges_held},
        )

    async def _rebalance(self) -> None:
        """Give up the ranges no longer this member's share, and take the free ones that are."""
        assert self._handover is not None, "a balanced server hands ranges over"
        members = await self._store.members()
        share = shares(sorted({*members, self.owner_id})).get(self.owner_id, ())
        self.ranges = share
        await self._find_owner()
        held = self._leases.held()
        given = sorted(set(held) - set(share))
        if given:
            log.info("giving slice ranges up", extra={"ranges": given, "owner_id": self.owner_id})
            self._served.difference_update(given)
            await self._handover.give(given)
            await self._leases.release(given)
            self._served.difference_update(given)  # Should a recovery have ended meanwhile.
            self.ranges_given += len(given)
            self._log_served("slice ranges given up", given)
        taken = sorted(await self._leases.acquire([r for r in share if r not in held]))
        if taken:
            log.info("taking slice ranges", extra={"ranges": taken, "owner_id": self.owner_id})
            # Recovered in a task of its own: a long scan must not hold the renewals back.
            self._taking.add(asyncio.create_task(self._take(taken), name="take-slice-ranges"))

    async def _take(self, taken: list[int]) -> None:
        """Recover the ranges just taken, then serve them; give them back if the scan fails."""
        assert self._handover is not None, "a balanced server hands ranges over"

        def serve() -> None:
            self._served.update(r for r in taken if self.holds(r))

        try:
            await self._handover.take(taken, serve)
        except StoreError as error:
            if self._served.isdisjoint(taken):  # Not served yet: a later round takes them.
                log.warning("slice ranges taken but not recovered: %s", error)
                with contextlib.suppress(StoreError):
                    await self._leases.release(taken)
                return
            # Served, and resuming what was open failed: the next recovery resumes the rest.
            log.warning("slice ranges served, not all that was open resumed: %s", error)
        except Elsewhere:  # Given up again before recovered: their next owner resumes them.
            log.info("slice ranges moved on while recovered", extra={"ranges": taken})
            return
        except Exception:  # A bug: logged with its trace; the next recovery finds what is open.
            log.exception("slice ranges taken but not recovered", extra={"ranges": taken})
            return
        finally:
            self._taking.discard(asyncio.current_task())
        self.ranges_taken += len(taken)
        self._log_served("serving slice ranges taken", taken)

    def _log_served(self, what: str, ranges: list[int]) -> None:
        log.info(
            what,
            extra={"owner_id": self.owner_id, "ranges": ranges, "ranges_served": len(self._served)},
        )

    async def settled(self) -> None:
        """Wait for the recoveries of the ranges taken so far to end (balanced ranges)."""
        while self._taking:
            await asyncio.gather(*self._taking, return_exceptions=True)

    async def stop(self) -> None:
        """Stop renewing and give every range up at once, for a standby to take."""
        self._serving = False
        self._served.clear()
        for taking in self._taking:
            taking.cancel()
        await asyncio.gather(*self._taking, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            if self.balanced:
                await self._leases.leave()
            await self._leases.release()
        except StoreError as error:  # They expire on their own.
            log.warning("slice ranges not released: %s", error)

    @property
    def _renew_every_s(self) -> float:
        return self._lease_ms / 3 / 1000

    async def _take_missing(self) -> None:
        held = self._leases.held()
        missing = [r for r in self.ranges if r not in held]
        if missing:
            await self._leases.acquire(missing)

    async def _find_owner(self) -> None:
        """Note each range's owner, and where this server's calls go while it waits.

        While it waits, its calls go to the one server that holds all of its ranges; with a
        part of the ranges, to any live owner when none does (it forwards them on by range).
        """
        try:
            leases = await self._store.leases()
        except StoreError as error:  # The database is away: the next round looks again.
            log.warning("slice range owners not read: %s", error)
            return
        owners = [""] * SLICE_RANGES
        for lease in leases:
            if lease.expires_in_ms > 0 and lease.owner_id != self.owner_id:
                owners[lease.slice_range] = lease.owner_address
        self._owners = owners
        if self.ranges_held:
            return  # Its calls are served here (or nowhere while it recovers).
        mine = {owners[r] for r in self.ranges}
        address = next(iter(mine)) if len(mine) == 1 else ""
        if not address and self.split:
            address = next((a for a in owners if a), "")
        if address != self._owner_address:
            log.info("forwarding calls", extra={"owner_address": address})
            self._owner_address = address
            await self._routing_changed()

    async def _keep(self) -> None:
        fenced = self._leases.fenced
        while True:
            # A third of the way through the leases, or at once when an append was refused
            # by its epochs: the ranges it wrote changed hands. Balanced, three times as
            # often while part of its share is not held yet: a range given up is taken soon.
            wait_s = self._renew_every_s
            if self.balanced and not set(self.ranges) <= set(self._leases.held()):
                wait_s /= 3
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fenced.wait(), wait_s)
            fenced.clear()
            try:
                lost = await self._leases.renew()
            except StoreError as error:  # The database is away: the next round retries.
                log.warning("slice leases not renewed: %s", error)
                continue
            if self.balanced and not lost:
                try:
                    await self._leases.join()
                    await self._rebalance()
                except StoreError as error:  # The next round balances again.
                    log.warning("slice ranges not balanced: %s", error)
            elif self.split:
                await self._find_owner()
            if self._every_round is not None:
                try:
                    await self._every_round()
                except StoreError as error:  # The next round does it again.
                    log.warning("work after the renewal not done: %s", error)
            if lost:
                self.ranges_lost += len(lost)
                self._serving = False
                self._served.clear()
                log.error(
                    "slice ranges taken over by another server; stopping, as its actors and "
                    "processes are no longer this server's",
                    extra={"ranges": sorted(lost), "owner_id": self.owner_id},
                )
                self.lost.set()
                await self._routing_changed()
                return
