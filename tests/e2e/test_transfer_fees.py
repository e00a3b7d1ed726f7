"""Transfer fees end to end: set by the operator, quoted on the query server, paid, audited.

Real command and query server processes on SQLite, driven over gRPC: the operator sets a
fee schedule naming the program's fee account; a partner quotes a transfer, sends it with
the quote, and the member pays exactly the quoted fee into the fee account; once the
schedule changes, the old quote is refused with FEE_SCHEDULE_CHANGED and its ErrorInfo, and
nothing moves. Both read sides agree: the movements show the fee, and CheckInvariants finds
every point accounted for.
"""

from __future__ import annotations

import grpc

from pointex.v1 import command_service_pb2 as cpb
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests.e2e.test_commands import MERCHANT, rid
from tests.e2e.test_program_rules import error_info, set_rules
from tests.e2e.test_query import Setup, assert_invariants, rpc_error
from tests.e2e.test_query import setup as setup  # noqa: PLC0414 - the fixture, re-exported.


def _fee_rules(fee_account_id: str, flat: int, per_mille: int) -> common_pb2.ProgramRules:
    return common_pb2.ProgramRules(
        transfer_fee=common_pb2.TransferFee(
            flat_points=flat, per_mille=per_mille, fee_account_id=fee_account_id
        )
    )


def _at(s: Setup) -> common_pb2.Position:
    assert s.last is not None
    return s.last


async def _quote(s: Setup, source: str, amount: int) -> qpb.QuoteTransferResponse:
    reply = await s.q_acme.call(
        "QuoteTransfer",
        qpb.QuoteTransferRequest(min_position=s.last, from_account_id=source, amount_points=amount),
    )
    assert isinstance(reply, qpb.QuoteTransferResponse)
    return reply


async def _transfer(
    s: Setup, amount: int, quote: common_pb2.FeeQuote
) -> cpb.TransferPointsResponse:
    reply = await s.acme.call(
        "TransferPoints",
        cpb.TransferPointsRequest(
            request_id=rid(),
            from_account_id=s.alice,
            to_account_id=s.bob,
            amount_points=amount,
            fee_quote=quote,
        ),
    )
    assert isinstance(reply, cpb.TransferPointsResponse)
    s.last = reply.position
    return reply


async def test_a_quoted_fee_is_paid_and_a_stale_quote_is_refused(setup: Setup) -> None:
    """Quote, pay, see it on both sides; change the schedule; the old quote moves nothing."""
    s = setup
    fees = await s.open(s.acme, "acme:fees", MERCHANT)
    await s.issue(s.alice, 1_000)
    assert await set_rules(s, 0, _fee_rules(fees, 2, 15)) == 1
    quoted = await _quote(s, s.alice, 200)
    assert (quoted.quote.fee_points, quoted.quote.schedule_version) == (2 + 3, 1)
    assert (quoted.fee_account_id, quoted.total_points) == (fees, 205)
    paid = await _transfer(s, 200, quoted.quote)
    assert (paid.fee_points, paid.from_available_points) == (5, 795)
    fee_account = await s.q_operator.account(fees, _at(s))
    assert fee_account.available_points == 5

    assert await set_rules(s, 1, _fee_rules(fees, 9, 0)) == 2
    error = await rpc_error(_transfer(s, 200, quoted.quote))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "FEE_SCHEDULE_CHANGED"
    assert dict(info.metadata) == {"schedule_version": "2", "fee_points": "9"}
    alice = await s.q_acme.account(s.alice, _at(s))
    assert alice.available_points == 795  # The refused transfer moved nothing.
    fresh = await _quote(s, s.alice, 200)
    assert (fresh.quote.fee_points, fresh.quote.schedule_version) == (9, 2)
    await _transfer(s, 200, fresh.quote)
    history = await s.q_acme.history(s.alice, _at(s))
    out = [m for m in history if m.kind == common_pb2.MOVEMENT_KIND_TRANSFER_OUT]
    assert [(m.available_delta_points, m.fee_points) for m in out] == [(-205, 5), (-209, 9)]
    await assert_invariants(s.q_operator, s.last)
