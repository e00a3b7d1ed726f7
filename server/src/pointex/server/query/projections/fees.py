"""Transfer fees in the projections: the fee in flight, its credit or return, its schedule.

A TransferPoints under a fee schedule (ProgramRules.transfer_fee) debits its fee with its
points (`PointsDebited.fee_points`). The points are in flight under the transfer's stream id
until the destination is credited; the fee is in flight under a key of its own until the fee
account's `PointsCredited` of kind FEE, or, when that account refuses it, the source's
`PointsReturned` of kind FEE. A destination that refuses the transfer returns the points and
the fee together, which settles both.

Returns and fee credits are checked against the points in flight they settle, so the batch
is given those rows (`in_flight_ids_of`, loaded by the caller through `keys_of`).

The fee schedule's version is the rules' version at which `transfer_fee` last changed,
computed by the domain's own `program.evolve`, so the query side quotes exactly the version
the command side holds a quote to.
"""

from __future__ import annotations

from typing import Final

from pointex.server.domain import program, streams
from pointex.server.query.projections.state import BatchState
from pointex.server.query.readstore.port import ProgramRulesRow
from pointex.v1 import common_pb2, events_pb2

FEE_KIND: Final = common_pb2.TRANSFER_KIND_FEE
_FEE_SUFFIX: Final = "/fee"


def fee_in_flight(transfer_id: str) -> str:
    """Return the key of a transfer's fee in flight: `transfer-<id>/fee`."""
    return streams.transfer(transfer_id) + _FEE_SUFFIX


def in_flight_ids_of(payload: object) -> tuple[str, ...]:
    """Return the points in flight an event settles and is checked against, or ()."""
    if isinstance(payload, events_pb2.PointsReturned):
        return streams.transfer(payload.transfer_id), fee_in_flight(payload.transfer_id)
    if isinstance(payload, events_pb2.PointsCredited) and payload.kind == FEE_KIND:
        return (fee_in_flight(payload.transfer_id),)
    return ()


def settle_fee_credited(batch: BatchState, p: events_pb2.PointsCredited) -> None:
    """Settle the fee in flight the fee account was credited with."""
    key = fee_in_flight(p.transfer_id)
    fee = batch.in_flight_row(key)
    assert fee is not None, f"no fee in flight for {key!r} (load keys_of(...).in_flight_ids)"
    # The fee account takes exactly the fee the source paid, and names the source.
    assert fee.amount_points == p.amount_points, (fee, p)
    assert fee.account_id == p.counterparty_account_id, (fee, p)
    batch.remove_in_flight(key)


def settle_returned(batch: BatchState, p: events_pb2.PointsReturned) -> None:
    """Settle what a return brings back: the fee alone (kind FEE), or the points and fee."""
    fee_key = fee_in_flight(p.transfer_id)
    fee = batch.in_flight_row(fee_key)
    if p.kind == FEE_KIND:
        assert fee is not None, f"no fee in flight for {fee_key!r}"
        assert (fee.account_id, fee.amount_points) == (p.account_id, p.amount_points), (fee, p)
        batch.remove_in_flight(fee_key)
        return
    key = streams.transfer(p.transfer_id)
    points = batch.in_flight_row(key)
    assert points is not None, f"no points in flight for {key!r} (load keys_of(...).in_flight_ids)"
    assert points.account_id == p.account_id, (points, p)
    # A refused destination returns everything the debit took: the points and their fee.
    fee_points = 0 if fee is None else fee.amount_points
    assert p.amount_points == points.amount_points + fee_points, (points, fee, p)
    batch.remove_in_flight(key)
    if fee is not None:
        batch.remove_in_flight(fee_key)


def fee_schedule_version(
    previous: ProgramRulesRow | None, version: int, rules: common_pb2.ProgramRules
) -> int:
    """Return the fee schedule's version once `rules` (at `version`) replace `previous`."""
    after = program.evolve(program_of(previous), program.ProgramRulesSet(_fee_rules(rules)))
    assert after.version == version, (after, version)
    return after.fees_version


def program_of(row: ProgramRulesRow | None) -> program.Program:
    """Return the domain program of the rules in force, as far as the fee schedule goes.

    That is all a quote needs; the limits are the command side's to enforce.
    """
    if row is None:
        return program.NO_PROGRAM
    rules = _fee_rules(common_pb2.ProgramRules.FromString(row.body))
    return program.Program(row.version, rules, row.fee_schedule_version)


def _fee_rules(rules: common_pb2.ProgramRules) -> program.ProgramRules:
    """Return the domain rules as far as the fee schedule goes (nothing else versions it)."""
    fee = rules.transfer_fee
    return program.ProgramRules(
        transfer_fee=program.TransferFee(fee.flat_points, fee.per_mille, fee.fee_account_id)
    )
