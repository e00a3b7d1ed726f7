"""A crash test with real processes: SIGKILL the command server under transfer load.

Eight clients move points between twenty members when the command server is killed with
SIGKILL. Some transfers may be cut between their debit and their credit, and some replies
are lost. A second server on the same store must finish every open transfer before it
answers (`recover`). The log, read directly, must then show that no acknowledged transfer
was lost or doubled and that points were conserved (I1). Retrying every unacknowledged
attempt with its request_id then settles each one exactly once.

Nothing here asserts on timing, beyond a generous bound (about 10 s) on how long the server
may take to finish, on its own, a transfer whose caller got an error. If the kill lands
between two commands, nothing is left open and every assertion still holds.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
from grpc_status import rpc_status

from pointex.client.positions import decode_global
from pointex.server import limits
from pointex.server.domain.events import (
    PointsBurned,
    PointsCredited,
    PointsDebited,
    PointsMinted,
    PointsReturned,
    TransferCompensated,
    TransferCompleted,
    TransferInitiated,
)
from pointex.server.domain.values import TransferKind
from pointex.server.eventstore import codec
from pointex.server.eventstore.factory import open_store
from pointex.server.eventstore.port import EventStore, RecordedEvent
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc
from tests.e2e.conftest import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    ServerProcess,
    StartCommandServer,
    bearer,
)
from tests.e2e.test_commands import MEMBER, MERCHANT, Client, rid
from tests.e2e.test_event_feed import error_reason

MEMBERS = 20
CLIENTS = 8
FUNDS_PER_MEMBER = 1_000
AMOUNT_MAX = 5
CALL_TIMEOUT_S = 5
LOAD_S = 1.75
ACKNOWLEDGED_REPEATS = 5
RETRIED_REPEATS = 3
RETRY_ROUNDS_MAX = 5
RETRY_PAUSE_S = 0.2
# The server retries a failed step after 200 ms, then backs off: 50 reads span about 10 s.
SETTLE_READS_MAX = 50
# A call that ends with one of these may or may not have taken effect: the server died, the
# connection broke, the deadline passed, or (ABORTED) a step met a concurrent change and the
# process goes on in the server (docs/commands.md). Only a retry with the request_id can tell.
UNKNOWN_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)
# Replaying these account events from zero must give each event's own `available_points`.
_SIGN: dict[type[object], int] = {
    PointsMinted: 1,
    PointsBurned: -1,
    PointsDebited: -1,
    PointsCredited: 1,
    PointsReturned: 1,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one call ended: a reply, or a status code with its ErrorInfo reason."""

    reply: pb.TransferPointsResponse | None = None
    code: grpc.StatusCode = grpc.StatusCode.OK
    reason: str = ""

    @property
    def unknown(self) -> bool:
        """Tell whether the call may or may not have taken effect."""
        return self.code in UNKNOWN_CODES


@dataclass(slots=True)
class Attempt:
    """One TransferPoints request, how it first ended, and how its retry ended."""

    request: pb.TransferPointsRequest
    first: Outcome
    retried: Outcome | None = None

    @property
    def final(self) -> Outcome:
        """Return the latest outcome."""
        return self.first if self.retried is None else self.retried


