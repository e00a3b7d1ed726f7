"""Program rules end to end: the operator sets limits, partners meet them, both servers agree.

Real command and query server processes on SQLite, driven over gRPC: a limit set with
SetProgramRules refuses a larger transfer with FAILED_PRECONDITION and the ErrorInfo a client
branches on; a tier set with SetAccountTier brings its own limit; a market order meets the
limit of its side; GetProgramRules and GetAccount on the query server show what was set.
"""

from __future__ import annotations

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pointex.v1 import command_service_pb2 as cpb
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests.e2e.test_commands import rid
from tests.e2e.test_query import Setup, rpc_error
from tests.e2e.test_query import setup as setup  # noqa: PLC0414 - the fixture, re-exported.

TRANSFER = common_pb2.LIMITED_OPERATION_TRANSFER
BUY = common_pb2.LIMITED_OPERATION_MARKET_BUY


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """Return the ErrorInfo a failed call carries."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


RULES = common_pb2.ProgramRules(
    limits=[
        common_pb2.TransactionLimit(operation=TRANSFER, max_points=100),
        common_pb2.TransactionLimit(operation=TRANSFER, tier="gold", max_points=500),
        common_pb2.TransactionLimit(operation=BUY, min_points=10, step_points=10),
    ]
)


async def set_rules(s: Setup, expected_version: int, rules: common_pb2.ProgramRules) -> int:
    """Set the program's rules as the operator; return their version."""
    reply = await s.operator.call(
        "SetProgramRules",
        cpb.SetProgramRulesRequest(
            request_id=rid(), expected_version=expected_version, rules=rules
        ),
    )
    assert isinstance(reply, cpb.SetProgramRulesResponse)
    s.last = reply.position
    return reply.version


async def test_a_transfer_above_the_limit_is_refused_with_what_is_left(setup: Setup) -> None:
    """Refusal: FAILED_PRECONDITION / LIMIT_EXCEEDED with operation, window, limit, remaining."""
    s = setup
    await s.issue(s.alice, 1_000)
    assert await set_rules(s, 0, RULES) == 1
    error = await rpc_error(s.transfer(s.acme, s.alice, s.bob, 101))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "LIMIT_EXCEEDED"
    assert dict(info.metadata) == {
        "account_id": s.alice,
        "operation": "TRANSFER",
        "window": "transaction",
        "limit": "100",
        "remaining_points": "100",
    }
    await s.transfer(s.acme, s.alice, s.bob, 100)
    alice = await s.q_acme.account(s.alice, s.last)  # type: ignore[arg-type]
    assert alice.available_points == 900  # The refused transfer moved nothing.


async def test_a_gold_tier_brings_its_own_limit_and_shows_on_the_account(setup: Setup) -> None:
    """SetAccountTier: changed once, then a no-op; the gold limit applies; reads show it."""
    s = setup
    await s.issue(s.alice, 2_000)
    await set_rules(s, 0, RULES)
    request = cpb.SetAccountTierRequest(request_id=rid(), account_id=s.alice, tier="gold")
    first = await s.acme.call("SetAccountTier", request)
    again = await s.acme.call(
        "SetAccountTier",
        cpb.SetAccountTierRequest(request_id=rid(), account_id=s.alice, tier="gold"),
    )
    assert isinstance(first, cpb.SetAccountTierResponse)
    assert isinstance(again, cpb.SetAccountTierResponse)
    assert (first.changed, again.changed) == (True, False)
    await s.transfer(s.acme, s.alice, s.bob, 500)
    error = await rpc_error(s.transfer(s.acme, s.alice, s.bob, 501))
    assert (error_info(error).reason, error_info(error).metadata["limit"]) == (
        "LIMIT_EXCEEDED",
        "500",
    )
    alice = await s.q_acme.account(s.alice, s.last)  # type: ignore[arg-type]
    assert (alice.tier, alice.available_points) == ("gold", 1_500)
    foreign = await rpc_error(
        s.other.call(
            "SetAccountTier",
            cpb.SetAccountTierRequest(request_id=rid(), account_id=s.alice, tier="basic"),
        )
    )
    assert error_info(foreign).reason == "NOT_OWNER"


