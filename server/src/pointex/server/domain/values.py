"""Value types of the domain: kinds, statuses, roles and the caller of a command."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AccountKind(enum.Enum):
    """What an account is for: a member holds points, a merchant funds and receives them."""

    MEMBER = "MEMBER"
    MERCHANT = "MERCHANT"


class AccountStatus(enum.Enum):
    """OPEN moves freely; FROZEN receives but sends nothing; CLOSED does nothing."""

    OPEN = "OPEN"
    FROZEN = "FROZEN"
    CLOSED = "CLOSED"


class TransferKind(enum.Enum):
    """Which two-account movement a debit or credit belongs to; each has its kind rules."""

    ISSUE = "ISSUE"  # merchant -> member: a reward
    REDEEM = "REDEEM"  # member -> merchant: spending
    TRANSFER = "TRANSFER"  # member -> member: a gift
    REVERSE_ISSUE = "REVERSE_ISSUE"  # member -> merchant: an issue taken back
    REVERSE_REDEEM = "REVERSE_REDEEM"  # merchant -> member: a redemption given back
    FEE = "FEE"  # member -> the program's fee account: a transfer's fee, a step of that transfer


# The account kinds a movement requires of its (source, destination).
TRANSFER_KINDS: dict[TransferKind, tuple[AccountKind, AccountKind]] = {
    TransferKind.ISSUE: (AccountKind.MERCHANT, AccountKind.MEMBER),
    TransferKind.REDEEM: (AccountKind.MEMBER, AccountKind.MERCHANT),
    TransferKind.TRANSFER: (AccountKind.MEMBER, AccountKind.MEMBER),
    TransferKind.REVERSE_ISSUE: (AccountKind.MEMBER, AccountKind.MERCHANT),
    TransferKind.REVERSE_REDEEM: (AccountKind.MERCHANT, AccountKind.MEMBER),
    TransferKind.FEE: (AccountKind.MEMBER, AccountKind.MERCHANT),
}

# The kind of movement each reversal takes back, and the reversal of each reversible kind.
REVERSED_KINDS: dict[TransferKind, TransferKind] = {
    TransferKind.REVERSE_ISSUE: TransferKind.ISSUE,
    TransferKind.REVERSE_REDEEM: TransferKind.REDEEM,
}


class Role(enum.Enum):
    """Who is calling: an operator runs the program, a partner owns accounts."""

    OPERATOR = "OPERATOR"
    PARTNER = "PARTNER"
    PAYMENT_PROVIDER = "PAYMENT_PROVIDER"
    QUERY_SERVER = "QUERY_SERVER"  # may only follow the EventFeed


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal on whose behalf a command runs."""

    role: Role
    partner_id: str  # the tenant; empty for the operator and providers

    def may_act_for(self, owner_partner_id: str) -> bool:
        """Return whether this caller may move or manage an account owned by `owner_partner_id`."""
        if self.role is Role.OPERATOR:
            return True
        return self.role is Role.PARTNER and self.partner_id == owner_partner_id


OPERATOR = Caller(Role.OPERATOR, "")


# --- Market --------------------------------------------------------------------------------


class OrderSide(enum.Enum):
    """A BUY order pays money for points; a SELL order holds points and sells them."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> OrderSide:
        """Return the side an order of this side matches against."""
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class TimeInForce(enum.Enum):
    """GTC rests until matched or cancelled; IOC matches what it can and drops the rest."""

    GTC = "GTC"
    IOC = "IOC"


class OrderCancelReason(enum.Enum):
    """Why an order's remainder left the book unmatched."""

    REQUESTED = "REQUESTED"
    IOC_REMAINDER = "IOC_REMAINDER"


class TradeCancelReason(enum.Enum):
    """Why a trade ended without settling."""

    PAYMENT_FAILED = "PAYMENT_FAILED"
    PAYMENT_DEADLINE_PASSED = "PAYMENT_DEADLINE_PASSED"
    PAYMENT_REQUEST_FAILED = "PAYMENT_REQUEST_FAILED"


@dataclass(frozen=True, slots=True)
class Instant:
    """A moment by the server clock, in whole milliseconds since the Unix epoch."""

    unix_ms: int


@dataclass(frozen=True, slots=True)
class Span:
    """A length of time in whole milliseconds."""

    ms: int


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units (cents, fen) of an ISO 4217 currency."""

    amount_minor: int
    currency: str


BPS_PER_UNIT = 10_000


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """fee = ceil(notional * rate_bps / 10000) + fixed_minor, in integers."""

    rate_bps: int
    fixed_minor: int

    def fee_minor(self, notional_minor: int) -> int:
        """Return the fee on `notional_minor`, rounded up to a whole minor unit."""
        assert 0 <= self.rate_bps <= BPS_PER_UNIT, self
        assert self.fixed_minor >= 0, self
        return -(-notional_minor * self.rate_bps // BPS_PER_UNIT) + self.fixed_minor


@dataclass(frozen=True, slots=True)
class OrderFeeQuote:
    """An order's fee for one trade at its limit price, and the fee schedule's version.

    Money, in minor units of the market's currency (a transfer's quote is in points:
    program.FeeQuote). See domain/market_fees.py.
    """

    fee_minor: int
    schedule_version: int


@dataclass(frozen=True, slots=True)
class Market:
    """A market's configuration: currency, fees, payment window, bounds and provider."""

    market_id: str
    currency: str
    buyer_fee: FeeSchedule
    seller_fee: FeeSchedule
    payment_window: Span
    max_price_minor: int
    max_quantity_points: int
    provider_id: str
    open: bool


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: who it is and in which role."""

    principal_id: str
    role: Role

    @property
    def caller(self) -> Caller:
        """Return the domain's view of this principal."""
        partner_id = self.principal_id if self.role is Role.PARTNER else ""
        return Caller(self.role, partner_id)
