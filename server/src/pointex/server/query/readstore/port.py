"""The read store's port: the rows the projections write and the reads the queries make.

One small interface, two adapters (`sqlite/`, `postgres/`), one contract suite
(tests/integration/test_read_store.py). Rows are plain frozen records; enums are stored by
their proto value name without the prefix (`MEMBER`, `ISSUE_IN`, `POINTS_RECEIVED`).

Projections live in *generations* of tables (``g<n>_accounts``...). One generation is
active and serves reads; a rebuild fills a fresh one from position 0 and then replaces the
active one atomically. Every write names its generation and commits the projection changes
of one batch together with that generation's checkpoint, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pointex.server.query.readstore.market_rows import (
    LevelRow,
    MarketRow,
    MarketStats,
    OrderFilter,
    OrderRow,
    TradeFilter,
    TradeRow,
)
from pointex.server.store_errors import StoreError

# Enum names as stored.
ACCOUNT_KINDS = frozenset({"MEMBER", "MERCHANT"})
ACCOUNT_STATUSES = frozenset({"OPEN", "FROZEN", "CLOSED"})


class CheckpointMoved(StoreError):
    """A batch was written against a checkpoint that is no longer the generation's own.

    Another writer applied events to this generation meanwhile; nothing was written. It is
    the final guard against applying an event twice.
    """

    def __init__(self, generation: int, expected: int, actual: int | None) -> None:
        """Name the generation, the checkpoint the batch expected and the one found."""
        super().__init__(
            f"read-store generation {generation}: checkpoint is {actual}, batch expected {expected}"
        )
        self.generation = generation
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An account as projected."""

    account_id: str
    kind: str
    status: str
    owner_partner_id: str
    display_name: str
    available_points: int
    held_points: int
    version: int
    frozen_by_role: str  # a Role name while FROZEN, else ""
    opened_at_us: int
    updated_at_us: int
    tier: str  # the member tier (AccountTierSet), or ""
    pending_points: int  # issued with a later activation time, not spendable yet
    # The lowest available balance the account may have (≤ 0): below 0 only while a
    # reversal under the program's debt policy has left it in debt, the floor that reversal
    # was decided under (the available points then lie between it and 0).
    debt_floor_points: int = 0


@dataclass(frozen=True, slots=True)
class ProgramRulesRow:
    """The program's rules in force: the one row each ProgramRulesSet replaces."""

    version: int  # the stream version of the event on program-main: 1, 2, ...
    body: bytes  # a serialized pointex.v1.ProgramRules
    set_at_us: int  # when the event was recorded
    position: int  # of the event
    # The version at which the transfer fee (ProgramRules.transfer_fee) last changed: the
    # fee schedule's version a quote names; 0 while no change ever set one.
    fee_schedule_version: int = 0


@dataclass(frozen=True, slots=True)
class MovementRow:
    """One change of an account's points: one event of its stream."""

    account_id: str
    position: int
    recorded_at_us: int
    account_version: int
    kind: str
    available_delta_points: int
    held_delta_points: int
    available_points: int
    held_points: int
    counterparty_account_id: str = ""
    transfer_id: str = ""
    order_id: str = ""
    trade_id: str = ""
    memo: str = ""
    pending_delta_points: int = 0
    pending_points: int = 0  # after the movement
    # A transfer's fee debited with its points (TRANSFER_OUT), within available_delta_points.
    fee_points: int = 0


@dataclass(frozen=True, slots=True)
class PendingIssueRow:
    """What is left pending of one issue whose points activate later (a PointsPending).

    Kept from the arrival until the activation, or until reversals took all of it back, so
    that those events can be checked against the issue and an activation names its merchant.
    """

    transfer_id: str  # the issue
    account_id: str  # the member account holding the points
    counterparty_account_id: str  # the issuing merchant
    amount_points: int  # still pending: the arrival's amount less what reversals took back
    memo: str  # the issue's reason
    position: int  # of the arrival


@dataclass(frozen=True, slots=True)
class NotificationRow:
    """One notification; (position, index) orders them and is their cursor."""

    position: int
    index: int
    account_id: str
    owner_partner_id: str
    kind: str
    occurred_at_us: int
    body: bytes  # a serialized pointex.v1.Notification without its cursor


@dataclass(frozen=True, slots=True)
class InFlightRow:
    """Points debited by a process and not yet credited (or returned) on the other side."""

    # The process stream, "transfer-<id>" or "trade-<id>"; a transfer's fee, credited to the
    # fee account as a step of its own, is "transfer-<id>/fee"; a cooling-off refund's points,
    # between the buyer's return and the seller's arrival (or the buyer's restoration), are
    # "trade-<id>/refund".
    process_id: str
    account_id: str  # the account the points left
    amount_points: int
    position: int  # of the debit


