"""The market's open steps, as the recovery scan (recovery.py) finds and resumes them.

The log tells which steps are open:
- PointsHeld or BuyReserved with no OrderPlaced or OrderRejected: the order is placed now
  (or rejected and released), and its request recorded, so the client's retry finds it;
- an OrderCancelled or OrderRejected with no PointsReleased (SELL) or BuyReleased (BUY), or
  an IOC remainder not yet released: released now;
- a trade neither settled nor cancelled: a confirmed one is settled, a pending one has
  its payment requested (if it was not) and its deadline watched, also a deadline that
  passed while the server was down;
- a trade cancelled with no BuyReleased for it: the buyer's release is made now.

With the slice ranges split across command servers, a server tracks the placements of its
accounts (it holds and releases them) and the trades of its markets (it drives them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pointex.server.command.app.market_handlers import MarketHandlers
from pointex.server.command.app.trade_processes import TradeProcesses
from pointex.server.domain.events import BuyReleased, PointsReleased
from pointex.server.domain.market_events import (
    RefundDeclined,
    RefundRequested,
    TradeCancelled,
    TradeCreated,
    TradeRefunded,
    TradeSettled,
)
from pointex.server.domain.processes import placement
from pointex.server.domain.processes import trade as trade_process

log = logging.getLogger(__name__)


class OpenPlacements:
    """Orders held and not yet placed or rejected, and quantities not yet released."""

    kind = "placement"
    types = frozenset(
        {
            "PointsHeld",
            "BuyReserved",
            "PointsReleased",
            "BuyReleased",
            "OrderPlaced",
            "OrderRejected",
            "OrderCancelled",
        }
    )

    def __init__(
        self, market: MarketHandlers[Any, Any], among: Callable[[str], bool] | None = None
    ) -> None:
        """Track open placements for `market` to finish: of the accounts `among` (None: all)."""
        self._among = among
        self._market = market
        # Orders with a step due: order id -> (position where it opened, the placement).
        self._open: dict[str, tuple[int, placement.Placement]] = {}

    def see(self, position: int, event: object) -> None:
        """Follow an order's placement; it is open while a step is due."""
        if isinstance(event, PointsReleased | BuyReleased) and event.trade_id:
            return  # A cancelled trade's release: the trade process's own step.
        assert isinstance(event, placement.PlacementEvent), event
        if self._among is not None and not self._among(event.account_id):
            return
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
                await self._market.resume_placement(step.command)
            elif isinstance(step, placement.Release):
                await self._market.release(step.command)


class OpenTrades:
    """Trades not ended, buyers not yet released, and refunds the provider has not answered.

    Open: a trade neither settled nor cancelled; a cancelled trade whose buyer's account
    still counts its quantity as being bought; a refund requested and not yet made or
    declined.
    """

    kind = "trade"
    types = frozenset(
        {
            "TradeCreated",
            "TradeSettled",
            "TradeCancelled",
            "BuyReleased",
            "RefundRequested",
            "TradeRefunded",
            "RefundDeclined",
        }
    )

    def __init__(
        self, processes: TradeProcesses, among: Callable[[str], bool] | None = None
    ) -> None:
        """Track open trades for `processes` to drive on: of the markets `among` (None: all)."""
        self._among = among
        self._processes = processes
        self.trades: dict[str, tuple[int, TradeCreated]] = {}
        self._buyer_release_due: dict[str, tuple[int, TradeCreated]] = {}
        self._refunding: dict[str, int] = {}  # Trade id -> where its refund was requested.

    def see(self, position: int, event: object) -> None:
        """Open a trade at its creation; close it when settled, or cancelled and released."""
        match event:
            case TradeCreated():
                if self._among is None or self._among(event.market_id):
                    self.trades[event.trade_id] = (position, event)
            case TradeSettled():
                self.trades.pop(event.trade_id, None)
            case TradeCancelled():
                created = self.trades.pop(event.trade_id, None)
                if created is not None:
                    self._buyer_release_due[event.trade_id] = created
            case BuyReleased():  # An order's own release (no trade id) is the placement's.
                self._buyer_release_due.pop(event.trade_id, None)
            case RefundRequested():
                self._refunding[event.trade_id] = position
            case TradeRefunded() | RefundDeclined():
                self._refunding.pop(event.trade_id, None)
            case _:
                raise AssertionError(event)

    def oldest(self) -> int | None:
        """Return where the oldest trade found open was created."""
        entries = (*self.trades.values(), *self._buyer_release_due.values())
        return min((*(p for p, _ in entries), *self._refunding.values()), default=None)

    def open_count(self) -> int:
        """Return how many trades the scan found open."""
        return len(self.trades) + len(self._buyer_release_due) + len(self._refunding)

    async def resume(self) -> None:
        """Drive each open trade on: deliver a confirmed one, re-arm a pending one.

        A pending trade gets its deadline watched and its payment requested if it was not; a
        deadline that passed while the server was down cancels it.
        """
        for _, created in self.trades.values():
            self._processes.start(created)
        for _, created in self._buyer_release_due.values():
            await self._processes.release(trade_process.buyer_release(created))
        for trade_id in self._refunding:  # Asks the provider again, with the same refund id.
            await self._processes.drive(trade_id, among=self._among)
