"""The working state of one projected batch, and the helpers every handler shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pointex.server.domain import streams
from pointex.server.query.projections import notifications
from pointex.server.query.readstore.market_rows import MarketRow, OrderRow, TradeRow
from pointex.server.query.readstore.port import (
    AccountRow,
    InFlightRow,
    MovementRow,
    NotificationRow,
    PendingIssueRow,
    ProgramRulesRow,
)
from pointex.v1 import common_pb2, events_pb2

# Looked up for every movement: enum names without their prefixes, and back.
_TRANSFER_KINDS: Final[dict[int, str]] = {
    number: name.removeprefix("TRANSFER_KIND_") for name, number in common_pb2.TransferKind.items()
}
_MOVEMENT_KINDS: Final = {
    name.removeprefix("MOVEMENT_KIND_"): number for name, number in common_pb2.MovementKind.items()
}


@dataclass(slots=True)
class BatchState:
    """The working state of one batch: account copies and the rows produced so far."""

    accounts: dict[str, AccountRow]
    changed: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    movements: list[MovementRow] = field(default_factory=list)
    notifications: list[NotificationRow] = field(default_factory=list)
    in_flight_added: dict[str, InFlightRow] = field(default_factory=dict)
    in_flight_removed: list[str] = field(default_factory=list)
    # Stored points in flight the batch settles and must check (`keys_of`: its returns, its
    # fees' credits, its refunds made or declined), as given.
    in_flight: dict[str, InFlightRow] = field(default_factory=dict)
    minted_points: int = 0
    burned_points: int = 0
    # Points that lapsed under the program's expiry policy: out of circulation, like burns.
    expired_points: int = 0
    orders: dict[str, OrderRow] = field(default_factory=dict)
    orders_changed: dict[str, None] = field(default_factory=dict)
    trades: dict[str, TradeRow] = field(default_factory=dict)
    trades_changed: dict[str, None] = field(default_factory=dict)
    # Markets: as given (every stored one, when the batch configures one), then as it sets them.
    markets: dict[str, MarketRow] = field(default_factory=dict)
    markets_changed: dict[str, None] = field(default_factory=dict)
    # (market, side, price) -> (open quantity, order count) to add to the stored level.
    levels: dict[tuple[str, str, int], tuple[int, int]] = field(default_factory=dict)
    escrow_added: dict[str, InFlightRow] = field(default_factory=dict)
    escrow_removed: list[str] = field(default_factory=list)
    # The rules in force (as given, then as the batch sets them) and whether the batch set them.
    program_rules: ProgramRulesRow | None = None
    program_rules_changed: bool = False
    # Issues with pending points: as given (then as the batch changes them; 0 left means
    # ended), which of them the store holds, and which the batch changed.
    pending_issues: dict[str, PendingIssueRow] = field(default_factory=dict)
    pending_issues_stored: frozenset[str] = frozenset()
    pending_issues_changed: dict[str, None] = field(default_factory=dict)
    # The event being projected: its global position and when it was recorded (µs), set before
    # each handler runs so that the helpers below need not decode them from the event again.
    position: int = 0
    at_us: int = 0

    def account(self, account_id: str) -> AccountRow:
        """Return the current row of an account the batch was given or opened."""
        row = self.accounts.get(account_id)
        assert row is not None, f"event for unknown account {account_id!r}"
        return row

    def put(self, row: AccountRow) -> None:
        """Record the account's new state."""
        self.accounts[row.account_id] = row
        self.changed[row.account_id] = None

    def notify(self, row: NotificationRow) -> None:
        """Add a notification, built with `next_index` of its position."""
        assert row.index == self.next_index(row.position), row
        self.notifications.append(row)

    def next_index(self, position: int) -> int:
        """Return the index the next notification at `position` gets (0, 1, ...)."""
        # Notifications are added in position order, so those at `position` are the last ones.
        index = 0
        for row in reversed(self.notifications):
            if row.position != position:
                break
            index += 1
        return index

    def add_in_flight(self, row: InFlightRow) -> None:
        """Record points that left an account for a process step still to come.

        A key the batch removed may be added again (a refund asked again after a decline):
        the store deletes the removed keys before it inserts the added ones.
        """
        assert row.process_id not in self.in_flight_added, row
        self.in_flight_added[row.process_id] = row

    def remove_in_flight(self, process_id: str) -> None:
        """Record that a process's points arrived (or came back)."""
        if self.in_flight_added.pop(process_id, None) is None:
            self.in_flight_removed.append(process_id)

    def in_flight_row(self, process_id: str) -> InFlightRow | None:
        """Return points in flight the batch added, or was given and has not removed."""
        row = self.in_flight_added.get(process_id)
        if row is None and process_id not in self.in_flight_removed:
            row = self.in_flight.get(process_id)
        return row

    def pending_issue(self, transfer_id: str) -> PendingIssueRow:
        """Return what is left pending of an issue the batch was given or saw arrive."""
        row = self.pending_issues.get(transfer_id)
        assert row is not None, f"no pending points of issue {transfer_id!r}"
        assert row.amount_points > 0, row
        return row

    def put_pending_issue(self, row: PendingIssueRow) -> None:
        """Record what is left pending of an issue (0: the issue's pending points ended)."""
        assert row.amount_points >= 0, row
        self.pending_issues[row.transfer_id] = row
        self.pending_issues_changed[row.transfer_id] = None

    def order(self, order_id: str) -> OrderRow:
        """Return the current row of an order the batch was given or created."""
        row = self.orders.get(order_id)
        assert row is not None, f"event for unknown order {order_id!r}"
        return row

    def put_order(self, row: OrderRow) -> None:
        """Record an order's new state, and what it changes in its book's price level."""
        old = self.orders.get(row.order_id)
        for sign, each in ((-1, old), (1, row)):
            if each is not None and each.resting:
                key = (each.market_id, each.side, each.limit_price_minor)
                quantity, count = self.levels.get(key, (0, 0))
                self.levels[key] = (quantity + sign * each.open_quantity_points, count + sign)
        self.orders[row.order_id] = row
        self.orders_changed[row.order_id] = None

    def put_market(self, row: MarketRow) -> None:
        """Record a market's new configuration."""
        self.markets[row.market_id] = row
        self.markets_changed[row.market_id] = None

    def trade(self, trade_id: str) -> TradeRow:
        """Return the current row of a trade the batch was given or created."""
        row = self.trades.get(trade_id)
        assert row is not None, f"event for unknown trade {trade_id!r}"
        return row

    def put_trade(self, row: TradeRow) -> None:
        """Record a trade's new state."""
        self.trades[row.trade_id] = row
        self.trades_changed[row.trade_id] = None

    def add_escrow(self, row: InFlightRow) -> None:
        """Record held points that a step still to come will account for (I2)."""
        assert row.process_id not in self.escrow_added, row
        self.escrow_added[row.process_id] = row

    def remove_escrow(self, key: str) -> None:
        """Record that the step an escrow entry waited for happened."""
        if self.escrow_added.pop(key, None) is None:
            assert key not in self.escrow_removed, key
            self.escrow_removed.append(key)


