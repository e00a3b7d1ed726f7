"""What a command server of balanced slice ranges does with the ranges it gives up and takes.

With `POINTEX_SLICE_RANGES=balanced` the servers share the ranges among themselves, and move
them when one joins or leaves (ownership.py). A range given up is no longer served here from
the moment it is handed over: its calls go to its next owner, its actors finish what they
are committing and are dropped, and the transfers this server drove from its accounts, the
issues pending on them and their lots' deadlines are forgotten, for the next owner's scan
finds them all in the log. A range taken is scanned for what is open on its accounts, from
the ranges' own checkpoints, then served, and what was open is resumed; the ranges'
checkpoints are saved again (recovery.py).

The markets of a range move with it: the giver drops their actors (the trades it drives go
on through the markets' next owner, which finds them open too: two drivers of one trade
are kept apart by its record's version), and the taker records their configuration and
resumes their open trades, and the open placements of the range's accounts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pointex.server.actors.runtime import AccountActors
from pointex.server.command.app.activations import PendingActivations
from pointex.server.command.app.expiry import LotExpiry
from pointex.server.command.app.handlers import CommandHandlers
from pointex.server.command.app.market_handlers import MarketHandlers
from pointex.server.command.app.market_recovery import OpenPlacements, OpenTrades
from pointex.server.command.app.recovery import OpenSteps, recover_ranges
from pointex.server.domain import streams
from pointex.server.eventstore.port import EventStore
from pointex.server.slices import range_of

log = logging.getLogger(__name__)


def account_range(account_id: str) -> int:
    """Return the slice range of an account."""
    return range_of(streams.account(account_id))


def accounts_in(ranges: Sequence[int]) -> Callable[[str], bool]:
    """Return whether an account lies in one of `ranges`."""
    among = frozenset(ranges)
    return lambda account_id: account_range(account_id) in among


def markets_in(ranges: Sequence[int]) -> Callable[[str], bool]:
    """Return whether a market lies in one of `ranges`."""
    among = frozenset(ranges)
    return lambda market_id: range_of(streams.market(market_id)) in among


@dataclass(frozen=True, slots=True)
class RangeHandover:
    """Gives ranges up and takes them for one command server (ownership.Handover)."""

    store: EventStore
    actors: AccountActors
    handlers: CommandHandlers
    activations: PendingActivations
    expiry: LotExpiry
    market: MarketHandlers[Any, Any]
    drain_s: float  # How long the actors of a range given up may take to finish.

    async def give(self, ranges: Sequence[int]) -> None:
        """Let the actors of `ranges` finish, then forget their accounts' transfers and timers."""
        among = accounts_in(ranges)
        busy = await self.actors.drain(among, self.drain_s)
        forgotten = self.handlers.forget(among)
        self.activations.forget(among)
        self.expiry.forget(among)
        self.market.markets.forget(markets_in(ranges))
        log.info(
            "slice ranges handed over",
            extra={"ranges": list(ranges), "actors_busy": busy, "transfers_open": forgotten},
        )

    async def take(self, ranges: Sequence[int], serve: Callable[[], None]) -> None:
        """Find what is open on the accounts of `ranges`, `serve` them, resume what was open."""
        among = accounts_in(ranges)
        kinds: tuple[OpenSteps, ...] = (
            self.handlers.open_steps(among),
            OpenPlacements(self.market, among),
            OpenTrades(self.market.processes, markets_in(ranges)),
            self.activations.tracker(among),
            self.expiry.tracker(among),
        )
        found = await recover_ranges(self.store, kinds, ranges, account_range, serve)
        await self.market.configure(markets_in(ranges))
        log.info("slice ranges taken over", extra={"ranges": list(ranges), "open": found})
