"""CheckInvariants: judge the audit figures of the read models against the invariants.

I1 (conservation): Σ available + Σ held + Σ pending + in flight = Σ minted - Σ burned -
Σ expired, where expired means lapsed under the program's expiry policy (PointsExpired: out
of circulation as a burn is, counted apart so that the figures tell the two apart), pending
means issued with a later activation time and not active yet, and in flight means debited by
a transfer and not yet credited (or arrived as pending) or returned, or sold by a
settlement and not yet bought (the debit/credit events themselves, not the process's final
event, so a batch ending between a credit and its TransferCompleted does not count the points
twice). A transfer's fee is debited with its points and is in flight on its own until the fee
account is credited with it, or it comes back to the source (the fee account refused it, or
the destination refused the whole transfer). A cooling-off refund's points are in flight from
the buyer's BoughtPointsReturned until the seller's SoldPointsReturned (refund made) or the
buyer's BoughtPointsRestored (refund declined). Per account, held and pending are each ≥ 0,
available is ≥ the account's debt floor (0, or while a reversal under the program's debt
policy has left the account in debt, the floor that reversal was decided under), and their
sum is at most the ceiling (the command side counts an account's total the same way).
I2 (escrow), per account: held = open quantity of its resting SELL orders + quantity of its
trades pending payment as seller + its escrow steps in flight: a hold whose order is not
placed yet, a cancelled order or trade whose points are not yet released or returned to the
book (+), a sale delivered before its trade settled (-). Refunds move available points only,
and concern settled trades, so they leave I2 as it is. The read store computes the
expected figure per account and lists the accounts whose held points differ.
"""

from __future__ import annotations

from pointex.client.positions import position_message
from pointex.server import limits
from pointex.server.query.readstore.port import AccountRow, Audit
from pointex.v1 import query_service_pb2 as pb


def _per_account(
    invariant: pb.Invariant.ValueType,
    accounts: tuple[AccountRow, ...],
    expected: int,
    actual: tuple[int, ...],
    message: str,
) -> list[pb.Violation]:
    return [
        pb.Violation(
            invariant=invariant,
            account_ids=[row.account_id],
            expected_points=expected,
            actual_points=value,
            message=message,
        )
        for row, value in zip(accounts, actual, strict=True)
    ]


def _below_bound(row: AccountRow) -> pb.Violation:
    """Return the NON_NEGATIVE violation of an account: its first balance below its bound."""
    if row.available_points < row.debt_floor_points:
        bound, actual = row.debt_floor_points, row.available_points
        message = "available is below the account's debt floor"
        if bound == 0:
            message = "available is negative"
    elif row.held_points < 0:
        bound, actual, message = 0, row.held_points, "held is negative"
    else:
        assert row.pending_points < 0, row
        bound, actual, message = 0, row.pending_points, "pending is negative"
    return pb.Violation(
        invariant=pb.INVARIANT_NON_NEGATIVE,
        account_ids=[row.account_id],
        expected_points=bound,
        actual_points=actual,
        message=message,
    )


def check(audit: Audit, violations_max: int) -> pb.CheckInvariantsResponse:
    """Return the CheckInvariants answer for one audit snapshot."""
    assert 1 <= violations_max <= limits.invariant_violations_max, violations_max
    violations: list[pb.Violation] = []
    count = 0
    supply = audit.minted_points - audit.burned_points - audit.expired_points
    held_anywhere = (
        audit.available_points + audit.held_points + audit.pending_points + audit.in_flight_points
    )
    if supply != held_anywhere:
        count += 1
        violations.append(
            pb.Violation(
                invariant=pb.INVARIANT_CONSERVATION,
                expected_points=supply,
                actual_points=held_anywhere,
                message=(
                    "available + held + pending + in flight differs from minted - burned - expired"
                ),
            )
        )
    violations += [_below_bound(row) for row in audit.negative]
    violations += _per_account(
        pb.INVARIANT_BALANCE_CEILING,
        audit.over_ceiling,
        limits.points_balance_max,
        tuple(
            row.available_points + row.held_points + row.pending_points
            for row in audit.over_ceiling
        ),
        "available + held + pending exceeds the per-account ceiling",
    )
    violations += [
        pb.Violation(
            invariant=pb.INVARIANT_ESCROW,
            account_ids=[row.account_id],
            expected_points=expected,
            actual_points=row.held_points,
            message="held differs from open SELL quantity + quantity pending payment as seller",
        )
        for row, expected in audit.escrow
    ]
    count += audit.negative_count + audit.over_ceiling_count + audit.escrow_count
    return pb.CheckInvariantsResponse(
        as_of=position_message(audit.position),
        ok=count == 0,
        minted_points=audit.minted_points,
        burned_points=audit.burned_points,
        expired_points=audit.expired_points,
        available_points=audit.available_points,
        held_points=audit.held_points,
        pending_points=audit.pending_points,
        in_flight_points=audit.in_flight_points,
        open_sell_quantity_points=audit.open_sell_quantity_points,
        pending_trade_quantity_points=audit.pending_trade_quantity_points,
        account_count=audit.account_count,
        violations=violations[:violations_max],
        violation_count=count,
    )