def position_of(event: events_pb2.Event) -> int:
    """Return the global position of a feed event (format-1 token)."""
    token = event.position.token
    assert len(token) == 9, token  # noqa: PLR2004 - a format-1 position token.
    assert token[0] == 1, token
    return int.from_bytes(token[1:], "big")


def at_us(event: events_pb2.Event) -> int:
    """Return when the event was recorded, in microseconds since the epoch."""
    recorded_at = event.recorded_at
    return recorded_at.seconds * 1_000_000 + recorded_at.nanos // 1_000


def next_version(event: events_pb2.Event, account: AccountRow) -> int:
    """Return the account's version after `event`, asserting it follows the current one."""
    # Every event of an account stream reaches the projection, in stream order.
    assert event.stream_id == streams.account(account.account_id), event.stream_id
    assert event.stream_version == account.version + 1, (event.stream_version, account.version)
    return int(event.stream_version)


@dataclass(frozen=True, slots=True)
class Move:
    """One movement's amounts, the balances the event states after it, and its references."""

    kind: str
    available_delta: int
    held_delta: int = 0
    available_after: int | None = None
    held_after: int | None = None
    counterparty_account_id: str = ""
    transfer_id: str = ""
    order_id: str = ""
    trade_id: str = ""
    memo: str = ""
    pending_delta: int = 0
    pending_after: int | None = None
    # A reversal under the program's debt policy that took the account below zero: the lowest
    # available balance the policy allowed it (negative); 0 for every other movement.
    debt_floor_points: int = 0
    # A transfer's fee, debited with its points and included in available_delta.
    fee_points: int = 0


