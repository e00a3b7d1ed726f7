"""Events of an account stream: past tense, frozen, named as in events.proto.

Each event type has a stable name and a schema version (the registry at the end);
the codec stores those, never a Python path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pointex.server.domain.lots import NO_LOTS, Lot
from pointex.server.domain.values import (
    AccountKind,
    Instant,
    OrderFeeQuote,
    Role,
    TimeInForce,
    TransferKind,
)

NEVER: Final = Instant(0)  # `decided_at` of an event written before windows existed.


@dataclass(frozen=True, slots=True)
class AccountOpened:
    """An account exists from now on, empty and OPEN."""

    account_id: str
    kind: AccountKind
    owner_partner_id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class PointsMinted:
    """New points entered a merchant account."""

    account_id: str
    amount_points: int
    memo: str
    available_points: int  # after this event


@dataclass(frozen=True, slots=True)
class PointsBurned:
    """Points left circulation from a merchant account."""

    account_id: str
    amount_points: int
    memo: str
    available_points: int  # after this event


@dataclass(frozen=True, slots=True)
class PointsDebited:
    """The source side of a movement: points left this account, in flight to the counterparty."""

    account_id: str
    transfer_id: str
    kind: TransferKind
    counterparty_account_id: str
    amount_points: int
    memo: str
    available_points: int  # after this event
    decided_at: Instant = NEVER  # when the account's windows count it (domain/usage.py)
    # A reversal that took the points from this pending points (available unchanged).
    pending_transfer_id: str = ""
    # A reversal under the debt policy that took the account below zero: the floor it allowed.
    debt_floor_points: int = 0
    fee_points: int = 0  # A transfer's fee, debited on top of amount_points.
    fee_account_id: str = ""  # Where the fee goes.
    # The lots the points and the fee were taken from, oldest first (domain/lots.py).
    lots: tuple[Lot, ...] = NO_LOTS


@dataclass(frozen=True, slots=True)
class PointsCredited:
    """The destination side of a movement: points arrived; the movement is complete."""

    account_id: str
    transfer_id: str
    kind: TransferKind
    counterparty_account_id: str
    amount_points: int
    memo: str
    available_points: int  # after this event
    lots: tuple[Lot, ...] = NO_LOTS  # The lots the points arrive in (none: they never lapse).


@dataclass(frozen=True, slots=True)
class PointsReturned:
    """A movement was compensated: its debited points came back to the source."""

    account_id: str
    transfer_id: str
    kind: TransferKind
    counterparty_account_id: str
    amount_points: int
    available_points: int  # after this event
    lots: tuple[Lot, ...] = NO_LOTS  # The lots the points come back in, as they left.


@dataclass(frozen=True, slots=True)
class AccountFrozen:
    """Outgoing movement is stopped."""

    account_id: str
    reason: str
    frozen_by_role: Role  # only an operator lifts an operator's freeze


@dataclass(frozen=True, slots=True)
class AccountUnfrozen:
    """Outgoing movement is allowed again."""

    account_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AccountClosed:
    """The account is closed for good (it was empty)."""

    account_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class TransferInitiated:
    """A transfer process started; its stream doubles as the request's idempotency record."""

    transfer_id: str
    kind: TransferKind
    from_account_id: str
    to_account_id: str
    amount_points: int
    memo: str
    request_id: str
    from_available_points: int
    activates_at: Instant = NEVER  # An issue's points are pending until then (NEVER: at once).
    fee_points: int = 0  # The fee debited with the points, due to fee_account_id.
    fee_account_id: str = ""
    lots: tuple[Lot, ...] = NO_LOTS  # The lots the debit took, the points' then the fee's.
    # Committed whole in this event's append (one unit): complete, no TransferCompleted follows.
    completed: bool = False


@dataclass(frozen=True, slots=True)
class TransferCredited:
    """The destination was credited; the fee's credit to the fee account is due next."""

    transfer_id: str


@dataclass(frozen=True, slots=True)
class TransferCompleted:
    """The destination was credited (and the fee account); the transfer is done."""

    transfer_id: str
    # Set when the fee account refused the fee, which went back to the source.
    fee_refused_reason: str = ""


@dataclass(frozen=True, slots=True)
class TransferCompensated:
    """The destination refused; the points went back to the source."""

    transfer_id: str
    reason: str  # an ErrorReason name, e.g. ACCOUNT_CLOSED


