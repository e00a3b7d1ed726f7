"""The query side end to end: a real command server and a real query server over gRPC.

Commands go to the command server; reads with `min_position` go to the query server, which
follows the command server's EventFeed. Every scenario ends with CheckInvariants.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pointex.client.positions import decode_global, encode_global
from pointex.v1 import command_service_pb2 as cpb
from pointex.v1 import common_pb2, query_service_pb2_grpc
from pointex.v1 import query_service_pb2 as qpb
from tests.e2e.conftest import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    OTHER_TOKEN,
    ServerProcess,
    StartQueryServer,
    bearer,
    start_server,
    wait_serving,
)
from tests.e2e.test_commands import MEMBER, MERCHANT, Client, rid
from tests.e2e.test_event_feed import error_reason

CALL_TIMEOUT_S = 10
REBUILD_TIMEOUT_S = 60


class Queries:
    """A QueryService stub bound to one token."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        """Call through `channel` as the holder of `token`."""
        self.stub = query_service_pb2_grpc.QueryServiceStub(channel)
        self.metadata = bearer(token)

    async def call(self, rpc: str, request: Message, deadline_s: float = CALL_TIMEOUT_S) -> object:
        """Call `rpc` with `request` and this client's token."""
        return await getattr(self.stub, rpc)(request, metadata=self.metadata, timeout=deadline_s)

    async def account(self, account_id: str, at: common_pb2.Position) -> common_pb2.Account:
        """Return an account once the projections reached `at`."""
        reply = await self.call(
            "GetAccount", qpb.GetAccountRequest(account_id=account_id, min_position=at)
        )
        assert isinstance(reply, qpb.GetAccountResponse)
        assert decode_global(reply.as_of.token) >= decode_global(at.token)
        return reply.account

    async def all_accounts(
        self, at: common_pb2.Position, page_size: int = 7
    ) -> list[common_pb2.Account]:
        """Return every account the caller may see, page by page."""
        accounts: list[common_pb2.Account] = []
        token = ""
        while True:
            reply = await self.call(
                "ListAccounts",
                qpb.ListAccountsRequest(min_position=at, page_size=page_size, page_token=token),
            )
            assert isinstance(reply, qpb.ListAccountsResponse)
            accounts.extend(reply.accounts)
            token = reply.next_page_token
            if not token:
                return accounts

    async def history(self, account_id: str, at: common_pb2.Position) -> list[qpb.Movement]:
        """Return an account's whole history, oldest first."""
        reply = await self.call(
            "GetAccountHistory",
            qpb.GetAccountHistoryRequest(account_id=account_id, min_position=at),
        )
        assert isinstance(reply, qpb.GetAccountHistoryResponse)
        assert not reply.next_page_token
        return list(reply.movements)


@dataclass
class Setup:
    """Clients of both servers with each token, and a funded merchant with two members."""

    operator: Client
    acme: Client
    other: Client
    q_operator: Queries
    q_acme: Queries
    q_other: Queries
    merchant: str = ""
    alice: str = ""
    bob: str = ""
    last: common_pb2.Position | None = None

    async def open(
        self, client: Client, prefix: str, kind: common_pb2.AccountKind.ValueType
    ) -> str:
        """Open an account and return its id."""
        account_id = f"{prefix}:{uuid.uuid4().hex[:10]}"
        reply = await client.call(
            "OpenAccount",
            cpb.OpenAccountRequest(request_id=rid(), account_id=account_id, kind=kind),
        )
        assert isinstance(reply, cpb.OpenAccountResponse)
        self.last = reply.position
        return account_id

    async def command(self, client: Client, rpc: str, request: Message) -> common_pb2.Position:
        """Run a command; remember and return its position."""
        reply = await client.call(rpc, request)
        position: common_pb2.Position = reply.position  # type: ignore[attr-defined]
        self.last = position
        return position

    async def transfer(self, client: Client, source: str, target: str, amount: int) -> None:
        """Move points between two members."""
        await self.command(
            client,
            "TransferPoints",
            cpb.TransferPointsRequest(
                request_id=rid(), from_account_id=source, to_account_id=target, amount_points=amount
            ),
        )

    async def issue(self, member: str, amount: int) -> common_pb2.Position:
        """Issue points from acme's merchant to a member."""
        return await self.command(
            self.acme,
            "IssuePoints",
            cpb.IssuePointsRequest(
                request_id=rid(),
                merchant_account_id=self.merchant,
                member_account_id=member,
                amount_points=amount,
                reason="reward",
            ),
        )