def apply_move(
    batch: BatchState, event: events_pb2.Event, account_id: str, move: Move
) -> AccountRow:
    """Apply a movement to an account and record it in the account's history."""
    old = batch.account(account_id)
    available = old.available_points + move.available_delta
    # Built field by field, not by dataclasses.replace: this runs for every movement.
    new = AccountRow(
        account_id=old.account_id,
        kind=old.kind,
        status=old.status,
        owner_partner_id=old.owner_partner_id,
        display_name=old.display_name,
        available_points=available,
        held_points=old.held_points + move.held_delta,
        version=next_version(event, old),
        frozen_by_role=old.frozen_by_role,
        opened_at_us=old.opened_at_us,
        updated_at_us=batch.at_us,
        tier=old.tier,
        pending_points=old.pending_points + move.pending_delta,
        debt_floor_points=_debt_floor(old, available, move),
    )
    if move.available_after is not None:
        assert new.available_points == move.available_after, (new, event)
    if move.held_after is not None:
        assert new.held_points == move.held_after, (new, event)
    if move.pending_after is not None:
        assert new.pending_points == move.pending_after, (new, event)
    # Below 0 only within the floor of the debt policy's reversal that left it in debt.
    assert new.debt_floor_points <= 0, new
    assert new.available_points >= new.debt_floor_points, new
    assert new.held_points >= 0, new
    assert new.pending_points >= 0, new
    batch.put(new)
    batch.movements.append(
        MovementRow(
            account_id=account_id,
            position=batch.position,
            recorded_at_us=batch.at_us,
            account_version=new.version,
            kind=move.kind,
            available_delta_points=move.available_delta,
            held_delta_points=move.held_delta,
            available_points=new.available_points,
            held_points=new.held_points,
            counterparty_account_id=move.counterparty_account_id,
            transfer_id=move.transfer_id,
            order_id=move.order_id,
            trade_id=move.trade_id,
            memo=move.memo,
            pending_delta_points=move.pending_delta,
            pending_points=new.pending_points,
            fee_points=move.fee_points,
        )
    )
    return new


def _debt_floor(old: AccountRow, available_points: int, move: Move) -> int:
    """Return the lowest available balance the account may have after `move` (≤ 0).

    Only a reversal under the debt policy takes an account below zero, and its event states
    how far it could go. While the account stays in debt, credits and movements of held or
    pending points keep that floor; any other debit must find the points it takes, so it
    leaves the floor at 0, as does a balance back at 0 or above (a later debt then needs a
    reversal of its own).
    """
    if move.debt_floor_points < 0:
        return move.debt_floor_points
    if move.available_delta < 0 or available_points >= 0:
        return 0
    return old.debt_floor_points


def notify_moved(batch: BatchState, kind: str, account: AccountRow, move: Move) -> None:
    """Tell the account's owner about a movement of the event being projected (POINTS_*)."""
    # A reversal that takes pending points back moves no available points.
    amount = abs(move.available_delta) or abs(move.pending_delta)
    position = batch.position
    batch.notify(
        notifications.points_moved(
            kind,
            account=account,
            position=position,
            index=batch.next_index(position),
            at_us=batch.at_us,
            movement_kind=_MOVEMENT_KINDS[move.kind],
            amount_points=amount,
            counterparty_account_id=move.counterparty_account_id,
            transfer_id=move.transfer_id,
            memo=move.memo,
        )
    )


def transfer_kind(kind: int) -> str:
    """Return the name of a TransferKind value without its prefix (ISSUE, TRANSFER, FEE...)."""
    return _TRANSFER_KINDS[kind]