@dataclass(frozen=True, slots=True)
class CommandRecorded:
    """A single-account command took effect for a request id (idempotency record)."""

    request_id: str
    principal_id: str
    rpc: str
    payload_sha256: bytes
    response: bytes


@dataclass(frozen=True, slots=True)
class PointsHeld:
    """Points were escrowed for a new SELL order (available down, held up); carries its terms."""

    account_id: str
    order_id: str
    market_id: str
    amount_points: int
    limit_price_minor: int
    time_in_force: TimeInForce
    client_order_id: str
    available_points: int  # after this event
    held_points: int  # after this event
    fee_quote: OrderFeeQuote | None = None  # The order's quote, checked when it is placed.


@dataclass(frozen=True, slots=True)
class PointsReleased:
    """Held points went back to available: an order was cancelled or a trade of it was."""

    account_id: str
    order_id: str
    trade_id: str  # empty unless a cancelled trade is the cause
    amount_points: int
    available_points: int  # after this event
    held_points: int  # after this event


@dataclass(frozen=True, slots=True)
class PointsSold:
    """Settlement: the seller delivered a trade's quantity from held points (held down)."""

    account_id: str
    trade_id: str
    order_id: str
    amount_points: int
    held_points: int  # after this event
    decided_at: Instant = NEVER  # when the account's windows count it (domain/usage.py)
    lots: tuple[Lot, ...] = NO_LOTS  # The lots the points delivered were taken from.


@dataclass(frozen=True, slots=True)
class PointsBought:
    """Settlement: the buyer received a trade's quantity (available +)."""

    account_id: str
    trade_id: str
    order_id: str
    amount_points: int
    available_points: int  # after this event
    decided_at: Instant = NEVER  # when the account's windows count it (domain/usage.py)
    lots: tuple[Lot, ...] = NO_LOTS  # The seller's lots, which the points keep.
    refundable_until: Instant = NEVER  # The end of its cooling-off window (NEVER: none).


@dataclass(frozen=True, slots=True)
class BuyReserved:
    """A BUY order was opened on the account (buying +); carries its terms. Moves no points."""

    account_id: str
    order_id: str
    market_id: str
    quantity_points: int
    limit_price_minor: int
    time_in_force: TimeInForce
    client_order_id: str
    buying_points: int  # after this event
    fee_quote: OrderFeeQuote | None = None  # The order's quote, checked when it is placed.


@dataclass(frozen=True, slots=True)
class BuyReleased:
    """Points a BUY order will not buy stopped counting as being bought (buying -)."""

    account_id: str
    order_id: str
    trade_id: str  # empty unless a cancelled trade is the cause
    quantity_points: int
    buying_points: int  # after this event


@dataclass(frozen=True, slots=True)
class TransferReversed:
    """A completed issue or redemption was taken back by the transfer `reversal_transfer_id`."""

    transfer_id: str
    reversal_transfer_id: str
    amount_points: int


@dataclass(frozen=True, slots=True)
class PointsPending:
    """The destination side of an issue that activates later: pending, not spendable yet."""

    account_id: str
    transfer_id: str
    counterparty_account_id: str
    amount_points: int
    memo: str
    activates_at: Instant
    pending_points: int  # after this event


@dataclass(frozen=True, slots=True)
class PointsActivated:
    """An issue's pending points reached their activation time and became available."""

    account_id: str
    transfer_id: str
    amount_points: int
    available_points: int  # after this event
    pending_points: int  # after this event
    lots: tuple[Lot, ...] = NO_LOTS  # The lot they were earned in, under the expiry policy.


@dataclass(frozen=True, slots=True)
class PointsExpired:
    """Lots of the account reached their expiry: their points left circulation."""

    account_id: str
    amount_points: int
    available_points: int  # after this event
    lots: tuple[Lot, ...]  # The lots (or parts of them) that lapsed.
    decided_at: Instant


@dataclass(frozen=True, slots=True)
class PointsExpiringSoon:
    """Lots of the account lapse within the program's notice period: the member is told."""

    account_id: str
    amount_points: int  # The points lapsing, of the lots told of.
    first_expires_at: Instant  # The earliest of those lots' expiry.
    last_expires_at: Instant  # The latest: lots lapsing up to then are told of.