@dataclass(frozen=True, slots=True)
class Changes:
    """What one batch of events does to the read models, applied in one transaction."""

    after_position: int  # the generation's checkpoint the batch continues from
    position: int  # the checkpoint after the batch
    events: int  # events the batch covers, projected or not
    accounts: tuple[AccountRow, ...] = ()  # the final state of every account it changed
    movements: tuple[MovementRow, ...] = ()
    notifications: tuple[NotificationRow, ...] = ()
    # Points in flight: removals are applied before additions, so a key ended and started
    # again within the batch (a refund asked again after a decline) is replaced.
    in_flight_added: tuple[InFlightRow, ...] = ()
    in_flight_removed: tuple[str, ...] = ()  # process ids
    minted_points: int = 0
    burned_points: int = 0
    markets: tuple[MarketRow, ...] = ()
    orders: tuple[OrderRow, ...] = ()  # the final state of every order it changed
    trades: tuple[TradeRow, ...] = ()  # the final state of every trade it changed
    levels: tuple[LevelRow, ...] = ()  # deltas, one per (market, side, price)
    # Escrow steps in flight (I2): held points not (or no longer) counted by an order or a
    # trade, keyed "order-<id>" or "trade-<id>"; removals are applied before additions.
    escrow_added: tuple[InFlightRow, ...] = ()
    escrow_removed: tuple[str, ...] = ()
    program_rules: ProgramRulesRow | None = None  # the rules in force after the batch, if set
    # Pending issues: the final state of every one the batch changed and still pending, and
    # those it ended (activated, or all taken back) that existed before the batch.
    pending_issues: tuple[PendingIssueRow, ...] = ()
    pending_issues_removed: tuple[str, ...] = ()
    # Points that lapsed under the program's expiry policy (PointsExpired): out of
    # circulation like burned points, counted apart from them.
    expired_points: int = 0

    def check(self) -> None:
        """Assert the batch is well formed (positions ordered, keys unique)."""
        assert 0 <= self.after_position < self.position, (self.after_position, self.position)
        assert 0 < self.events <= self.position - self.after_position, self.events
        assert len({a.account_id for a in self.accounts}) == len(self.accounts)
        assert all(self.after_position < m.position <= self.position for m in self.movements)
        assert all(self.after_position < n.position <= self.position for n in self.notifications)
        assert self.minted_points >= 0
        assert self.burned_points >= 0
        assert self.expired_points >= 0
        assert len({o.order_id for o in self.orders}) == len(self.orders)
        assert len({t.trade_id for t in self.trades}) == len(self.trades)
        assert len({(v.market_id, v.side, v.price_minor) for v in self.levels}) == len(self.levels)
        assert len({e.process_id for e in self.escrow_added}) == len(self.escrow_added)
        if self.program_rules is not None:
            assert self.after_position < self.program_rules.position <= self.position
            assert self.program_rules.version >= 1, self.program_rules
        kept = {i.transfer_id for i in self.pending_issues}
        assert len(kept) == len(self.pending_issues)
        assert all(i.amount_points > 0 for i in self.pending_issues)
        assert len(set(self.pending_issues_removed)) == len(self.pending_issues_removed)
        assert kept.isdisjoint(self.pending_issues_removed)


@dataclass(frozen=True, slots=True)
class AccountFilter:
    """Which accounts a listing returns; empty tuples mean "any"."""

    owner_partner_id: str = ""
    kinds: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """Which movements of one account a history page returns."""

    kinds: tuple[str, ...] = ()
    start_us: int | None = None  # inclusive
    end_us: int | None = None  # exclusive
    newest_first: bool = False


@dataclass(frozen=True, slots=True)
class NotificationFilter:
    """Which notifications a watcher receives: one partner's (or all), some accounts, kinds."""

    owner_partner_id: str | None = None  # None: every owner (operators)
    account_ids: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Audit:
    """Figures of the read models at one checkpoint, read in one snapshot."""

    position: int
    minted_points: int
    burned_points: int
    available_points: int
    held_points: int
    pending_points: int
    in_flight_points: int
    account_count: int
    # Offending accounts, at most the asked number each, and how many there are in all.
    # Negative: available below its debt floor, or held or pending below 0.
    negative: tuple[AccountRow, ...] = ()
    negative_count: int = 0
    over_ceiling: tuple[AccountRow, ...] = ()
    over_ceiling_count: int = 0
    open_sell_quantity_points: int = 0
    pending_trade_quantity_points: int = 0
    # I2: accounts whose held points differ from what their orders, trades and escrow steps
    # in flight account for, each with that expected figure.
    escrow: tuple[tuple[AccountRow, int], ...] = ()
    escrow_count: int = 0
    # Σ of points that lapsed (PointsExpired): out of circulation, like burned points.
    expired_points: int = 0


