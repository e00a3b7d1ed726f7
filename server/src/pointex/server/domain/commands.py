"""Commands the account aggregate decides: imperative, frozen, named as in the proto.

Two-account movements (IssuePoints, RedeemPoints, TransferPoints) are processes
(processes.py) that send the account-level steps below to each account in turn:
`DebitPoints` to the source, then `CreditPoints` to the destination, or
`ReturnPoints` back to the source when the credit is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from pointex.server.domain.events import NEVER
from pointex.server.domain.lots import NO_LOTS, Lot
from pointex.server.domain.program import FeeQuote
from pointex.server.domain.values import (
    AccountKind,
    Caller,
    Instant,
    OrderFeeQuote,
    TimeInForce,
    TransferKind,
)


@dataclass(frozen=True, slots=True)
class OpenAccount:
    """Open an account of `kind` owned by the partner `owner_partner_id`."""

    caller: Caller
    account_id: str
    kind: AccountKind
    owner_partner_id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class MintPoints:
    """Create new points in a merchant account (operator only): program funding."""

    caller: Caller
    account_id: str
    amount_points: int
    memo: str


@dataclass(frozen=True, slots=True)
class BurnPoints:
    """Retire points from a merchant account (operator only)."""

    caller: Caller
    account_id: str
    amount_points: int
    memo: str


@dataclass(frozen=True, slots=True)
class DebitPoints:
    """First step of a movement: take points from the source account."""

    caller: Caller
    account_id: str
    transfer_id: str
    kind: TransferKind
    counterparty_account_id: str
    amount_points: int
    memo: str
    reverses: str = ""  # A reversal's original: an issue's pending points go back first.
    fee_quote: FeeQuote | None = None  # A transfer's quoted fee, binding the fee it pays.


@dataclass(frozen=True, slots=True)
class CreditPoints:
    """Second step of a movement: give the points to the destination account."""

    account_id: str
    transfer_id: str
    kind: TransferKind
    counterparty_account_id: str
    amount_points: int
    memo: str
    activates_at: Instant = NEVER  # An issue's points are pending until then (NEVER: at once).
    lots: tuple[Lot, ...] = NO_LOTS  # A member-to-member transfer's lots, taken by its debit.


@dataclass(frozen=True, slots=True)
class ActivatePoints:
    """Make an issue's pending points available, if their activation time has come."""

    account_id: str
    transfer_id: str


@dataclass(frozen=True, slots=True)
class ReturnPoints:
    """Compensation of a movement whose credit was refused: return points to the source."""

    account_id: str
    transfer_id: str
    kind: TransferKind
    counterparty_account_id: str
    amount_points: int
    lots: tuple[Lot, ...] = NO_LOTS  # The lots the debit took for these points.


@dataclass(frozen=True, slots=True)
class ExpirePoints:
    """Lapse the account's lots whose time passed, and tell of those lapsing soon."""

    account_id: str


@dataclass(frozen=True, slots=True)
class SetAccountTier:
    """Set the account's member tier (empty: none); program limits may name tiers."""

    caller: Caller
    account_id: str
    tier: str


@dataclass(frozen=True, slots=True)
class FreezeAccount:
    """Stop all outgoing movement from an account."""

    caller: Caller
    account_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class UnfreezeAccount:
    """Allow outgoing movement again."""

    caller: Caller
    account_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CloseAccount:
    """Close an empty account for good."""

    caller: Caller
    account_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class HoldPoints:
    """First step of a SELL order: escrow its quantity (available -> held)."""

    caller: Caller
    account_id: str
    order_id: str
    market_id: str
    amount_points: int
    limit_price_minor: int
    time_in_force: TimeInForce
    client_order_id: str
    fee_quote: OrderFeeQuote | None = None  # The order's, kept for its placement.


@dataclass(frozen=True, slots=True)
class ReleasePoints:
    """Return held points to available: the order or one of its trades was cancelled."""

    account_id: str
    order_id: str
    trade_id: str
    amount_points: int


@dataclass(frozen=True, slots=True)
class SellPoints:
    """Settlement, seller side: deliver a trade's quantity out of held points."""

    account_id: str
    trade_id: str
    order_id: str
    amount_points: int


@dataclass(frozen=True, slots=True)
class BuyPoints:
    """Settlement, buyer side: receive a trade's quantity into available points."""

    account_id: str
    trade_id: str
    order_id: str
    amount_points: int
    lots: tuple[Lot, ...] = NO_LOTS  # The lots the seller's delivery took.


@dataclass(frozen=True, slots=True)
class ReturnBought:
    """Cooling-off, buyer side: give a refundable purchase's points back (they leave now)."""

    caller: Caller
    account_id: str
    trade_id: str


@dataclass(frozen=True, slots=True)
class ReturnSold:
    """Cooling-off, seller side: take a refunded sale's points back."""

    account_id: str
    trade_id: str
    amount_points: int
    lots: tuple[Lot, ...]


@dataclass(frozen=True, slots=True)
class RestoreBought:
    """Cooling-off, declined: give the buyer a purchase's points back, in their lots."""

    account_id: str
    trade_id: str
    amount_points: int
    lots: tuple[Lot, ...]


@dataclass(frozen=True, slots=True)
class ReserveBuy:
    """First step of a BUY order: count its quantity as being bought, so the account stays open.

    Moves no points: the buyer pays through the payment provider, not in points.
    """

    caller: Caller
    account_id: str
    order_id: str
    market_id: str
    quantity_points: int
    limit_price_minor: int
    time_in_force: TimeInForce
    client_order_id: str
    fee_quote: OrderFeeQuote | None = None  # The order's, kept for its placement.


@dataclass(frozen=True, slots=True)
class ReleaseBuy:
    """Stop counting what a BUY order will not buy (cancelled, rejected, IOC, trade cancelled)."""

    account_id: str
    order_id: str
    trade_id: str
    quantity_points: int


AccountCommand = (
    OpenAccount
    | MintPoints
    | BurnPoints
    | DebitPoints
    | CreditPoints
    | ReturnPoints
    | FreezeAccount
    | SetAccountTier
    | ActivatePoints
    | ExpirePoints
    | UnfreezeAccount
    | CloseAccount
    | HoldPoints
    | ReleasePoints
    | SellPoints
    | BuyPoints
    | ReserveBuy
    | ReleaseBuy
    | ReturnBought
    | ReturnSold
    | RestoreBought
)