async def test_a_buy_order_off_the_step_is_refused_before_it_reaches_the_book(
    setup: Setup,
) -> None:
    """MARKET_BUY in steps of 10: a quantity of 15 is AMOUNT_NOT_IN_STEPS, 5 below the minimum."""
    s = setup
    await set_rules(s, 0, RULES)
    reasons = []
    for quantity in (15, 5):
        order = cpb.PlaceOrderRequest(
            request_id=rid(),
            account_id=s.alice,
            market_id="PTS-CNY",
            side=common_pb2.ORDER_SIDE_BUY,
            quantity_points=quantity,
            limit_price_minor=10,
            time_in_force=common_pb2.TIME_IN_FORCE_GTC,
        )
        reasons.append(error_info(await rpc_error(s.acme.call("PlaceOrder", order))).reason)
    assert reasons == ["AMOUNT_NOT_IN_STEPS", "AMOUNT_BELOW_MINIMUM"]


async def test_the_query_server_reads_the_rules_and_a_stale_version_changes_nothing(
    setup: Setup,
) -> None:
    """GetProgramRules: version 0 at first, then what was set; a stale change is refused."""
    s = setup
    empty = await s.q_acme.call("GetProgramRules", qpb.GetProgramRulesRequest(min_position=s.last))
    assert isinstance(empty, qpb.GetProgramRulesResponse)
    assert (empty.version, len(empty.rules.limits)) == (0, 0)
    await set_rules(s, 0, RULES)
    stale = await rpc_error(set_rules(s, 0, common_pb2.ProgramRules()))
    assert stale.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(stale).reason == "PROGRAM_RULES_CHANGED"
    assert error_info(stale).metadata["version"] == "1"
    read = await s.q_acme.call("GetProgramRules", qpb.GetProgramRulesRequest(min_position=s.last))
    assert isinstance(read, qpb.GetProgramRulesResponse)
    assert (read.version, read.rules) == (1, RULES)
    assert read.set_at.seconds > 0


async def test_rules_that_cannot_be_set_name_their_field(setup: Setup) -> None:
    """Two limits for one scope: INVALID_ARGUMENT / INVALID_FIELD naming the second."""
    s = setup
    twice = common_pb2.ProgramRules(
        limits=[
            common_pb2.TransactionLimit(operation=TRANSFER, max_points=100),
            common_pb2.TransactionLimit(operation=TRANSFER, max_points=200),
        ]
    )
    error = await rpc_error(set_rules(s, 0, twice))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert (info.reason, info.metadata["field"]) == ("INVALID_FIELD", "rules.limits[1]")
    partner = await rpc_error(
        s.acme.call("SetProgramRules", cpb.SetProgramRulesRequest(request_id=rid()))
    )
    assert error_info(partner).reason == "ROLE_FORBIDDEN"


async def test_a_daily_cap_counts_every_transfer_of_the_day(setup: Setup) -> None:
    """150 a day: 100 and 50 pass, the next point is refused naming the window and what is left."""
    s = setup
    await s.issue(s.alice, 1_000)
    daily = common_pb2.TransactionLimit(operation=TRANSFER, daily_max_points=150)
    await set_rules(s, 0, common_pb2.ProgramRules(limits=[daily]))
    await s.transfer(s.acme, s.alice, s.bob, 100)
    refused = error_info(await rpc_error(s.transfer(s.acme, s.alice, s.bob, 60)))
    assert (refused.reason, refused.metadata["window"]) == ("LIMIT_EXCEEDED", "rolling_24h")
    assert (refused.metadata["limit"], refused.metadata["remaining_points"]) == ("150", "50")
    await s.transfer(s.acme, s.alice, s.bob, 50)
    last = error_info(await rpc_error(s.transfer(s.acme, s.alice, s.bob, 1)))
    assert last.metadata["remaining_points"] == "0"


async def test_the_programs_pending_period_holds_an_issue_back(setup: Setup) -> None:
    """A 30-day pending period: an issue without its own time shows as pending, not available."""
    s = setup
    rules = common_pb2.ProgramRules(pending_period=Duration(seconds=30 * 86_400))
    assert await set_rules(s, 0, rules) == 1
    await s.issue(s.alice, 70)
    alice = await s.q_acme.account(s.alice, s.last)  # type: ignore[arg-type]
    assert (alice.available_points, alice.pending_points) == (0, 70)
    read = await s.q_acme.call("GetProgramRules", qpb.GetProgramRulesRequest(min_position=s.last))
    assert isinstance(read, qpb.GetProgramRulesResponse)
    assert read.rules.pending_period.seconds == 30 * 86_400
