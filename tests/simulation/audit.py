"""The simulation's checker: the invariants, read from the database's log as it grows.

`LogAudit` folds every committed event with the domain's own `evolve` functions (accounts,
the order book, trades, placements), reading the `MemoryDatabase` directly: the checker is
outside the system, so no fault reaches it. It checks:

- I1 (conservation) at every commit boundary: Σ(available + held + pending) over accounts
  + points in flight = Σ minted - Σ burned. In flight is what a transfer debited (its fee
  included) and did not yet credit (to its destination or its fee account) or return, and
  what a settlement took from its seller and did not yet give its buyer; each unit commits
  whole, so this holds between any two commits.
- I2 (escrow) and what each account is buying, per account, when asked (`check_accounts`):
  held = open quantity of its resting SELL orders + quantity of its trades pending payment
  as seller + its SELL orders' steps in flight (held and not yet placed, or cancelled,
  rejected or unfilled and not yet released); buying likewise for BUY orders and trades,
  counting cancelled trades whose buyer is not yet released. No balance is negative.
- At most one effect per request: one debit per transfer, one credit or return per
  transfer and account, one hold and one placement per order, one recorded outcome per
  provider event, one sale, purchase and release per trade. Seen as each event is folded.
- At the end (`check_ended`): every trade SETTLED or CANCELLED and its buyer released,
  nothing in flight, no placement step due.

A failed check raises `Violation`; `run.simulate` adds the seed and how to replay it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TypeVar

from pointex.server.domain import account as account_model
from pointex.server.domain import events as ev
from pointex.server.domain import market_events as mev
from pointex.server.domain import order_book, streams
from pointex.server.domain import trade as trade_model
from pointex.server.domain.account import Account
from pointex.server.domain.processes import placement
from pointex.server.domain.trade import Trade, TradeStatus
from pointex.server.domain.values import OrderSide
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import RecordedEvent
from tests.simulation.memory_store import MemoryDatabase

_PLACEMENT_EVENTS = (
    ev.PointsHeld,
    ev.BuyReserved,
    mev.OrderPlaced,
    mev.OrderRejected,
    mev.OrderCancelled,
    ev.PointsReleased,
    ev.BuyReleased,
)
_OPEN_TRADE = frozenset({TradeStatus.PENDING_PAYMENT, TradeStatus.SETTLING})
K = TypeVar("K", bound=Hashable)


class Violation(AssertionError):
    """An invariant of the specification does not hold."""


@dataclass
class Effects:
    """How many times each request's effect was committed (each must be at most once)."""

    debits: Counter[str] = field(default_factory=Counter)  # transfer id
    # (transfer id, account): the credit of the destination or of the fee account, or a
    # return to the source.
    credits: Counter[tuple[str, str]] = field(default_factory=Counter)
    holds: Counter[str] = field(default_factory=Counter)  # order id
    placements: Counter[str] = field(default_factory=Counter)  # order id
    cancels: Counter[str] = field(default_factory=Counter)  # order id
    outcomes: Counter[str] = field(default_factory=Counter)  # provider event id
    trade_steps: Counter[tuple[str, str]] = field(default_factory=Counter)  # (trade, step)
    records: Counter[str] = field(default_factory=Counter)  # request (record) stream

    def count(self, table: Counter[K], key: K, what: str) -> None:
        """Count one more effect under `key`; a second one is a violation."""
        table[key] += 1
        if table[key] > 1:
            raise Violation(f"{what} {key} took effect {table[key]} times")


