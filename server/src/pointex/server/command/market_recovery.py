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

from pointex.server.command.idempotency import payload_digest
from pointex.server.command.market_handlers import MarketHandlers
from pointex.server.command.market_replies import place_request_of
from pointex.server.command.trades import TradeProcesses
from pointex.server.domain import errors
from pointex.server.domain.commands import ReleasePoints
from pointex.server.domain.events import PointsHeld, PointsReleased
from pointex.server.domain.market_commands import PlaceOrder
from pointex.server.domain.market_events import (
    OrderCancelled,
    OrderPlaced,
    OrderRejected,
    TradeCancelled,
    TradeCreated,
    TradeSettled,
)
from pointex.server.domain.values import OrderSide

log = logging.getLogger(__name__)


class OpenPlacements:
    """Orders held and not yet placed or rejected, and SELL remainders not yet released."""

    kind = "placement"
    types = frozenset(
        {"PointsHeld", "PointsReleased", "OrderPlaced", "OrderRejected", "OrderCancelled"}
    )

    def __init__(self, market: MarketHandlers) -> None:
        """Track open placements for `market` to finish."""
        self._market = market
        self.holds: dict[str, tuple[int, PointsHeld]] = {}
        self.releases: dict[str, tuple[int, ReleasePoints]] = {}

    def see(self, position: int, event: object) -> None:
        """Open a step at a hold or a SELL's end; close it at placement or release."""
        match event:
            case PointsHeld():
                self.holds[event.order_id] = (position, event)
            case OrderPlaced():
                self.holds.pop(event.order_id, None)
            case OrderRejected() | OrderCancelled():
                self.holds.pop(event.order_id, None)
                if event.side is OrderSide.SELL:
                    quantity = (
                        event.quantity_points
                        if isinstance(event, OrderRejected)
                        else event.cancelled_quantity_points
                    )
                    release = ReleasePoints(event.account_id, event.order_id, "", quantity)
                    self.releases[event.order_id] = (position, release)
            case PointsReleased(trade_id=""):
                self.releases.pop(event.order_id, None)
            case _:
                pass  # A trade's release: the trade's own step.

    def oldest(self) -> int | None:
        """Return where the oldest step found open opened."""
        positions = [p for p, _ in self.holds.values()]
        positions += [p for p, _ in self.releases.values()]
        return min(positions, default=None)

    def open_count(self) -> int:
        """Return how many steps the scan found open."""
        return len(self.holds) + len(self.releases)

    async def resume(self) -> None:
        """Place (or reject) every held order, and release every SELL remainder."""
        for _, held in self.holds.values():
            order = PlaceOrder(
                held.order_id,
                held.account_id,
                held.market_id,
                OrderSide.SELL,
                held.amount_points,
                held.limit_price_minor,
                held.time_in_force,
                held.client_order_id,
            )
            # A refusal rejects the order and releases its points; that is the finished state.
            with contextlib.suppress(errors.DomainError):
                await self._market.place_held(
                    order, payload_digest(place_request_of(order)), "", ""
                )
        for _, release in self.releases.values():
            await self._market.release(release)


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