@pytest.fixture
async def setup(command_server: ServerProcess, query_server: ServerProcess) -> AsyncIterator[Setup]:
    """Both servers on SQLite, and acme's funded merchant with members alice and bob."""
    async with (
        grpc.aio.insecure_channel(command_server.target) as commands,
        grpc.aio.insecure_channel(query_server.target) as queries,
    ):
        s = Setup(
            Client(commands, OPERATOR_TOKEN),
            Client(commands, ACME_TOKEN),
            Client(commands, OTHER_TOKEN),
            Queries(queries, OPERATOR_TOKEN),
            Queries(queries, ACME_TOKEN),
            Queries(queries, OTHER_TOKEN),
        )
        await fund(s)
        yield s


async def fund(s: Setup) -> None:
    """Open acme's merchant (minted 10,000 points) and members alice and bob."""
    s.merchant = await s.open(s.acme, "acme:m", MERCHANT)
    s.alice = await s.open(s.acme, "acme:a", MEMBER)
    s.bob = await s.open(s.acme, "acme:b", MEMBER)
    await s.command(
        s.operator,
        "MintPoints",
        cpb.MintPointsRequest(
            request_id=rid(), merchant_account_id=s.merchant, amount_points=10_000
        ),
    )


async def assert_invariants(
    queries: Queries, at: common_pb2.Position | None
) -> qpb.CheckInvariantsResponse:
    """CheckInvariants at `at` finds no violation."""
    reply = await queries.call("CheckInvariants", qpb.CheckInvariantsRequest(min_position=at))
    assert isinstance(reply, qpb.CheckInvariantsResponse)
    assert reply.ok, reply
    assert reply.violation_count == 0
    # Lapsed points (program expiry) left circulation as burned ones did.
    assert reply.available_points + reply.held_points + reply.in_flight_points == (
        reply.minted_points - reply.burned_points - reply.expired_points
    )
    return reply


