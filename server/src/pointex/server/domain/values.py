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


# The account kinds a movement requires of its (source, destination).
TRANSFER_KINDS: dict[TransferKind, tuple[AccountKind, AccountKind]] = {
    TransferKind.ISSUE: (AccountKind.MERCHANT, AccountKind.MEMBER),
    TransferKind.REDEEM: (AccountKind.MEMBER, AccountKind.MERCHANT),
    TransferKind.TRANSFER: (AccountKind.MEMBER, AccountKind.MEMBER),
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
