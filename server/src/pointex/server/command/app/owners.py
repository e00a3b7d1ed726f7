"""Which command server takes a step of a transfer: the one that owns the step's account.

With slice ranges split across command servers (docs/scale-out.md), an account's events are
written only by the owner of its range: the database's epoch fence refuses anyone else. A
transfer is driven by the owner of its source account, which commits the debit with the
transfer's record. When another server owns the destination (or the fee account), the
driver asks that server to take the credit step (`Owners.credit`): it reads the transfer's
record, decides the step due, and commits the credit on its account with the record's next
event, at the version it read. The driver then takes the next step (the fee's credit, or the
return of the points when the credit was refused) from what the owner answered.

Each step is one unit on one account and the transfer's record; the record's version keeps
two drivers from taking one step twice, whichever servers they run on (migration 0005
leaves records to their versions). A destination another server owns is not checked before
the debit: its credit decides, and a refused credit returns the points, with the reason the
check would have given.

A server that owns every range (alone, or holding them all) has every account here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from pointex.server.domain import streams
from pointex.server.slices import range_of

# Asks the owner of an account to take the credit due on it: (account id, transfer id) to the
# credit's position (see Owners.credit).
CreditAt = Callable[[str, str], Awaitable[int]]


class Owners(Protocol):
    """Where each account's steps are taken."""

    def here(self, account_id: str) -> bool:
        """Tell whether this server owns the account's range (its actor may write it)."""
        ...

    def owns(self, stream_id: str) -> bool:
        """Tell whether this server owns the stream's range (it may write the stream)."""
        ...

    async def credit(self, account_id: str, transfer_id: str) -> int:
        """Have the owner of `account_id` take the credit step due on it; return its position.

        Raises the credit's refusal (a DomainError), WrongExpectedVersion on the transfer's
        stream when no credit is due there any more (another driver took the step), or
        StoreUnavailable when the owner cannot take it now (retry later).
        """
        ...


class AllHere:
    """Every account is here: the server owns every range."""

    def here(self, account_id: str) -> bool:  # noqa: ARG002 - every account is.
        """Return True."""
        return True

    def owns(self, stream_id: str) -> bool:  # noqa: ARG002 - every stream is.
        """Return True."""
        return True

    async def credit(self, account_id: str, transfer_id: str) -> int:
        """Never called: every account's steps are taken here."""
        raise AssertionError(f"credit of {transfer_id} asked elsewhere for {account_id}")


ALL_HERE: Final = AllHere()


class RangeOwners:
    """The accounts of the slice ranges this server holds are here; steps on others go out."""

    def __init__(self, holds: Callable[[int], bool], credit_at: CreditAt) -> None:
        """Own the ranges `holds` says this server holds; ask others by `credit_at`."""
        self._holds = holds
        self._credit_at = credit_at

    def here(self, account_id: str) -> bool:
        """Tell whether this server holds the lease of the account's range now."""
        return self.owns(streams.account(account_id))

    def owns(self, stream_id: str) -> bool:
        """Tell whether this server holds the lease of the stream's range now."""
        return self._holds(range_of(stream_id))

    async def credit(self, account_id: str, transfer_id: str) -> int:
        """Have the owner of `account_id` take the credit due on it (see `Owners.credit`)."""
        return await self._credit_at(account_id, transfer_id)