async def rpc_error(call: asyncio.Future[object] | object) -> grpc.aio.AioRpcError:
    """Await a call that must fail and return its error."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


# --- Read-your-writes -------------------------------------------------------------------------


async def test_reads_with_min_position_see_each_command_at_once(setup: Setup) -> None:
    """GetAccount and GetAccountHistory at a command's position show that command's effect."""
    s = setup
    issued = await s.issue(s.alice, 300)
    alice = await s.q_acme.account(s.alice, issued)
    assert (alice.available_points, alice.version) == (300, 2)
    await s.transfer(s.acme, s.alice, s.bob, 120)
    assert s.last is not None
    alice = await s.q_acme.account(s.alice, s.last)
    bob = await s.q_acme.account(s.bob, s.last)
    assert (alice.available_points, bob.available_points) == (180, 120)
    assert alice.owner_partner_id == "acme"
    assert alice.kind == MEMBER
    assert alice.status == common_pb2.ACCOUNT_STATUS_OPEN
    history = await s.q_acme.history(s.alice, s.last)
    assert [m.kind for m in history] == [
        common_pb2.MOVEMENT_KIND_ISSUE_IN,
        common_pb2.MOVEMENT_KIND_TRANSFER_OUT,
    ]
    assert [m.available_delta_points for m in history] == [300, -120]
    assert [m.available_points for m in history] == [300, 180]
    assert history[1].counterparty_account_id == s.bob
    assert history[1].transfer_id
    merchant = await s.q_acme.history(s.merchant, s.last)
    assert [m.kind for m in merchant] == [
        common_pb2.MOVEMENT_KIND_MINT,
        common_pb2.MOVEMENT_KIND_ISSUE_OUT,
    ]
    assert merchant[1].memo == "reward"
    await assert_invariants(s.q_operator, s.last)


async def test_lists_page_with_tokens_and_show_a_partner_only_its_accounts(setup: Setup) -> None:
    """ListAccounts pages in id order; a partner sees its own accounts, an operator all."""
    s = setup
    other_member = await s.open(s.other, "other:m", MEMBER)
    assert s.last is not None
    mine = await s.q_acme.all_accounts(s.last, page_size=1)
    ids = [a.account_id for a in mine]
    assert ids == sorted(ids)
    assert set(ids) == {s.merchant, s.alice, s.bob}
    everything = await s.q_operator.all_accounts(s.last, page_size=2)
    assert other_member in {a.account_id for a in everything}
    theirs = await s.q_other.all_accounts(s.last)
    assert [a.account_id for a in theirs] == [other_member]
    members = await s.q_acme.call(
        "ListAccounts", qpb.ListAccountsRequest(kinds=[MEMBER], min_position=s.last)
    )
    assert isinstance(members, qpb.ListAccountsResponse)
    assert {a.account_id for a in members.accounts} == {s.alice, s.bob}
    await assert_invariants(s.q_operator, s.last)


async def test_history_filters_by_kind_and_time_and_pages_newest_first(setup: Setup) -> None:
    """Kinds and [start_time, end_time) filter the history; newest_first pages backwards."""
    s = setup
    for amount in (10, 20, 30):
        await s.issue(s.alice, amount)
    await s.transfer(s.acme, s.alice, s.bob, 5)
    assert s.last is not None
    full = await s.q_acme.history(s.alice, s.last)
    assert [m.available_delta_points for m in full] == [10, 20, 30, -5]
    newest: list[int] = []
    token = ""
    while True:
        reply = await s.q_acme.call(
            "GetAccountHistory",
            qpb.GetAccountHistoryRequest(
                account_id=s.alice, newest_first=True, page_size=3, page_token=token
            ),
        )
        assert isinstance(reply, qpb.GetAccountHistoryResponse)
        newest += [m.available_delta_points for m in reply.movements]
        token = reply.next_page_token
        if not token:
            break
    assert newest == [-5, 30, 20, 10]
    ins = await s.q_acme.call(
        "GetAccountHistory",
        qpb.GetAccountHistoryRequest(account_id=s.alice, kinds=[common_pb2.MOVEMENT_KIND_ISSUE_IN]),
    )
    assert isinstance(ins, qpb.GetAccountHistoryResponse)
    assert [m.available_delta_points for m in ins.movements] == [10, 20, 30]
    window = qpb.GetAccountHistoryRequest(account_id=s.alice)
    window.start_time.CopyFrom(full[1].recorded_at)
    window.end_time.CopyFrom(full[3].recorded_at)
    inside = await s.q_acme.call("GetAccountHistory", window)
    assert isinstance(inside, qpb.GetAccountHistoryResponse)
    assert [m.position for m in inside.movements] == [
        m.position
        for m in full
        if full[1].recorded_at.ToMicroseconds()
        <= m.recorded_at.ToMicroseconds()
        < full[3].recorded_at.ToMicroseconds()
    ]
    await assert_invariants(s.q_operator, s.last)


async def test_a_position_not_reached_ends_with_deadline_exceeded_never_stale_data(
    setup: Setup,
) -> None:
    """A min_position beyond the log ends with DEADLINE_EXCEEDED (POSITION_NOT_REACHED)."""
    s = setup
    far = common_pb2.Position(token=encode_global(10**12))
    error = await rpc_error(
        s.q_acme.call(
            "GetAccount", qpb.GetAccountRequest(account_id=s.alice, min_position=far), deadline_s=1
        )
    )
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_reason(error) == "POSITION_NOT_REACHED"
    malformed = common_pb2.Position(token=b"\x07junk")
    error = await rpc_error(
        s.q_acme.call(
            "GetAccount", qpb.GetAccountRequest(account_id=s.alice, min_position=malformed)
        )
    )
    assert (error.code(), error_reason(error)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "POSITION_INVALID",
    )
    await assert_invariants(s.q_operator, s.last)


# --- Tenancy and errors -----------------------------------------------------------------------


async def test_a_partner_cannot_read_another_partners_account_or_token(setup: Setup) -> None:
    """Another tenant's account, owner or page token is NOT_OWNER; a bad token CURSOR_INVALID."""
    s = setup
    assert s.last is not None
    for rpc, request in (
        ("GetAccount", qpb.GetAccountRequest(account_id=s.alice, min_position=s.last)),
        ("GetAccountHistory", qpb.GetAccountHistoryRequest(account_id=s.alice)),
        ("ListAccounts", qpb.ListAccountsRequest(owner_partner_id="acme")),
    ):
        error = await rpc_error(s.q_other.call(rpc, request))
        assert (error.code(), error_reason(error)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "NOT_OWNER",
        ), rpc
    page = await s.q_acme.call("ListAccounts", qpb.ListAccountsRequest(page_size=1))
    assert isinstance(page, qpb.ListAccountsResponse)
    assert page.next_page_token
    stolen = qpb.ListAccountsRequest(page_size=1, page_token=page.next_page_token)
    error = await rpc_error(s.q_other.call("ListAccounts", stolen))
    assert error_reason(error) == "NOT_OWNER"
    refiltered = qpb.ListAccountsRequest(kinds=[MEMBER], page_token=page.next_page_token)
    error = await rpc_error(s.q_acme.call("ListAccounts", refiltered))
    assert (error.code(), error_reason(error)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CURSOR_INVALID",
    )
    forged = qpb.ListAccountsRequest(page_token=page.next_page_token[:-4] + "AAAA")
    assert error_reason(await rpc_error(s.q_acme.call("ListAccounts", forged))) == "CURSOR_INVALID"
    await assert_invariants(s.q_operator, s.last)


