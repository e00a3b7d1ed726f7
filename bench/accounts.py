"""The benchmark's accounts, and the untimed setup that opens and funds them over gRPC.

Every contender gets the same accounts through the same RPCs: merchants opened and minted,
then members opened and funded by IssuePoints (TransferPoints needs two MEMBER accounts).
The operator token is sent on every call; the lock-based contender ignores it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import grpc

from bench import limits
from pointex.v1 import command_service_pb2 as cs
from pointex.v1 import command_service_pb2_grpc, common_pb2

OWNER_PARTNER_ID = "bench"
SETUP_CALL_DEADLINE_S = 60


class SetupFailed(RuntimeError):
    """The contender refused a setup call; the message names the call and the status."""


def member_id(index: int) -> str:
    """Return the id of member account `index` (0-based)."""
    return f"bench-m-{index:05d}"


def merchant_id(index: int) -> str:
    """Return the id of merchant account `index` (0-based)."""
    return f"bench-merchant-{index}"


def request_id() -> str:
    """Return a fresh idempotency key."""
    return uuid.uuid4().hex


def auth_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Return the call metadata carrying `token` as a bearer credential."""
    return (("authorization", f"Bearer {token}"),)


async def _bounded(count: int, call: Callable[[int], Awaitable[object]]) -> None:
    """Run `call(i)` for i < count, at most `setup_callers_max` at once; a failure stops setup."""
    gate = asyncio.Semaphore(limits.setup_callers_max)

    async def one(index: int) -> None:
        async with gate:
            await call(index)

    await asyncio.gather(*(one(index) for index in range(count)))


async def setup_accounts(target: str, token: str, members_count: int) -> None:
    """Open `merchants_count` merchants and `members_count` members, and fund every member."""
    metadata = auth_metadata(token)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)

        async def call(method: str, request: object) -> object:
            try:
                return await getattr(stub, method)(
                    request, metadata=metadata, timeout=SETUP_CALL_DEADLINE_S
                )
            except grpc.aio.AioRpcError as error:
                detail = f"{error.code().name}: {error.details()}"
                raise SetupFailed(f"setup {method} failed: {detail}") from None

        async def open_account(account_id: str, kind: common_pb2.AccountKind.ValueType) -> object:
            request = cs.OpenAccountRequest(
                request_id=request_id(),
                account_id=account_id,
                kind=kind,
                owner_partner_id=OWNER_PARTNER_ID,
            )
            return await call("OpenAccount", request)

        per_merchant = members_count // limits.merchants_count + 1
        mint_points = per_merchant * limits.member_funding_points
        for k in range(limits.merchants_count):
            await open_account(merchant_id(k), common_pb2.ACCOUNT_KIND_MERCHANT)
            mint = cs.MintPointsRequest(
                request_id=request_id(),
                merchant_account_id=merchant_id(k),
                amount_points=mint_points,
            )
            await call("MintPoints", mint)

        async def open_member(i: int) -> object:
            return await open_account(member_id(i), common_pb2.ACCOUNT_KIND_MEMBER)

        await _bounded(members_count, open_member)

        await _fund_in_bulk(stub, metadata, members_count)


def _issue(i: int) -> cs.BulkCommand:
    return cs.BulkCommand(
        issue_points=cs.IssuePointsRequest(
            request_id=request_id(),
            merchant_account_id=merchant_id(i % limits.merchants_count),
            member_account_id=member_id(i),
            amount_points=limits.member_funding_points,
        )
    )


async def _fund_in_bulk(
    stub: command_service_pb2_grpc.CommandServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    members_count: int,
) -> None:
    """Fund every member with one IssuePoints each, carried by one ExecuteBulk stream."""
    batch = limits.bulk_batch_commands_max
    messages = [
        cs.ExecuteBulkRequest(
            commands=[_issue(i) for i in range(start, min(start + batch, members_count))]
        )
        for start in range(0, members_count, batch)
    ]
    call = stub.ExecuteBulk(None, metadata=metadata, timeout=SETUP_CALL_DEADLINE_S)

    async def write_all() -> None:
        # The server reads ahead at most 8 messages and HTTP/2 flow control holds the rest.
        for message in messages:
            await call.write(message)
        await call.done_writing()

    writer = asyncio.create_task(write_all())
    failures: Counter[str] = Counter()
    answered = 0
    try:
        for _ in messages:
            response = await call.read()
            if not isinstance(response, cs.ExecuteBulkResponse):
                break  # grpc.aio.EOF before every answer: reported below.
            answered += 1
            for result in response.results:
                if not result.HasField("ok"):
                    failures[f"{result.error.code}/{result.error.reason}"] += 1
        await writer
    except grpc.aio.AioRpcError as error:
        raise SetupFailed(f"setup ExecuteBulk failed: {error.code().name}") from None
    finally:
        writer.cancel()
    if answered != len(messages):
        raise SetupFailed(f"setup ExecuteBulk answered {answered} of {len(messages)} messages")
    if failures:
        raise SetupFailed(f"setup IssuePoints failed: {dict(failures)}")
