"""Feed events for the query side's tests: consecutive positions, per-stream versions.

The events are what the command server's EventFeed delivers (`pointex.v1.Event` with its
typed payload), built by hand so that projection and read-store tests need no server.
"""

from __future__ import annotations

from google.protobuf.message import Message

from pointex.client.positions import encode_global
from pointex.v1 import common_pb2, events_pb2

AT_US = 1_700_000_000_000_000


class Log:
    """Feed events with consecutive positions and per-stream versions."""

    def __init__(self) -> None:
        """Start before position 1."""
        self.position = 0
        self.versions: dict[str, int] = {}

    def event(self, stream_id: str, field: str, payload: Message) -> events_pb2.Event:
        """Return the next event of `stream_id` carrying `payload` in its `field`."""
        self.position += 1
        self.versions[stream_id] = self.versions.get(stream_id, 0) + 1
        event = events_pb2.Event(
            position=common_pb2.Position(token=encode_global(self.position)),
            stream_id=stream_id,
            stream_version=self.versions[stream_id],
            type=type(payload).__name__,
            schema_version=1,
        )
        event.recorded_at.FromMicroseconds(AT_US + self.position * 1_000_000)
        getattr(event, field).CopyFrom(payload)
        return event

    def opened(self, account_id: str, owner: str, kind: int = 1) -> events_pb2.Event:
        """AccountOpened."""
        payload = events_pb2.AccountOpened(
            account_id=account_id,
            kind=kind,  # type: ignore[arg-type]
            owner_partner_id=owner,
        )
        return self.event(f"account-{account_id}", "account_opened", payload)

    def minted(self, account_id: str, amount: int, after: int) -> events_pb2.Event:
        """PointsMinted."""
        payload = events_pb2.PointsMinted(
            account_id=account_id, amount_points=amount, available_points=after
        )
        return self.event(f"account-{account_id}", "points_minted", payload)

    def transfer(
        self,
        source: str,
        target: str,
        amount: int,
        source_after: int,
        target_after: int,
        *,
        kind: int = common_pb2.TRANSFER_KIND_TRANSFER,
        debt_floor: int = 0,
    ) -> list[events_pb2.Event]:
        """TransferInitiated + PointsDebited, PointsCredited, TransferCompleted."""
        transfer_id = f"t{self.position}"
        common = {"transfer_id": transfer_id, "kind": kind, "amount_points": amount}
        return [
            self.event(
                f"transfer-{transfer_id}",
                "transfer_initiated",
                events_pb2.TransferInitiated(
                    transfer_id=transfer_id, from_account_id=source, to_account_id=target
                ),
            ),
            self.event(
                f"account-{source}",
                "points_debited",
                events_pb2.PointsDebited(
                    account_id=source,
                    counterparty_account_id=target,
                    available_points=source_after,
                    debt_floor_points=debt_floor,
                    **common,  # type: ignore[arg-type]
                ),
            ),
            self.event(
                f"account-{target}",
                "points_credited",
                events_pb2.PointsCredited(
                    account_id=target,
                    counterparty_account_id=source,
                    available_points=target_after,
                    **common,  # type: ignore[arg-type]
                ),
            ),
            self.event(
                f"transfer-{transfer_id}",
                "transfer_completed",
                events_pb2.TransferCompleted(transfer_id=transfer_id),
            ),
        ]

    def burned(self, account_id: str, amount: int, after: int) -> events_pb2.Event:
        """PointsBurned."""
        payload = events_pb2.PointsBurned(
            account_id=account_id, amount_points=amount, available_points=after
        )
        return self.event(f"account-{account_id}", "points_burned", payload)

    def returned_transfer(
        self, source: str, target: str, amount: int, source_after: int
    ) -> list[events_pb2.Event]:
        """TransferInitiated + PointsDebited, PointsReturned, TransferCompensated."""
        transfer_id = f"t{self.position}"
        debited, returned = source_after, source_after + amount
        return [
            self.event(
                f"transfer-{transfer_id}",
                "transfer_initiated",
                events_pb2.TransferInitiated(
                    transfer_id=transfer_id, from_account_id=source, to_account_id=target
                ),
            ),
            self.event(
                f"account-{source}",
                "points_debited",
                events_pb2.PointsDebited(
                    account_id=source,
                    transfer_id=transfer_id,
                    kind=common_pb2.TRANSFER_KIND_TRANSFER,
                    counterparty_account_id=target,
                    amount_points=amount,
                    available_points=debited,
                ),
            ),
            self.event(
                f"account-{source}",
                "points_returned",
                events_pb2.PointsReturned(
                    account_id=source,
                    transfer_id=transfer_id,
                    kind=common_pb2.TRANSFER_KIND_TRANSFER,
                    counterparty_account_id=target,
                    amount_points=amount,
                    available_points=returned,
                ),
            ),
            self.event(
                f"transfer-{transfer_id}",
                "transfer_compensated",
                events_pb2.TransferCompensated(transfer_id=transfer_id),
            ),
        ]

    def pending_issue(
        self,
        merchant: str,
        member: str,
        amount: int,
        *,
        merchant_after: int,
        pending_after: int,
        memo: str = "",
    ) -> list[events_pb2.Event]:
        """TransferInitiated (activates later) + PointsDebited, PointsPending, TransferCompleted.

        The issue's transfer id is `transfer_initiated.transfer_id` of the first event.
        """
        transfer_id = f"t{self.position}"
        activates_at = AT_US + 30 * 86_400_000_000
        initiated = events_pb2.TransferInitiated(
            transfer_id=transfer_id,
            kind=common_pb2.TRANSFER_KIND_ISSUE,
            from_account_id=merchant,
            to_account_id=member,
            amount_points=amount,
            memo=memo,
        )
        initiated.activates_at.FromMicroseconds(activates_at)
        pending = events_pb2.PointsPending(
            account_id=member,
            transfer_id=transfer_id,
            counterparty_account_id=merchant,
            amount_points=amount,
            memo=memo,
            pending_points=pending_after,
        )
        pending.activates_at.FromMicroseconds(activates_at)
        return [
            self.event(f"transfer-{transfer_id}", "transfer_initiated", initiated),
            self.event(
                f"account-{merchant}",
                "points_debited",
                events_pb2.PointsDebited(
                    account_id=merchant,
                    transfer_id=transfer_id,
                    kind=common_pb2.TRANSFER_KIND_ISSUE,
                    counterparty_account_id=member,
                    amount_points=amount,
                    memo=memo,
                    available_points=merchant_after,
                ),
            ),
            self.event(f"account-{member}", "points_pending", pending),
            self.event(
                f"transfer-{transfer_id}",
                "transfer_completed",
                events_pb2.TransferCompleted(transfer_id=transfer_id),
            ),
        ]

    def activated(
        self,
        account_id: str,
        transfer_id: str,
        amount: int,
        *,
        available_after: int,
        pending_after: int,
    ) -> events_pb2.Event:
        """PointsActivated: what is left pending of the issue `transfer_id` becomes available."""
        payload = events_pb2.PointsActivated(
            account_id=account_id,
            transfer_id=transfer_id,
            amount_points=amount,
            available_points=available_after,
            pending_points=pending_after,
        )
        return self.event(f"account-{account_id}", "points_activated", payload)

    def reverse_pending(
        self,
        member: str,
        merchant: str,
        issue_id: str,
        amount: int,
        *,
        member_available: int,
        merchant_after: int,
    ) -> list[events_pb2.Event]:
        """A ReverseIssue taking points back from the pending points of the issue `issue_id`.

        TransferInitiated + PointsDebited (from pending: available unchanged), PointsCredited,
        TransferCompleted.
        """
        transfer_id = f"t{self.position}"
        common = {
            "transfer_id": transfer_id,
            "kind": common_pb2.TRANSFER_KIND_REVERSE_ISSUE,
            "amount_points": amount,
        }
        return [
            self.event(
                f"transfer-{transfer_id}",
                "transfer_initiated",
                events_pb2.TransferInitiated(
                    from_account_id=member,
                    to_account_id=merchant,
                    **common,  # type: ignore[arg-type]
                ),
            ),
            self.event(
                f"account-{member}",
                "points_debited",
                events_pb2.PointsDebited(
                    account_id=member,
                    counterparty_account_id=merchant,
                    available_points=member_available,
                    pending_transfer_id=issue_id,
                    **common,  # type: ignore[arg-type]
                ),
            ),
            self.event(
                f"account-{merchant}",
                "points_credited",
                events_pb2.PointsCredited(
                    account_id=merchant,
                    counterparty_account_id=member,
                    available_points=merchant_after,
                    **common,  # type: ignore[arg-type]
                ),
            ),
            self.event(
                f"transfer-{transfer_id}",
                "transfer_completed",
                events_pb2.TransferCompleted(transfer_id=transfer_id),
            ),
        ]

    def reversal(
        self,
        source: str,
        target: str,
        amount: int,
        *,
        source_after: int,
        target_after: int,
        debt_floor: int = 0,
        kind: int = common_pb2.TRANSFER_KIND_REVERSE_ISSUE,
    ) -> list[events_pb2.Event]:
        """A ReverseIssue (or ReverseRedeem) taking available points back from `source`.

        TransferInitiated + PointsDebited, PointsCredited, TransferCompleted. `debt_floor`
        (negative) is the lowest balance the program's debt policy allowed the debit, for a
        reversal that takes `source` below zero; 0 for none.
        """
        return self.transfer(
            source, target, amount, source_after, target_after, kind=kind, debt_floor=debt_floor
        )

    def frozen(self, account_id: str, reason: str = "") -> events_pb2.Event:
        """AccountFrozen by an operator."""
        payload = events_pb2.AccountFrozen(
            account_id=account_id, reason=reason, frozen_by_role=common_pb2.ROLE_OPERATOR
        )
        return self.event(f"account-{account_id}", "account_frozen", payload)

    def unfrozen(self, account_id: str) -> events_pb2.Event:
        """AccountUnfrozen."""
        payload = events_pb2.AccountUnfrozen(account_id=account_id)
        return self.event(f"account-{account_id}", "account_unfrozen", payload)

    def closed(self, account_id: str) -> events_pb2.Event:
        """AccountClosed."""
        payload = events_pb2.AccountClosed(account_id=account_id)
        return self.event(f"account-{account_id}", "account_closed", payload)

    def tier_set(self, account_id: str, tier: str) -> events_pb2.Event:
        """AccountTierSet (an empty tier clears it)."""
        payload = events_pb2.AccountTierSet(account_id=account_id, tier=tier)
        return self.event(f"account-{account_id}", "account_tier_set", payload)

    def program_rules_set(
        self, *limits: common_pb2.TransactionLimit, reversal_debt_max: int = 0
    ) -> events_pb2.Event:
        """ProgramRulesSet on program-main: these rules replace the rules before them."""
        rules = common_pb2.ProgramRules(limits=limits, reversal_debt_max_points=reversal_debt_max)
        payload = events_pb2.ProgramRulesSet(rules=rules)
        return self.event("program-main", "program_rules_set", payload)

    def recorded(self, key: str) -> events_pb2.Event:
        """CommandRecorded: an event no projection reads."""
        payload = events_pb2.CommandRecorded(request_id=key, rpc="MintPoints")
        return self.event(f"request-{key}", "command_recorded", payload)