@dataclass(slots=True)
class Ledger:
    """What the log says about transfer processes and balances."""

    # Transfer stream id -> its TransferInitiated events, and its ends with their positions.
    initiated: dict[str, list[TransferInitiated]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    ends: dict[
        str, list[tuple[int, TransferInitiated | TransferCompleted | TransferCompensated]]
    ] = field(default_factory=lambda: collections.defaultdict(list))
    # (account event type, transfer id) -> how many such events the log holds.
    legs: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    available: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    minted: int = 0
    burned: int = 0

    def open_transfers(self) -> set[str]:
        """Return the transfer streams that have no end yet."""
        return {stream for stream in self.initiated if not self.ends.get(stream)}


async def transfer(
    stub: command_service_pb2_grpc.CommandServiceAsyncStub,
    request: pb.TransferPointsRequest,
    timeout_s: float = CALL_TIMEOUT_S,
) -> Outcome:
    """Call TransferPoints as acme and return how the call ended."""
    try:
        reply = await stub.TransferPoints(request, metadata=bearer(ACME_TOKEN), timeout=timeout_s)
    except grpc.aio.AioRpcError as error:
        return Outcome(code=error.code(), reason=_reason(error))
    assert isinstance(reply, pb.TransferPointsResponse)
    return Outcome(reply=reply)


def _reason(error: grpc.aio.AioRpcError) -> str:
    """Return the ErrorInfo reason of a failed call, or "" when the transport failed it."""
    if rpc_status.from_call(error) is None:  # type: ignore[arg-type]
        return ""
    return error_reason(error)


@asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[EventStore]:
    """Open a store of the test's own on the servers' database."""
    store = open_store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def open_funded_members(target: str) -> list[str]:
    """Open acme's merchant and members, then mint and issue FUNDS_PER_MEMBER to each member."""
    suffix = rid()[:8]
    merchant = f"acme:merchant-{suffix}"
    members = [f"acme:member{index}-{suffix}" for index in range(MEMBERS)]
    async with grpc.aio.insecure_channel(target) as channel:
        operator, acme = Client(channel, OPERATOR_TOKEN), Client(channel, ACME_TOKEN)
        await acme.call(
            "OpenAccount",
            pb.OpenAccountRequest(request_id=rid(), account_id=merchant, kind=MERCHANT),
        )
        await asyncio.gather(
            *(
                acme.call(
                    "OpenAccount",
                    pb.OpenAccountRequest(request_id=rid(), account_id=member, kind=MEMBER),
                )
                for member in members
            )
        )
        await operator.call(
            "MintPoints",
            pb.MintPointsRequest(
                request_id=rid(),
                merchant_account_id=merchant,
                amount_points=MEMBERS * FUNDS_PER_MEMBER,
            ),
        )
        for member in members:
            await acme.call(
                "IssuePoints",
                pb.IssuePointsRequest(
                    request_id=rid(),
                    merchant_account_id=merchant,
                    member_account_id=member,
                    amount_points=FUNDS_PER_MEMBER,
                ),
            )
    return members


async def client(
    target: str,
    members: list[str],
    rng: random.Random,
    stop: asyncio.Event,
    timeout_s: float = CALL_TIMEOUT_S,
    *,
    pause_after_unknown_s: float = 0.0,
) -> list[Attempt]:
    """Transfer 1..AMOUNT_MAX points between random members until `stop`; return the attempts.

    After a call whose outcome is unknown, it waits `pause_after_unknown_s` before the next.
    """
    attempts: list[Attempt] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        while not stop.is_set():
            source, destination = rng.sample(members, 2)
            request = pb.TransferPointsRequest(
                request_id=rid(),
                from_account_id=source,
                to_account_id=destination,
                amount_points=rng.randint(1, AMOUNT_MAX),
            )
            attempts.append(Attempt(request, await transfer(stub, request, timeout_s)))
            if pause_after_unknown_s and attempts[-1].first.unknown:
                await asyncio.sleep(pause_after_unknown_s)
    return attempts


async def under_load(
    target: str,
    members: list[str],
    fault: Callable[[], Awaitable[None]],
    *,
    clients_count: int = CLIENTS,
    timeout_s: float = CALL_TIMEOUT_S,
    load_before_s: float = LOAD_S,
    load_after_s: float = 0.0,
    stop_within_s: float = 2 * CALL_TIMEOUT_S,
) -> list[Attempt]:
    """Run the clients, inflict `fault` after `load_before_s`, go on `load_after_s`.

    Return every attempt made. The clients stop after their current call, all within
    `stop_within_s` (each call ends within its deadline).
    """
    stop = asyncio.Event()
    rng = random.Random()
    clients = [
        asyncio.create_task(client(target, members, random.Random(rng.random()), stop, timeout_s))
        for _ in range(clients_count)
    ]
    await asyncio.sleep(load_before_s)
    await fault()
    await asyncio.sleep(load_after_s)
    stop.set()
    async with asyncio.timeout(stop_within_s):
        per_client = await asyncio.gather(*clients)
    return [attempt for attempts in per_client for attempt in attempts]


async def load_then_kill(
    server: ServerProcess, members: list[str], clients_count: int = CLIENTS
) -> list[Attempt]:
    """Run the clients, SIGKILL the server under load, and return every attempt made."""

    async def kill() -> None:
        # The calls in flight at the kill fail now.
        server.process.kill()
        await server.process.wait()

    return await under_load(server.target, members, kill, clients_count=clients_count)


async def read_ledger(store: EventStore) -> tuple[Ledger, int]:
    """Read the whole log page by page; return what it says and its head position."""
    ledger = Ledger()
    head = 0
    while page := await store.read_all(head, limits.read_batch_events_max):
        for recorded in page:
            head += 1
            assert recorded.position == head, "positions are gap-free"
            _record(ledger, recorded)
    return ledger, head


def _record(ledger: Ledger, recorded: RecordedEvent) -> None:
    """Add one stored event to the ledger, checking each balance it states."""
    if recorded.type in {"CommandRecorded", "AccountOpened"}:
        return
    event = codec.decode(recorded)
    match event:
        case TransferInitiated():
            ledger.initiated[recorded.stream_id].append(event)
            if event.completed:  # Committed whole in one unit: its start is its end.
                ledger.ends[recorded.stream_id].append((recorded.position, event))
        case TransferCompleted() | TransferCompensated():
            ledger.ends[recorded.stream_id].append((recorded.position, event))
        case (
            PointsMinted() | PointsBurned() | PointsDebited() | PointsCredited() | PointsReturned()
        ):
            ledger.available[event.account_id] += _SIGN[type(event)] * event.amount_points
            assert ledger.available[event.account_id] == event.available_points, recorded
            if isinstance(event, PointsMinted):
                ledger.minted += event.amount_points
            elif isinstance(event, PointsBurned):
                ledger.burned += event.amount_points
            else:
                ledger.legs[(recorded.type, event.transfer_id)] += 1
        case _:
            raise AssertionError(f"unexpected event in this scenario: {recorded}")


def assert_settled_once(ledger: Ledger) -> None:
    """Assert every transfer started once, ended once, and moved its points exactly once."""
    assert not ledger.open_transfers(), f"transfers left open: {ledger.open_transfers()}"
    for stream_id, initiated in ledger.initiated.items():
        assert len(initiated) == 1, f"{stream_id} initiated {len(initiated)} times"
        ends = ledger.ends[stream_id]
        assert len(ends) == 1, f"{stream_id} ended {len(ends)} times: {ends}"
        transfer_id = initiated[0].transfer_id
        assert stream_id == f"transfer-{transfer_id}"
        credited = _completed(ends[0][1])
        assert ledger.legs[("PointsDebited", transfer_id)] == 1, transfer_id
        assert ledger.legs[("PointsCredited", transfer_id)] == int(credited), transfer_id
        assert ledger.legs[("PointsReturned", transfer_id)] == int(not credited), transfer_id
    ids = {initiated[0].transfer_id for initiated in ledger.initiated.values()}
    assert {transfer_id for _, transfer_id in ledger.legs} <= ids, "a leg without a process"
    assert set(ledger.ends) <= set(ledger.initiated), "an end without a start"


def _completed(end: TransferInitiated | TransferCompleted | TransferCompensated) -> bool:
    """Tell whether a transfer's end credited its destination (its steps', or one unit's)."""
    return isinstance(end, TransferCompleted) or (
        isinstance(end, TransferInitiated) and end.completed
    )


def assert_conserved(ledger: Ledger) -> None:
    """Assert I1: what is available over all accounts is what was minted less what was burned."""
    assert all(points >= 0 for points in ledger.available.values()), ledger.available
    assert sum(ledger.available.values()) == ledger.minted - ledger.burned
    assert ledger.minted == MEMBERS * FUNDS_PER_MEMBER


def assert_acknowledged_once(ledger: Ledger, attempts: list[Attempt]) -> None:
    """Assert each acknowledged transfer is in the log once, completed, as its reply says."""
    for attempt in attempts:
        reply, request = attempt.final.reply, attempt.request
        if reply is None:
            continue
        stream_id = f"transfer-{reply.transfer_id}"
        assert len(ledger.initiated.get(stream_id, [])) == 1, f"acknowledged, not once: {attempt}"
        initiated = ledger.initiated[stream_id][0]
        assert (
            initiated.request_id,
            initiated.kind,
            initiated.from_account_id,
            initiated.to_account_id,
            initiated.amount_points,
        ) == (
            request.request_id,
            TransferKind.TRANSFER,
            request.from_account_id,
            request.to_account_id,
            request.amount_points,
        )
        ends = ledger.ends.get(stream_id, [])
        assert len(ends) == 1, f"acknowledged, ended {len(ends)} times: {attempt}"
        [(position, end)] = ends
        assert _completed(end), f"acknowledged but {end}"
        assert decode_global(reply.position.token) == position
        assert reply.from_available_points == initiated.from_available_points


async def retry_all_at_once(target: str, attempts: list[Attempt]) -> None:
    """Retry every attempt that did not end OK, all at once, as clients back from an outage do."""
    unacknowledged = [attempt for attempt in attempts if attempt.first.reply is None]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        outcomes = await asyncio.gather(
            *(transfer(stub, attempt.request) for attempt in unacknowledged)
        )
    for attempt, outcome in zip(unacknowledged, outcomes, strict=True):
        attempt.retried = outcome


async def retry_unknown_one_by_one(target: str, attempts: list[Attempt]) -> None:
    """Retry, one at a time and for a bounded number of rounds, each attempt still unknown.

    Concurrent retries can meet on an account and end ABORTED, an unknown outcome too.
    """
    async with grpc.aio.insecure_channel(target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        for _ in range(RETRY_ROUNDS_MAX):
            unknown = [attempt for attempt in attempts if attempt.final.unknown]
            if not unknown:
                break
            await asyncio.sleep(RETRY_PAUSE_S)
            for attempt in unknown:
                attempt.retried = await transfer(stub, attempt.request)
    for attempt in attempts:
        # OK, or a definite rejection: the restarted server has nothing left to be unsure of.
        assert attempt.final.reply is not None or not attempt.final.unknown, attempt
        assert attempt.final.code is not grpc.StatusCode.INTERNAL, attempt


async def read_settled_ledger(store: EventStore) -> Ledger:
    """Read the log until no transfer is open, or SETTLE_READS_MAX times; return the last read.

    A transfer whose last step failed (ABORTED reached its caller) is finished by the server
    on its own, soon after; no retry from the client is needed for that (docs/commands.md).
    """
    for _ in range(SETTLE_READS_MAX - 1):
        ledger, _ = await read_ledger(store)
        if not ledger.open_transfers():
            return ledger
        await asyncio.sleep(RETRY_PAUSE_S)
    ledger, _ = await read_ledger(store)
    return ledger


async def repeat_acknowledged(target: str, attempts: list[Attempt]) -> None:
    """Repeat acknowledged attempts, first time and retried; each reply equals the first."""
    acknowledged = [attempt for attempt in attempts if attempt.first.reply is not None]
    retried = [
        attempt
        for attempt in attempts
        if attempt.retried is not None and attempt.retried.reply is not None
    ]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        for attempt in acknowledged[:ACKNOWLEDGED_REPEATS] + retried[:RETRIED_REPEATS]:
            again = await transfer(stub, attempt.request)
            assert again.reply is not None, (attempt, again)
            assert again.reply == attempt.final.reply, (attempt, again)


async def test_sigkill_under_transfer_load_loses_and_doubles_nothing(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """SIGKILL the server under transfer load; recovery and retries settle each one once.

    After the restart, every acknowledged transfer is in the log exactly once and completed,
    no transfer is open, and points are conserved. Every unacknowledged attempt is retried
    with its request_id, all at once: every transfer this starts ends without client help.
    Retried until known, each attempt ends OK or definitely refused; the transfers in the log
    are then exactly the acknowledged ones, and repeating acknowledged ones replays their
    replies and writes nothing.
    """
    first = await start_command_server(store_url, markets=False)
    members = await open_funded_members(first.target)
    attempts = await load_then_kill(first, members)
    assert any(attempt.first.reply is not None for attempt in attempts), "no transfer went through"
    second = await start_command_server(store_url, markets=False)
    async with opened_store(store_url) as store:
        ledger, _ = await read_ledger(store)
        assert_settled_once(ledger)
        assert_conserved(ledger)
        assert_acknowledged_once(ledger, attempts)

        await retry_all_at_once(second.target, attempts)
        # Every process the retries started ends without more help from the clients.
        assert_settled_once(await read_settled_ledger(store))
        await retry_unknown_one_by_one(second.target, attempts)
        ledger, head = await read_ledger(store)
        assert_settled_once(ledger)
        assert_conserved(ledger)
        assert_acknowledged_once(ledger, attempts)
        transfers = [
            initiated.request_id
            for [initiated] in ledger.initiated.values()
            if initiated.kind is TransferKind.TRANSFER
        ]
        acknowledged = {a.request.request_id for a in attempts if a.final.reply is not None}
        assert len(transfers) == len(acknowledged)
        assert set(transfers) == acknowledged

        await repeat_acknowledged(second.target, attempts)
        assert await store.head_position() == head, "a repeated request wrote to the log"
