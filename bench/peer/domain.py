"""The peer contender's aggregates, written the way the eventsourcing library's docs teach.

An `Account` records `Opened`, `Credited` and `Debited` events through the library's `@event`
decorator; the checks run in the plain command methods before an event is triggered, so a
refused command leaves no pending event. A `Request` aggregate per request id records what a
command did, which makes a retried request id detectable (the library's unique-name idiom:
an aggregate whose id is derived from the name, so a second one cannot be saved).

Ids are version-5 UUIDs of the names, as in the library's documentation, because the
library's default (and best-trodden) originator id type on PostgreSQL is `uuid`.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from bench.lockbased.store import MEMBER, MERCHANT, Rejected

OPEN = "OPEN"


def account_uuid(account_id: str) -> UUID:
    """Return the aggregate id of the account named `account_id`."""
    return uuid5(NAMESPACE_URL, f"/pointex/accounts/{account_id}")


def request_uuid(request_id: str) -> UUID:
    """Return the aggregate id of the request named `request_id`."""
    return uuid5(NAMESPACE_URL, f"/pointex/requests/{request_id}")


class Account(Aggregate):
    """A member or merchant account: its kind, its status and its available points."""

    @staticmethod
    def create_id(account_id: str) -> UUID:
        """Derive the aggregate id from the account's name, so a name is opened once."""
        return account_uuid(account_id)

    @event("Opened")
    def __init__(self, account_id: str, kind: str, owner_partner_id: str) -> None:
        """Open an account with zero points."""
        assert kind in {MEMBER, MERCHANT}, kind
        self.account_id = account_id
        self.kind = kind
        self.owner_partner_id = owner_partner_id
        self.status = OPEN
        self.available_points = 0

    def check_open(self) -> None:
        """Refuse a closed destination (checked before the source is debited)."""
        if self.status != OPEN:
            raise Rejected("FAILED_PRECONDITION", "ACCOUNT_CLOSED", "destination is closed")

    def credit(self, amount_points: int, request_id: str) -> None:
        """Add points to an open account."""
        self.check_open()
        self._credited(amount_points, request_id)

    def debit(self, amount_points: int, request_id: str) -> None:
        """Take points from an open account that has them."""
        if self.status != OPEN:
            raise Rejected("FAILED_PRECONDITION", f"ACCOUNT_{self.status}", "source")
        if self.available_points < amount_points:
            raise Rejected("FAILED_PRECONDITION", "INSUFFICIENT_POINTS", "not enough points")
        self._debited(amount_points, request_id)

    def check_kind(self, kind: str) -> None:
        """Refuse an account of another kind than the command needs."""
        if self.kind != kind:
            raise Rejected("FAILED_PRECONDITION", "ACCOUNT_KIND_MISMATCH", f"expected a {kind}")

    @event("Credited")
    def _credited(self, amount_points: int, request_id: str) -> None:
        assert amount_points > 0, request_id
        self.available_points += amount_points

    @event("Debited")
    def _debited(self, amount_points: int, request_id: str) -> None:
        assert 0 < amount_points <= self.available_points, request_id
        self.available_points -= amount_points


class Request(Aggregate):
    """What one request id did: its command, accounts, amount and the reply's balance."""

    @staticmethod
    def create_id(request_id: str) -> UUID:
        """Derive the aggregate id from the request id, so a request is recorded once."""
        return request_uuid(request_id)

    @event("Recorded")
    def __init__(
        self,
        *,
        request_id: str,
        command: str,
        from_account_id: str | None,
        to_account_id: str,
        amount_points: int,
        result_available_points: int,
    ) -> None:
        """Record a command that succeeded."""
        self.request_id = request_id
        self.command = command
        self.from_account_id = from_account_id
        self.to_account_id = to_account_id
        self.amount_points = amount_points
        self.result_available_points = result_available_points
