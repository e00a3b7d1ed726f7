"""The SDK's pure parts: retry policy, bulk bookkeeping, reasons table, request builders."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from pointex.client import builders
from pointex.client.bulk import BulkRun
from pointex.client.errors import (
    Conflict,
    InternalError,
    Overloaded,
    PointexError,
    Refused,
    Unavailable,
    family,
    from_bulk_error,
)
from pointex.client.reasons import REASONS
from pointex.client.retry import RetryPolicy, retryable
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2, errors_pb2


def test_every_error_reason_of_the_contract_is_in_the_table_with_its_code() -> None:
    """The generated table names every ErrorReason value once, with a real gRPC code."""
    names = {
        name.removeprefix("ERROR_REASON_")
        for name in errors_pb2.ErrorReason.keys()  # noqa: SIM118 - an enum wrapper, not a dict.
        if name != "ERROR_REASON_UNSPECIFIED"
    }
    assert set(REASONS) == names
    codes = {code.name for code in grpc.StatusCode}
    for reason in REASONS.values():
        assert reason.code in codes, reason
        assert errors_pb2.ErrorReason.Value(f"ERROR_REASON_{reason.name}") == reason.number


def test_retryable_errors_are_unclear_outcomes_lost_races_and_paced_overload() -> None:
    """Unclear outcomes, lost races and paced overload retry; refusals and bugs never do."""
    unavailable = Unavailable(grpc.StatusCode.UNAVAILABLE, "down")
    deadline = Unavailable(grpc.StatusCode.DEADLINE_EXCEEDED, "late")
    aborted = Conflict(grpc.StatusCode.ABORTED, "race", reason="REQUEST_IN_PROGRESS")
    reused = Conflict(grpc.StatusCode.ALREADY_EXISTS, "id", reason="IDEMPOTENCY_KEY_REUSED")
    paced = Overloaded(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", retry_delay_ms=50)
    too_big = Overloaded(grpc.StatusCode.RESOURCE_EXHAUSTED, "message over the limit")
    cancelled = Unavailable(grpc.StatusCode.CANCELLED, "caller went away")
    refused = Refused(grpc.StatusCode.FAILED_PRECONDITION, "no", reason="INSUFFICIENT_POINTS")
    cut = InternalError(grpc.StatusCode.INTERNAL, "Internal error from Core")
    bug = InternalError(grpc.StatusCode.INTERNAL, "internal error", reason="INTERNAL_ERROR")
    assert [retryable(e) for e in (unavailable, deadline, aborted, paced, cut)] == [True] * 5
    assert [retryable(e) for e in (reused, too_big, cancelled, refused, bug)] == [False] * 5


def test_backoff_grows_with_jitter_honours_the_server_and_stops_at_the_bounds() -> None:
    """Delays double within their jitter, never undercut RetryInfo, and end at the limits."""
    policy = RetryPolicy(attempts_max=5, backoff_ms_min=100, backoff_ms_max=400, total_ms_max=5_000)
    failure = Unavailable(grpc.StatusCode.UNAVAILABLE, "down")
    for attempt, (low, high) in enumerate([(50, 100), (100, 200), (200, 400), (200, 400)], 1):
        delay = policy.delay_ms(failure, attempt, 0)
        assert delay is not None
        assert low <= delay <= high
    assert policy.delay_ms(failure, 5, 0) is None
    assert policy.delay_ms(failure, 1, 4_990) is None
    paced = Overloaded(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", retry_delay_ms=1_500)
    assert policy.delay_ms(paced, 1, 0) == 1_500
    refused = Refused(grpc.StatusCode.FAILED_PRECONDITION, "no")
    assert policy.delay_ms(refused, 1, 0) is None


def test_codes_map_to_families() -> None:
    """Each status code becomes its family; an unexpected one is an internal error."""
    assert family(grpc.StatusCode.FAILED_PRECONDITION) is Refused
    assert family(grpc.StatusCode.UNKNOWN) is InternalError
    error = from_bulk_error(9, "INSUFFICIENT_POINTS", "no", {"account_id": "a"}, None)
    assert isinstance(error, Refused)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "INSUFFICIENT_POINTS" in error.line()


class _Sent(list[pb.ExecuteBulkRequest | None]):
    def put_nowait(self, item: pb.ExecuteBulkRequest | None, /) -> None:
        self.append(item)


def _ok(count: int) -> pb.ExecuteBulkResponse:
    ok = pb.BulkResult(ok=pb.BulkOk(issue_points=pb.IssuePointsResponse()))
    return pb.ExecuteBulkResponse(results=[ok] * count)


def test_a_bulk_run_keeps_its_window_resends_retryable_commands_and_yields_in_order() -> None:
    """Batches stay within the window; a shed command goes again before later outcomes."""
    commands = (builders.issue("shop", f"m{n}", 1, request_id=f"r{n}") for n in range(7))
    run = BulkRun(commands, batch_commands=3, window_batches=2)
    sent = _Sent()
    run.restart(sent)
    assert [len(each.commands) for each in sent if each] == [3, 3]
    shed = pb.BulkResult(
        error=pb.BulkError(code=8, reason="MAILBOX_FULL", retry_delay=Duration(nanos=1_000_000))
    )
    first = _ok(3)
    first.results[1].CopyFrom(shed)
    due = run.answered(first, sent)
    assert [outcome.index for outcome in due] == [0]
    resent = [each for each in sent if each][2:]
    assert [len(each.commands) for each in resent] == [1]  # The retry fills the window.
    assert resent[0].commands[0].issue_points.request_id == "r1"
    assert [o.index for o in run.answered(_ok(3), sent)] == []
    assert len([each for each in sent if each]) == 4  # Now the last command goes out.
    assert [o.index for o in run.answered(_ok(1), sent)] == [1, 2, 3, 4, 5]
    assert [o.index for o in run.answered(_ok(1), sent)] == [6]
    assert run.done()
    assert sent[-1] is None


def test_a_bulk_command_without_a_request_id_gets_one_and_keeps_it() -> None:
    """An empty request id is filled in once; a retry of the command sends the same one."""
    command = pb.BulkCommand(issue_points=pb.IssuePointsRequest(merchant_account_id="shop"))
    first = builders.bulk_request_id(command)
    assert first
    assert builders.bulk_request_id(command) == first


def test_pointex_errors_say_what_happened_on_one_line() -> None:
    """The line names code, reason, message, metadata and the request id."""
    error = PointexError(
        grpc.StatusCode.NOT_FOUND,
        "no such\naccount",
        reason="ACCOUNT_NOT_FOUND",
        metadata={"account_id": "a"},
        request_id="r1",
    )
    assert error.line() == (
        "NOT_FOUND ACCOUNT_NOT_FOUND: no such account [account_id=a] (request id r1)"
    )


def test_a_limit_is_built_from_names_with_unset_meaning_every_kind_and_tier() -> None:
    """transaction_limit: operation and kind by name; None and "" leave the scope open."""
    limit = builders.transaction_limit("market_buy", step_points=1_000, yearly_max_points=200_000)
    assert limit.operation == common_pb2.LIMITED_OPERATION_MARKET_BUY
    assert (limit.account_kind, limit.tier) == (common_pb2.ACCOUNT_KIND_UNSPECIFIED, "")
    assert (limit.step_points, limit.yearly_max_points, limit.max_points) == (1_000, 200_000, 0)
    gold = builders.transaction_limit("transfer", account_kind="member", tier="gold")
    assert (gold.account_kind, gold.tier) == (common_pb2.ACCOUNT_KIND_MEMBER, "gold")


def test_an_issue_that_activates_later_carries_its_time_and_refuses_a_naive_one() -> None:
    """issue(activates_at=...): the exact instant in the request; a time without a zone: no."""
    at = dt.datetime(2027, 1, 5, 10, 0, 0, 250_000, tzinfo=dt.UTC)
    request = builders.issue("m", "u", 5, activates_at=at).issue_points
    assert request.HasField("activates_at")
    assert request.activates_at.ToDatetime(tzinfo=dt.UTC) == at
    assert not builders.issue("m", "u", 5).issue_points.HasField("activates_at")
    with pytest.raises(ValueError, match="timezone-aware"):
        builders.issue("m", "u", 5, activates_at=dt.datetime(2027, 1, 5))  # noqa: DTZ001


def test_a_transfer_fee_and_a_fee_quote_go_into_the_requests() -> None:
    """transfer_fee names its parts; transfer(fee_quote=...) carries a copy, and none: unset."""
    fee = builders.transfer_fee("program-fees", flat_points=2, per_mille=15)
    assert (fee.flat_points, fee.per_mille, fee.fee_account_id) == (2, 15, "program-fees")
    assert builders.transfer_fee("program-fees") == common_pb2.TransferFee(
        fee_account_id="program-fees"
    )
    quote = common_pb2.FeeQuote(fee_points=4, schedule_version=3)
    request = builders.transfer("a", "b", 100, "hi", fee_quote=quote).transfer_points
    quote.fee_points = 9
    assert request.HasField("fee_quote")
    assert (request.fee_quote.fee_points, request.fee_quote.schedule_version) == (4, 3)
    assert (request.amount_points, request.memo) == (100, "hi")
    assert not builders.transfer("a", "b", 100).transfer_points.HasField("fee_quote")
