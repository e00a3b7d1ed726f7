"""The market's open steps, as the recovery scan (recovery.py) finds and resumes them.

The log tells which steps are open:
- PointsHeld with no OrderPlaced or OrderRejected: the order is placed now (or rejected
  and its points released), and its request recorded, so the client's retry finds it;
- a SELL order's OrderCancelled or OrderRejected with no PointsReleased: released now;
- a trade neither settled nor cancelled: a confirmed one is settled, a pending one has
  its payment requested (if it was not) and its deadline watched, also a deadline that
  passed while the server was down.
"""

from __future__ import annotations

import contextlib
import logging

from pointex.server.command.app.market_handlers import MarketHandlers
from pointex.server.command.app.trade_processes import TradeProcesses
from pointex.server.command.edge.market_replies import placement_digest
from pointex.server.domain import errors
from pointex.server.domain.events import PointsReleased
from pointex.server.domain.market_events import (
    TradeCancelled,
    TradeCreated,
    TradeSettled,
)
from pointex.server.domain.processes import placement

log = logging.getLogger(__name__)


class OpenPlacements:
    """Orders held and not yet placed or rejected, and SELL quantities not yet released."""

    kind = "placement"
    types = frozenset(
        {"PointsHeld", "PointsReleased", "OrderPlaced", "OrderRejected", "OrderCancelled"}
    )

    def __init__(self, market: MarketHandlers) -> None:
        """Track open placements for `market` to finish."""
        self._market = market
        # Orders with a step due: order id -> (position where it opened, the placement).
        self._open: dict[str, tuple[int, placement.Placement]] = {}

    def see(self, position: int, event: object) -> None:
        """Follow an order's placement; it is open while a step is due."""
        if isinstance(event, PointsReleased) and event.trade_id:
            return  # A cancelled trade's release: the trade process's own step.
        assert isinstance(event, placement.PlacementEvent), event
        known = self._open.get(event.order_id)
        after = placement.evolve(known[1] if known else None, event)
        if after.stage is placement.Stage.DONE:
            self._open.pop(event.order_id, None)
        else:
            self._open[event.order_id] = (known[0] if known else position, after)

    def oldest(self) -> int | None:
        """Return where the oldest step found open opened."""
        return min((position for position, _ in self._open.values()), default=None)

    def open_count(self) -> int:
        """Return how many steps the scan found open."""
        return len(self._open)

    async def resume(self) -> None:
        """Place (or reject) every held order, and release what is due back."""
        for _, open_placement in self._open.values():
            step = placement.decide(open_placement, placement.Resumed())
            if isinstance(step, placement.Place):
                order = step.command
                # A refusal rejects the order and releases its points: the finished state.
                with contextlib.suppress(errors.DomainError):
                    await self._market.place_held(order, placement_digest(order), "", "")
            elif isinstance(step, placement.Release):
                await self._market.release(step.command)


class OpenTrades:
    """Trades neither settled nor cancelled."""

    kind = "trade"
    types = frozenset({"TradeCreated", "TradeSettled", "TradeCancelled"})

    def __init__(self, processes: TradeProcesses) -> None:
        """Track open trades for `processes` to drive on."""
        self._processes = processes
        self.trades: dict[str, tuple[int, TradeCreated]] = {}

    def see(self, position: int, event: object) -> None:
        """Open a trade at its creation; close it when settled or cancelled."""
        if isinstance(event, TradeCreated):
            self.trades[event.trade_id] = (position, event)
        else:
            assert isinstance(event, TradeSettled | TradeCancelled), event
            self.trades.pop(event.trade_id, None)

    def oldest(self) -> int | None:
        """Return where the oldest trade found open was created."""
        return min((p for p, _ in self.trades.values()), default=None)

    def open_count(self) -> int:
        """Return how many trades the scan found open."""
        return len(self.trades)

    async def resume(self) -> None:
        """Drive each open trade on: deliver a confirmed one, re-arm a pending one.

        A pending trade gets its deadline watched and its payment requested if it was not; a
        deadline that passed while the server was down cancels it.
        """
        for _, created in self.trades.values():
            self._processes.start(created)