@pytest.mark.parametrize(
    ("rpc", "request_message", "code", "reason"),
    [
        (
            "GetAccount",
            qpb.GetAccountRequest(account_id="acme:nobody"),
            grpc.StatusCode.NOT_FOUND,
            "ACCOUNT_NOT_FOUND",
        ),
        (
            "GetAccount",
            qpb.GetAccountRequest(account_id="bad id!"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
        ),
        (
            "ListAccounts",
            qpb.ListAccountsRequest(page_size=1001),
            grpc.StatusCode.INVALID_ARGUMENT,
            "PAGE_SIZE_TOO_LARGE",
        ),
        (
            "CheckInvariants",
            qpb.CheckInvariantsRequest(),
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_FORBIDDEN",
        ),
        (
            "RebuildProjections",
            qpb.RebuildProjectionsRequest(),
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_FORBIDDEN",
        ),
        (
            "GetProjectionStatus",
            qpb.GetProjectionStatusRequest(),
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_FORBIDDEN",
        ),
    ],
)
async def test_rejections_carry_their_reason(
    setup: Setup, rpc: str, request_message: Message, code: grpc.StatusCode, reason: str
) -> None:
    """Each rejection has its code and ErrorInfo reason, never UNKNOWN."""
    error = await rpc_error(setup.q_acme.call(rpc, request_message))
    assert (error.code(), error_reason(error)) == (code, reason)


async def test_market_reads_name_what_they_cannot_find(setup: Setup) -> None:
    """Market reads are served: an unknown market, order or trade is NOT_FOUND with its reason."""
    s = setup
    market = f"Z{uuid.uuid4().hex[:8].upper()}-CNY"
    cases = [
        ("GetOrderBook", qpb.GetOrderBookRequest(market_id=market), "MARKET_NOT_FOUND"),
        ("GetMarketStats", qpb.GetMarketStatsRequest(market_id=market), "MARKET_NOT_FOUND"),
        ("GetOrder", qpb.GetOrderRequest(order_id=uuid.uuid4().hex), "ORDER_NOT_FOUND"),
        ("GetTrade", qpb.GetTradeRequest(trade_id=uuid.uuid4().hex), "TRADE_NOT_FOUND"),
    ]
    for rpc, request_message, reason in cases:
        error = await rpc_error(s.q_acme.call(rpc, request_message))
        assert (error.code(), error_reason(error)) == (grpc.StatusCode.NOT_FOUND, reason)
    reply = await s.q_acme.call("ListOrders", qpb.ListOrdersRequest(min_position=s.last))
    assert isinstance(reply, qpb.ListOrdersResponse)
    assert list(reply.orders) == []


# --- Notifications ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What a test compares of one notification."""

    cursor: bytes
    kind: int
    account_id: str
    position: int
    amount_points: int


@dataclass
class Target:
    """The position a watcher reads up to; may be set while it reads."""

    position: int


async def watch_until(
    queries: Queries,
    target: int | Target,
    *,
    cursor: bytes = b"",
    from_beginning: bool = False,
    stop_after: int | None = None,
) -> list[Seen]:
    """Collect notifications until a heartbeat shows `target` reached, or `stop_after` of them."""
    seen: list[Seen] = []
    call = queries.stub.WatchNotifications(
        qpb.WatchNotificationsRequest(cursor=cursor, from_beginning=from_beginning),
        metadata=queries.metadata,
        timeout=60,
    )
    try:
        async for message in call:
            if message.WhichOneof("message") == "heartbeat":
                goal = target.position if isinstance(target, Target) else target
                if decode_global(message.heartbeat.as_of.token) >= goal:
                    return seen
                continue
            n = message.notification
            seen.append(
                Seen(
                    n.cursor,
                    n.kind,
                    n.account_id,
                    decode_global(n.position.token),
                    n.points_moved.amount_points,
                )
            )
            if stop_after is not None and len(seen) >= stop_after:
                return seen
    finally:
        call.cancel()
    return seen


async def resume_in_pieces(queries: Queries, target: int, piece: int) -> list[Seen]:
    """Read from the beginning, disconnecting after every `piece` notifications and resuming."""
    seen: list[Seen] = []
    while True:
        cursor = seen[-1].cursor if seen else b""
        part = await watch_until(
            queries, target, cursor=cursor, from_beginning=not seen, stop_after=piece
        )
        seen += part
        if len(part) < piece:
            return seen


async def test_resumed_notification_stream_equals_an_unbroken_one(
    setup: Setup, command_server: ServerProcess, start_query_server: StartQueryServer
) -> None:
    """Disconnect and resume with the last cursor: nothing lost, nothing repeated, no stranger.

    The same list comes back from the beginning after a query-server restart and after a
    rebuild, cursor for cursor.
    """
    s = setup
    stranger = await s.open(s.other, "other:m", MEMBER)
    assert s.last is not None
    target = Target(2**62)  # Set once the commands are done.
    unbroken = asyncio.create_task(watch_until(s.q_acme, target, from_beginning=True))
    operator_watch = asyncio.create_task(watch_until(s.q_operator, target, from_beginning=True))
    await s.issue(s.alice, 500)
    for round_number in range(6):
        await s.transfer(s.acme, s.alice, s.bob, 5 + round_number)
        await s.transfer(s.acme, s.bob, stranger, 1)
        await s.transfer(s.other, stranger, s.alice, 1)
    target.position = decode_global(s.last.token)
    pieces = await resume_in_pieces(s.q_acme, target.position, piece=4)
    reference = await unbroken
    everything = await operator_watch
    assert len({n.cursor for n in pieces}) == len(pieces), "a notification was repeated"
    assert pieces == reference
    assert all(n.account_id.startswith("acme:") for n in reference)
    assert [n.position for n in reference] == sorted(n.position for n in reference)
    assert stranger in {n.account_id for n in everything}
    assert {n.position for n in reference} <= {n.position for n in everything}
    received = [n for n in reference if n.kind == qpb.NOTIFICATION_KIND_POINTS_RECEIVED]
    assert len(received) == 1 + 6 + 6  # the issue, alice -> bob, stranger -> alice
    await assert_invariants(s.q_operator, s.last)


async def test_cursors_survive_a_query_server_restart_and_a_rebuild(
    setup: Setup,
    command_server: ServerProcess,
    query_server: ServerProcess,
    start_query_server: StartQueryServer,
) -> None:
    """After a restart and a rebuild, from_beginning gives the same cursors; resuming works."""
    s = setup
    await s.issue(s.alice, 50)
    assert s.last is not None
    target = decode_global(s.last.token)
    before = await watch_until(s.q_acme, target, from_beginning=True)
    assert before
    assert await query_server.terminate() == 0
    restarted = await start_query_server(command_server.target)
    async with grpc.aio.insecure_channel(restarted.target) as channel:
        q_acme, q_operator = Queries(channel, ACME_TOKEN), Queries(channel, OPERATOR_TOKEN)
        await q_acme.account(s.alice, s.last)
        assert await watch_until(q_acme, target, from_beginning=True) == before
        await rebuild(q_operator, compare_only=False)
        assert await watch_until(q_acme, target, from_beginning=True) == before
        await s.issue(s.bob, 7)
        after = await watch_until(q_acme, decode_global(s.last.token), cursor=before[-1].cursor)
        assert [(n.kind, n.account_id, n.amount_points) for n in after] == [
            (qpb.NOTIFICATION_KIND_POINTS_SENT, s.merchant, 7),
            (qpb.NOTIFICATION_KIND_POINTS_RECEIVED, s.bob, 7),
        ]
        await assert_invariants(q_operator, s.last)


# --- Catch-up and rebuild ---------------------------------------------------------------------


async def rebuild(queries: Queries, *, compare_only: bool) -> qpb.RebuildStatus:
    """Run a rebuild to its end and return its final status."""
    started = await queries.call(
        "RebuildProjections", qpb.RebuildProjectionsRequest(compare_only=compare_only)
    )
    assert isinstance(started, qpb.RebuildProjectionsResponse)
    async with asyncio.timeout(REBUILD_TIMEOUT_S):
        while True:
            status = await queries.call("GetProjectionStatus", qpb.GetProjectionStatusRequest())
            assert isinstance(status, qpb.GetProjectionStatusResponse)
            if status.rebuild.rebuild_id == started.rebuild.rebuild_id and (
                status.rebuild.state != qpb.REBUILD_STATE_RUNNING
            ):
                assert status.rebuild.state == qpb.REBUILD_STATE_COMPLETED, status.rebuild
                return status.rebuild
            await asyncio.sleep(0.1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def read_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A read store of the test's own: a SQLite file, or a PostgreSQL schema."""
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")
        schema: str = request.getfixturevalue("pg_schema")
        return f"{dsn}?schema={schema}"
    return f"sqlite:///{tmp_path}/read-{uuid.uuid4().hex[:6]}.db"


async def keep_transferring(s: Setup, members: list[str], stop: asyncio.Event) -> int:
    """Move points around `members` until `stop`; return how many transfers were made."""
    count = 0
    while not stop.is_set():
        source, target = members[count % len(members)], members[(count + 1) % len(members)]
        await s.transfer(s.acme, source, target, 1 + count % 3)
        count += 1
    return count


async def test_restarted_query_server_catches_up_and_equals_a_rebuild(
    command_server: ServerProcess, start_query_server: StartQueryServer, read_store_url: str
) -> None:
    """Kill -9 the query server under load; restarted, it catches up to a rebuild's rows."""
    first = await start_query_server(command_server.target, read_store_url)
    async with (
        grpc.aio.insecure_channel(command_server.target) as commands,
        grpc.aio.insecure_channel(first.target) as queries,
    ):
        s = Setup(
            Client(commands, OPERATOR_TOKEN),
            Client(commands, ACME_TOKEN),
            Client(commands, OTHER_TOKEN),
            Queries(queries, OPERATOR_TOKEN),
            Queries(queries, ACME_TOKEN),
            Queries(queries, OTHER_TOKEN),
        )
        await fund(s)
        members = [s.alice, s.bob, await s.open(s.acme, "acme:c", MEMBER)]
        for member in members:
            await s.issue(member, 1_000)
        stop = asyncio.Event()
        load = asyncio.create_task(keep_transferring(s, members, stop))
        await asyncio.sleep(0.5)
        first.process.kill()  # SIGKILL: mid-batch, perhaps mid-transaction.
        await first.process.wait()
        await asyncio.sleep(0.5)
        stop.set()
        assert await load > 0
    assert s.last is not None
    second = await start_query_server(command_server.target, read_store_url)
    async with grpc.aio.insecure_channel(second.target) as channel:
        q_operator = Queries(channel, OPERATOR_TOKEN)
        caught_up = await q_operator.all_accounts(s.last)
        compared = await rebuild(q_operator, compare_only=True)
        assert compared.mismatch_count == 0
        replaced = await rebuild(q_operator, compare_only=False)
        assert replaced.events_applied >= decode_global(s.last.token)
        assert await q_operator.all_accounts(s.last) == caught_up
        for account in caught_up:
            assert await q_operator.account(account.account_id, s.last) == account
        audit = await assert_invariants(q_operator, s.last)
        assert audit.minted_points == 10_000
        assert audit.account_count == len(caught_up)


async def test_health_follows_the_feed_and_reads_go_on_without_it(
    tmp_path: Path, tokens_file: Path, start_query_server: StartQueryServer
) -> None:
    """The query server is NOT_SERVING while the command server is down, serves reads anyway."""
    listen = f"127.0.0.1:{free_port()}"
    env = {
        "POINTEX_STORE_URL": f"sqlite:///{tmp_path}/events.db",
        "POINTEX_AUTH_TOKENS_FILE": str(tokens_file),
        "POINTEX_LISTEN": listen,
    }
    command = await start_server("pointex.server.command.main", tmp_path / "c1.log", env)
    query = await start_query_server(listen)
    async with grpc.aio.insecure_channel(query.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        q_operator = Queries(channel, OPERATOR_TOKEN)
        assert await command.terminate() == 0
        async with asyncio.timeout(30):
            while True:
                reply = await health.Check(health_pb2.HealthCheckRequest())
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.05)
        status = await q_operator.call("GetProjectionStatus", qpb.GetProjectionStatusRequest())
        assert isinstance(status, qpb.GetProjectionStatusResponse)
        assert not status.feed_connected
        await assert_invariants(q_operator, None)
        again = await start_server("pointex.server.command.main", tmp_path / "c2.log", env)
        try:
            await wait_serving(query.target)
            # Resubscribed from its checkpoint: a command on the restarted server shows up.
            async with grpc.aio.insecure_channel(again.target) as commands:
                reply = await Client(commands, ACME_TOKEN).call(
                    "OpenAccount",
                    cpb.OpenAccountRequest(request_id=rid(), account_id="acme:late", kind=MEMBER),
                )
            assert isinstance(reply, cpb.OpenAccountResponse)
            late = await q_operator.account("acme:late", reply.position)
            assert late.owner_partner_id == "acme"
            await assert_invariants(q_operator, reply.position)
        finally:
            await again.terminate()


def free_port() -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_sigterm_ends_notification_streams_with_shutting_down(
    command_server: ServerProcess, start_query_server: StartQueryServer
) -> None:
    """On SIGTERM an open stream ends at once with UNAVAILABLE / SHUTTING_DOWN; exit code 0."""
    query = await start_query_server(command_server.target)
    async with grpc.aio.insecure_channel(query.target) as channel:
        watcher = Queries(channel, OPERATOR_TOKEN)
        call = watcher.stub.WatchNotifications(
            qpb.WatchNotificationsRequest(), metadata=watcher.metadata, timeout=30
        )
        await call.initial_metadata()
        stopping = asyncio.create_task(query.terminate())
        async with asyncio.timeout(5):  # Well inside the 10 s grace period.
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in call:  # Heartbeats only: nothing happens meanwhile.
                    pass
        error = caught.value
        assert (error.code(), error_reason(error)) == (
            grpc.StatusCode.UNAVAILABLE,
            "SHUTTING_DOWN",
        )
        assert await stopping == 0