class ReadStore(Protocol):
    """The query server's read models and their checkpoint.

    `generation=None` means the active generation. Reads always use the active one.
    """

    async def open(self) -> None:
        """Connect, create or migrate the schema, and drop a rebuild left by a crash."""

    async def close(self) -> None:
        """Release every connection."""

    async def token_secret(self) -> bytes:
        """Return the key that signs page tokens and cursors (kept across restarts)."""

    async def checkpoint(self, generation: int | None = None) -> int:
        """Return the position through which the generation has applied every event."""

    async def accounts(
        self, account_ids: list[str], generation: int | None = None
    ) -> dict[str, AccountRow]:
        """Return the named accounts that exist, by id."""

    async def program_rules(self, generation: int | None = None) -> ProgramRulesRow | None:
        """Return the program's rules in force, or None before the first ProgramRulesSet."""

    async def pending_issues(
        self, transfer_ids: list[str], generation: int | None = None
    ) -> dict[str, PendingIssueRow]:
        """Return the named issues that still have pending points, by transfer id."""

    async def in_flight(
        self, process_ids: list[str], generation: int | None = None
    ) -> dict[str, InFlightRow]:
        """Return the named points in flight that exist, by process id."""

    async def apply(self, changes: Changes, generation: int | None = None) -> None:
        """Write one batch and its checkpoint atomically.

        Raises:
            CheckpointMoved: The generation's checkpoint is not `changes.after_position`.
        """

    async def list_accounts(
        self, account_filter: AccountFilter, after_account_id: str, limit: int
    ) -> list[AccountRow]:
        """Return up to `limit` matching accounts after `after_account_id`, ascending."""

    async def history(
        self, account_id: str, history_filter: HistoryFilter, after_position: int, limit: int
    ) -> list[MovementRow]:
        """Return up to `limit` matching movements strictly beyond `after_position`.

        Beyond means above it (ascending), or below it when newest first; 0 starts at the end
        the order begins from.
        """

    async def notifications(
        self, notification_filter: NotificationFilter, after: tuple[int, int], limit: int
    ) -> list[NotificationRow]:
        """Return up to `limit` matching notifications after `(position, index)`, ascending."""

    async def audit(self, listed_max: int) -> Audit:
        """Return the figures CheckInvariants needs, from one consistent snapshot."""

    async def orders(
        self, order_ids: list[str], generation: int | None = None
    ) -> dict[str, OrderRow]:
        """Return the named orders that exist (pending ones included), by id."""

    async def trades(
        self, trade_ids: list[str], generation: int | None = None
    ) -> dict[str, TradeRow]:
        """Return the named trades that exist, by id."""

    async def markets(self, generation: int | None = None) -> list[MarketRow]:
        """Return every configured market in market_id order (with its fees' version)."""

    async def list_orders(
        self, order_filter: OrderFilter, before_position: int, limit: int
    ) -> list[OrderRow]:
        """Return up to `limit` matching placed orders, newest first, placed before a position.

        0 starts at the newest. Pending orders (held, not yet placed) are never listed.
        """

    async def list_trades(
        self, trade_filter: TradeFilter, before_position: int, limit: int
    ) -> list[TradeRow]:
        """Return up to `limit` matching trades, newest first, matched before a position.

        0 starts at the newest.
        """

    async def price_levels(self, market_id: str, side: str, limit: int) -> list[LevelRow]:
        """Return the best `limit` levels of one side: BUY highest first, SELL lowest first."""

    async def market_stats(self, market_id: str, start_us: int, end_us: int) -> MarketStats:
        """Return the figures of the market's trades not cancelled, the window [start, end)."""

    async def create_generation(self) -> int:
        """Create an empty generation (checkpoint 0) for a rebuild; return its number."""

    async def activate_generation(self, generation: int) -> int:
        """Make `generation` the active one, atomically; return the one it replaced.

        The replaced generation stays readable (reads that started before the switch finish
        on it) until `drop_generation`; `open` drops every inactive generation it finds.
        """

    async def drop_generation(self, generation: int) -> None:
        """Drop an inactive generation."""

    async def count_differences(self, generation: int) -> int:
        """Return how many rows differ between `generation` and the active one."""