@dataclass(frozen=True, slots=True)
class BoughtPointsReturned:
    """A refunded purchase's points left the buyer, on their way back to the seller."""

    account_id: str
    trade_id: str
    amount_points: int
    available_points: int  # after this event
    lots: tuple[Lot, ...]  # The lots they were bought in.


@dataclass(frozen=True, slots=True)
class SoldPointsReturned:
    """A refunded sale's points came back to the seller."""

    account_id: str
    trade_id: str
    amount_points: int
    available_points: int  # after this event
    lots: tuple[Lot, ...]


@dataclass(frozen=True, slots=True)
class BoughtPointsRestored:
    """The refund was declined: a purchase's points came back to the buyer."""

    account_id: str
    trade_id: str
    amount_points: int
    available_points: int  # after this event
    lots: tuple[Lot, ...]


@dataclass(frozen=True, slots=True)
class AccountTierSet:
    """The account's member tier is `tier` from now on (empty: none)."""

    account_id: str
    tier: str


AccountEvent = (
    AccountOpened
    | AccountTierSet
    | PointsPending
    | PointsActivated
    | PointsMinted
    | PointsBurned
    | PointsDebited
    | PointsCredited
    | PointsReturned
    | AccountFrozen
    | AccountUnfrozen
    | AccountClosed
    | PointsHeld
    | PointsReleased
    | PointsSold
    | PointsBought
    | BuyReserved
    | BuyReleased
    | PointsExpired
    | PointsExpiringSoon
    | BoughtPointsReturned
    | SoldPointsReturned
    | BoughtPointsRestored
)

# The account events that may bring lots (domain/lots.py) to an account: a credit, a return,
# a purchase, an activation, and a refund's points coming back to either side.
LOTS_ARRIVING: Final = (
    PointsCredited,
    PointsReturned,
    PointsBought,
    PointsActivated,
    SoldPointsReturned,
    BoughtPointsRestored,
)

# Stable type name and current schema version of every account event. The names are
# written literally (not taken from the classes) so that renaming a class cannot change
# what is stored.
ACCOUNT_EVENT_TYPES: Final[dict[type[AccountEvent], tuple[str, int]]] = {
    AccountOpened: ("AccountOpened", 1),
    AccountTierSet: ("AccountTierSet", 1),
    PointsPending: ("PointsPending", 1),
    PointsActivated: ("PointsActivated", 1),
    PointsMinted: ("PointsMinted", 1),
    PointsBurned: ("PointsBurned", 1),
    PointsDebited: ("PointsDebited", 1),
    PointsCredited: ("PointsCredited", 1),
    PointsReturned: ("PointsReturned", 1),
    AccountFrozen: ("AccountFrozen", 1),
    AccountUnfrozen: ("AccountUnfrozen", 1),
    AccountClosed: ("AccountClosed", 1),
    PointsHeld: ("PointsHeld", 1),
    PointsReleased: ("PointsReleased", 1),
    PointsSold: ("PointsSold", 1),
    PointsBought: ("PointsBought", 1),
    BuyReserved: ("BuyReserved", 1),
    BuyReleased: ("BuyReleased", 1),
    PointsExpired: ("PointsExpired", 1),
    PointsExpiringSoon: ("PointsExpiringSoon", 1),
    BoughtPointsReturned: ("BoughtPointsReturned", 1),
    SoldPointsReturned: ("SoldPointsReturned", 1),
    BoughtPointsRestored: ("BoughtPointsRestored", 1),
}

ProcessEvent = (
    TransferInitiated
    | TransferCredited
    | TransferCompleted
    | TransferCompensated
    | TransferReversed
    | CommandRecorded
)

PROCESS_EVENT_TYPES: Final[dict[type[ProcessEvent], tuple[str, int]]] = {
    # 2: `completed` (a transfer committed in one unit); a version 1 event has it unset.
    TransferInitiated: ("TransferInitiated", 2),
    TransferCredited: ("TransferCredited", 1),
    TransferCompleted: ("TransferCompleted", 1),
    TransferCompensated: ("TransferCompensated", 1),
    TransferReversed: ("TransferReversed", 1),
    CommandRecorded: ("CommandRecorded", 1),
}
