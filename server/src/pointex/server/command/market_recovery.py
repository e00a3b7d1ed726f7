"""Finish what a crash left open in the market, before the server takes commands.

Read from the last checkpoint, the log tells which steps are open:
- PointsHeld with no OrderPlaced or OrderRejected: the order is placed now (or rejected
  and its points released), and its request recorded, so the client's retry finds it;
- a SELL order's OrderCancelled or OrderRejected with no PointsReleased: released now;
- a trade neither settled nor cancelled: a confirmed one is settled, a pending one has
  its payment requested (if it was not) and its deadline watched, also a deadline that
  passed while the server was down.
The checkpoint (a snapshot, deletable) is the position before the oldest step still open.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from pointex.server import limits
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
from pointex.server.domain.trade import TradeStatus
from pointex.server.domain.values import OrderSide
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, Snapshot, StoreError

log = logging.getLogger(__name__)

CHECKPOINT = "recovery-market"
_TYPES = frozenset(
    {
        "PointsHeld",
        "PointsReleased",
        "OrderPlaced",
        "OrderRejected",
        "OrderCancelled",
        "TradeCreated",
        "TradeSettled",
        "TradeCancelled",
    }
)


@dataclass(slots=True)
class _Open:
    """Steps the log shows open, each with the position where it opened."""

    holds: dict[str, tuple[int, PointsHeld]] = field(default_factory=dict)
    releases: dict[str, tuple[int, ReleasePoints]] = field(default_factory=dict)
    trades: dict[str, tuple[int, TradeCreated]] = field(default_factory=dict)

    def see(self, position: int, event: object) -> None:
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
            case TradeCreated():
                self.trades[event.trade_id] = (position, event)
            case TradeSettled() | TradeCancelled():
                self.trades.pop(event.trade_id, None)

    def oldest(self, head: int) -> int:
        positions = [p for p, _ in self.holds.values()]
        positions += [p for p, _ in self.releases.values()]
        positions += [p for p, _ in self.trades.values()]
        return min(positions, default=head + 1) - 1


async def recover_market(
    store: EventStore, market: MarketHandlers, processes: TradeProcesses
) -> int:
    """Finish every open market step; return how many were open."""
    snapshot = await store.load_snapshot(CHECKPOINT)
    after = int(snapshot.data) if snapshot is not None else 0
    found = _Open()
    while page := await store.read_all(after, limits.read_batch_events_max):
        for recorded in page:
            if recorded.type in _TYPES:
                found.see(recorded.position, codec.decode(recorded))
        after = page[-1].position
    for _, held in found.holds.values():
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
            await market.place_held(order, payload_digest(place_request_of(order)), "", "")
    for _, release in found.releases.values():
        await market.release(release)
    for _, created in found.trades.values():
        loaded = await processes.load(created.trade_id)
        assert loaded is not None, created.trade_id
        if loaded.trade.status is TradeStatus.SETTLING:
            processes.track(created)
            processes.in_background(processes.finish_settlement(created.trade_id))
        elif loaded.trade.status is TradeStatus.PENDING_PAYMENT:
            processes.start(created)
    await _save_checkpoint(store, found.oldest(after))
    return len(found.holds) + len(found.releases) + len(found.trades)


async def _save_checkpoint(store: EventStore, safe: int) -> None:
    try:
        data = str(max(safe, 0)).encode()
        await store.save_snapshot(Snapshot(CHECKPOINT, max(safe, 1), "RecoveryCheckpoint", 1, data))
    except StoreError as error:
        log.warning("could not save the market recovery checkpoint: %s", error)