@dataclass
class LogAudit:
    """The invariants over a database's log, folded incrementally."""

    database: MemoryDatabase
    accounts: dict[str, Account] = field(default_factory=dict)
    book: order_book.OrderBook = field(default_factory=order_book.OrderBook)
    trades: dict[str, Trade] = field(default_factory=dict)
    placements: dict[str, placement.Placement] = field(default_factory=dict)
    buyer_release_due: dict[str, tuple[str, int]] = field(default_factory=dict)
    effects: Effects = field(default_factory=Effects)
    supply: int = 0  # minted - burned
    total: int = 0  # Σ available + held + pending
    in_flight: Counter[str] = field(default_factory=Counter)  # transfer or trade id -> points
    in_flight_total: int = 0  # Σ in_flight
    position: int = 0  # the last position folded
    commits_checked: int = 0

    def consume(self) -> None:
        """Fold every event committed since the last call; check I1 at each commit."""
        events = self.database.events
        ends = self.database.commit_ends
        while self.commits_checked < len(ends):
            end = ends[self.commits_checked]
            for recorded in events[self.position : end]:
                self._fold(recorded)
            self.position = end
            self.commits_checked += 1
            self._check_conservation(end)
        assert self.position == len(events), (self.position, len(events))

    def _check_conservation(self, position: int) -> None:
        """Check I1 at the commit that ends at `position`."""
        in_flight = self.in_flight_total
        if self.total + in_flight != self.supply:
            raise Violation(
                f"I1 at position {position}: available + held + pending {self.total} "
                f"+ in flight {in_flight} != minted - burned {self.supply}"
            )

    def _fold(self, recorded: RecordedEvent) -> None:
        """Fold one committed event into the state of its stream."""
        event = codec.decode(recorded)
        category = recorded.stream_id.partition("-")[0]
        if category == streams.ACCOUNT:
            self._fold_account(event)
        elif category == streams.MARKET:
            self.book = order_book.evolve(self.book, event)
        elif category == streams.TRADE:
            trade_id = event.trade_id
            self.trades[trade_id] = trade_model.evolve(self.trades.get(trade_id), event)
            if isinstance(event, mev.PaymentConfirmed | mev.PaymentFailed):
                self.effects.count(self.effects.outcomes, event.provider_event_id, "callback")
            if isinstance(event, mev.TradeCancelled):
                created = self.trades[trade_id].created
                due = (created.buyer_account_id, created.quantity_points)
                self.buyer_release_due[trade_id] = due
        elif category == streams.REQUEST:
            self.effects.count(self.effects.records, recorded.stream_id, "request record")
        if isinstance(event, _PLACEMENT_EVENTS):
            self._fold_placement(event)

    def _fold_account(self, event: object) -> None:
        """Fold an account event: balances, supply, in flight, effects."""
        account_id: str = event.account_id  # type: ignore[attr-defined]
        before = self.accounts.get(account_id)
        after = account_model.evolve(before, event)  # type: ignore[arg-type]
        self.accounts[account_id] = after
        self.total += after.total_points - (before.total_points if before else 0)
        effects = self.effects
        match event:
            case ev.PointsMinted():
                self.supply += event.amount_points
            case ev.PointsBurned():
                self.supply -= event.amount_points
            case ev.PointsDebited():
                effects.count(effects.debits, event.transfer_id, "the debit of transfer")
                self._fly(event.transfer_id, event.amount_points + event.fee_points)
            case ev.PointsCredited() | ev.PointsReturned() | ev.PointsPending():
                credit = (event.transfer_id, account_id)
                effects.count(effects.credits, credit, "the credit of (transfer, account)")
                self._fly(event.transfer_id, -event.amount_points)
            case ev.PointsSold():
                effects.count(effects.trade_steps, (event.trade_id, "sold"), "sale")
                self._fly(event.trade_id, event.amount_points)
            case ev.PointsBought():
                effects.count(effects.trade_steps, (event.trade_id, "bought"), "purchase")
                self._fly(event.trade_id, -event.amount_points)
            case ev.PointsHeld() | ev.BuyReserved():
                effects.count(effects.holds, event.order_id, "the hold of order")
            case ev.BuyReleased(trade_id=trade_id) if trade_id:
                effects.count(effects.trade_steps, (trade_id, "buyer"), "buyer release")
                self.buyer_release_due.pop(trade_id, None)
            case ev.PointsReleased(trade_id=trade_id) if trade_id:
                effects.count(effects.trade_steps, (trade_id, "seller"), "seller release")

    def _fly(self, process_id: str, points: int) -> None:
        """Count `points` more in flight for a transfer or a trade (less when negative)."""
        self.in_flight[process_id] += points
        self.in_flight_total += points

    def _fold_placement(self, event: placement.PlacementEvent) -> None:
        """Follow an order's placement steps, and count its placement and cancel."""
        if isinstance(event, ev.PointsReleased | ev.BuyReleased) and event.trade_id:
            return  # A cancelled trade's release: the trade process's own step.
        if isinstance(event, mev.OrderPlaced):
            self.effects.count(self.effects.placements, event.order_id, "the placement of order")
        if isinstance(event, mev.OrderCancelled):
            self.effects.count(self.effects.cancels, event.order_id, "the cancellation of order")
        after = placement.evolve(self.placements.get(event.order_id), event)
        if after.stage is placement.Stage.DONE:
            self.placements.pop(event.order_id, None)
        else:
            self.placements[event.order_id] = after

    # --- Checks on demand ---------------------------------------------------------------------

    def expected_escrow(self) -> tuple[Counter[str], Counter[str]]:
        """Return what each account should hold (I2) and be buying, from the log."""
        held: Counter[str] = Counter(order_book.held_by_resting_sells(self.book))
        buying: Counter[str] = Counter()
        for order in self.book.best_first(OrderSide.BUY):
            buying[order.account_id] += order.open_quantity_points
        for trade in self.trades.values():
            created = trade.created
            if trade.status is TradeStatus.PENDING_PAYMENT:
                held[created.seller_account_id] += created.quantity_points
            if trade.status in _OPEN_TRADE:
                buying[created.buyer_account_id] += created.quantity_points
        for buyer, quantity in self.buyer_release_due.values():
            buying[buyer] += quantity
        for step in self.placements.values():
            due = step.release_points
            if step.stage is placement.Stage.HELD:
                assert step.order is not None, step
                due = step.order.quantity_points
            (held if step.side is OrderSide.SELL else buying)[step.account_id] += due
        return held, buying

    def check_accounts(self, when: str) -> None:
        """Check I2, what each account is buying, and that no balance is negative."""
        self.consume()
        held, buying = self.expected_escrow()
        for account_id, state in self.accounts.items():
            facts = (
                ("available", state.available_points, None),
                ("held", state.held_points, held[account_id]),
                ("buying", state.buying_points, buying[account_id]),
                ("pending", state.pending_points, None),
            )
            for name, actual, expected in facts:
                if actual < 0:
                    raise Violation(f"{when}: {account_id} has {name} {actual} < 0")
                if expected is not None and actual != expected:
                    raise Violation(
                        f"{when}: {account_id} has {name} {actual}, its orders and trades "
                        f"say {expected} (I2)"
                    )

    def check_ended(self) -> None:
        """Check that every trade ended, nothing is in flight and no placement is open."""
        self.check_accounts("at the end")
        for trade_id, trade in self.trades.items():
            if trade.status in _OPEN_TRADE:
                raise Violation(f"trade {trade_id} is still {trade.status.value} at the end")
        if self.buyer_release_due:
            raise Violation(f"cancelled trades never released: {sorted(self.buyer_release_due)}")
        if self.placements:
            raise Violation(f"order steps still due at the end: {sorted(self.placements)}")
        in_flight = {key: points for key, points in self.in_flight.items() if points}
        if in_flight:
            raise Violation(f"points still in flight at the end: {in_flight}")

    def ended_trades(self) -> list[str]:
        """Return the trades that are SETTLED or CANCELLED."""
        return [t for t, trade in self.trades.items() if trade.status not in _OPEN_TRADE]
