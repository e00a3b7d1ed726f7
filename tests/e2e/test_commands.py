"""CommandService end to end: real server processes on both stores, driven over gRPC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from pointex.client.positions import decode_global
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc, common_pb2
from tests.e2e.conftest import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    OTHER_TOKEN,
    ServerProcess,
    StartCommandServer,
    bearer,
)
from tests.e2e.test_event_feed import error_reason

MEMBER = common_pb2.ACCOUNT_KIND_MEMBER
MERCHANT = common_pb2.ACCOUNT_KIND_MERCHANT


def rid() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex


class Client:
    """A CommandService stub bound to one token."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        """Call through `channel` as the holder of `token`."""
        self.stub = command_service_pb2_grpc.CommandServiceStub(channel)
        self.metadata = bearer(token)

    async def call(self, rpc: str, request: object) -> object:
        """Call `rpc` with `request` and this client's token."""
        method = getattr(self.stub, rpc)
        return await method(request, metadata=self.metadata, timeout=10)


@pytest.fixture
async def server(store_url: str, start_command_server: StartCommandServer) -> ServerProcess:
    """A command server on the parametrised store."""
    return await start_command_server(store_url)


@pytest.fixture
async def channel(server: ServerProcess) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the server."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield channel


async def open_funded(operator: Client, acme: Client, points: int) -> tuple[str, str, str]:
    """Open acme's merchant (funded with `points`) and two acme members; return their ids."""
    merchant, alice, bob = (f"acme:{name}-{uuid.uuid4().hex[:8]}" for name in "mab")
    await acme.call(
        "OpenAccount", pb.OpenAccountRequest(request_id=rid(), account_id=merchant, kind=MERCHANT)
    )
    for member in (alice, bob):
        await acme.call(
            "OpenAccount", pb.OpenAccountRequest(request_id=rid(), account_id=member, kind=MEMBER)
        )
    await operator.call(
        "MintPoints",
        pb.MintPointsRequest(request_id=rid(), merchant_account_id=merchant, amount_points=points),
    )
    return merchant, alice, bob


async def test_issue_transfer_redeem_move_points_and_replies_carry_positions(
    channel: grpc.aio.Channel,
) -> None:
    """Mint, issue, transfer and redeem move points; every reply has a growing position."""
    operator, acme = Client(channel, OPERATOR_TOKEN), Client(channel, ACME_TOKEN)
    merchant, alice, bob = await open_funded(operator, acme, 1000)
    issued = await acme.call(
        "IssuePoints",
        pb.IssuePointsRequest(
            request_id=rid(),
            merchant_account_id=merchant,
            member_account_id=alice,
            amount_points=300,
            reason="welcome",
        ),
    )
    assert isinstance(issued, pb.IssuePointsResponse)
    assert issued.merchant_available_points == 700
    moved = await acme.call(
        "TransferPoints",
        pb.TransferPointsRequest(
            request_id=rid(), from_account_id=alice, to_account_id=bob, amount_points=100
        ),
    )
    assert isinstance(moved, pb.TransferPointsResponse)
    assert moved.from_available_points == 200
    redeemed = await acme.call(
        "RedeemPoints",
        pb.RedeemPointsRequest(
            request_id=rid(), member_account_id=bob, merchant_account_id=merchant, amount_points=40
        ),
    )
    assert isinstance(redeemed, pb.RedeemPointsResponse)
    assert redeemed.member_available_points == 60
    positions = [decode_global(r.position.token) for r in (issued, moved, redeemed)]
    assert positions == sorted(positions)
    assert positions[0] > 0


async def test_retry_with_same_request_id_returns_the_original_and_changes_nothing(
    channel: grpc.aio.Channel,
) -> None:
    """A repeated MintPoints or TransferPoints returns the first reply; balances move once."""
    operator, acme = Client(channel, OPERATOR_TOKEN), Client(channel, ACME_TOKEN)
    merchant, alice, bob = await open_funded(operator, acme, 500)
    mint = pb.MintPointsRequest(request_id=rid(), merchant_account_id=merchant, amount_points=5)
    first, second = [await operator.call("MintPoints", mint) for _ in range(2)]
    assert first == second
    issue = pb.IssuePointsRequest(
        request_id=rid(), merchant_account_id=merchant, member_account_id=alice, amount_points=50
    )
    replies = [await acme.call("IssuePoints", issue) for _ in range(3)]
    assert replies[0] == replies[1] == replies[2]
    check = pb.IssuePointsRequest(
        request_id=rid(), merchant_account_id=merchant, member_account_id=bob, amount_points=1
    )
    after = await acme.call("IssuePoints", check)
    assert isinstance(after, pb.IssuePointsResponse)
    assert after.merchant_available_points == 500 + 5 - 50 - 1


async def test_same_request_id_with_another_payload_is_refused(
    channel: grpc.aio.Channel,
) -> None:
    """Reusing a request id for a different amount is ALREADY_EXISTS / IDEMPOTENCY_KEY_REUSED."""
    operator, acme = Client(channel, OPERATOR_TOKEN), Client(channel, ACME_TOKEN)
    merchant, alice, _ = await open_funded(operator, acme, 500)
    request_id = rid()
    await acme.call(
        "IssuePoints",
        pb.IssuePointsRequest(
            request_id=request_id,
            merchant_account_id=merchant,
            member_account_id=alice,
            amount_points=10,
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await acme.call(
            "IssuePoints",
            pb.IssuePointsRequest(
                request_id=request_id,
                merchant_account_id=merchant,
                member_account_id=alice,
                amount_points=11,
            ),
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(caught.value) == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize(
    ("amount", "code", "reason"),
    [
        (0, grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_NOT_POSITIVE"),
        (-5, grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_NOT_POSITIVE"),
        (2**63 - 1, grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_TOO_LARGE"),
        (10_000, grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_POINTS"),
    ],
)
async def test_rejections_carry_reasons_and_change_nothing(
    channel: grpc.aio.Channel, amount: int, code: grpc.StatusCode, reason: str
) -> None:
    """Bad amounts and overdrafts are refused with their reason; the balance is unchanged."""
    operator, acme = Client(channel, OPERATOR_TOKEN), Client(channel, ACME_TOKEN)
    merchant, alice, bob = await open_funded(operator, acme, 100)
    await acme.call(
        "IssuePoints",
        pb.IssuePointsRequest(
            request_id=rid(),
            merchant_account_id=merchant,
            member_account_id=alice,
            amount_points=100,
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await acme.call(
            "TransferPoints",
            pb.TransferPointsRequest(
                request_id=rid(), from_account_id=alice, to_account_id=bob, amount_points=amount
            ),
        )
    assert caught.value.code() == code
    assert error_reason(caught.value) == reason
    probe = await acme.call(
        "TransferPoints",
        pb.TransferPointsRequest(
            request_id=rid(), from_account_id=alice, to_account_id=bob, amount_points=1
        ),
    )
    assert isinstance(probe, pb.TransferPointsResponse)
    assert probe.from_available_points == 99


async def test_partners_touch_only_their_own_accounts(channel: grpc.aio.Channel) -> None:
    """Another partner moving acme's points is NOT_OWNER; minting is for operators only."""
    operator, acme = Client(channel, OPERATOR_TOKEN), Client(channel, ACME_TOKEN)
    other = Client(channel, OTHER_TOKEN)
    merchant, alice, bob = await open_funded(operator, acme, 100)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await other.call(
            "IssuePoints",
            pb.IssuePointsRequest(
                request_id=rid(),
                merchant_account_id=merchant,
                member_account_id=alice,
                amount_points=1,
            ),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "NOT_OWNER"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await acme.call(
            "MintPoints",
            pb.MintPointsRequest(request_id=rid(), merchant_account_id=merchant, amount_points=1),
        )
    assert error_reason(caught.value) == "ROLE_FORBIDDEN"
    del bob


async def test_transfer_to_a_closed_account_moves_nothing(channel: grpc.aio.Channel) -> None:
    """A transfer to a closed account is refused up front with ACCOUNT_CLOSED."""
    operator, acme = Client(channel, OPERATOR_TOKEN), Client(channel, ACME_TOKEN)
    merchant, alice, bob = await open_funded(operator, acme, 100)
    await acme.call("CloseAccount", pb.CloseAccountRequest(request_id=rid(), account_id=bob))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await acme.call(
            "IssuePoints",
            pb.IssuePointsRequest(
                request_id=rid(),
                merchant_account_id=merchant,
                member_account_id=bob,
                amount_points=5,
            ),
        )
    assert error_reason(caught.value) == "ACCOUNT_CLOSED"
    again = await acme.call(
        "CloseAccount", pb.CloseAccountRequest(request_id=rid(), account_id=bob)
    )
    assert isinstance(again, pb.CloseAccountResponse)
    assert again.changed is False
    del alice


async def test_bulk_answers_every_command_in_order(channel: grpc.aio.Channel) -> None:
    """ExecuteBulk runs batches of transfers; each result sits at its command's index."""
    operator, acme = Client(channel, OPERATOR_TOKEN), Client(channel, ACME_TOKEN)
    merchant, alice, bob = await open_funded(operator, acme, 1000)
    commands = [
        pb.BulkCommand(
            issue_points=pb.IssuePointsRequest(
                request_id=rid(),
                merchant_account_id=merchant,
                member_account_id=alice,
                amount_points=1,
            )
        )
        for _ in range(50)
    ]
    commands.insert(
        7,
        pb.BulkCommand(
            issue_points=pb.IssuePointsRequest(
                request_id=rid(),
                merchant_account_id=merchant,
                member_account_id=bob,
                amount_points=0,
            )
        ),
    )

    async def batches() -> AsyncIterator[pb.ExecuteBulkRequest]:
        yield pb.ExecuteBulkRequest(commands=commands[:30])
        yield pb.ExecuteBulkRequest(commands=commands[30:])

    results = [
        result
        async for response in acme.stub.ExecuteBulk(batches(), metadata=acme.metadata, timeout=20)
        for result in response.results
    ]
    assert [r.index for r in results] == list(range(30)) + list(range(21))
    failed = [i for i, r in enumerate(results) if r.WhichOneof("outcome") == "error"]
    assert failed == [7]
    assert results[7].error.reason == "AMOUNT_NOT_POSITIVE"


async def test_bulk_answers_before_the_client_sends_more(channel: grpc.aio.Channel) -> None:
    """A client that waits for each bulk answer before sending the next batch is served."""
    operator, acme = Client(channel, OPERATOR_TOKEN), Client(channel, ACME_TOKEN)
    merchant, alice, _ = await open_funded(operator, acme, 100)
    # Without a request iterator the call is written to by hand; grpc-stubs do not know that.
    call = acme.stub.ExecuteBulk(metadata=acme.metadata, timeout=20)  # type: ignore[call-arg]
    for _ in range(3):
        command = pb.BulkCommand(
            issue_points=pb.IssuePointsRequest(
                request_id=rid(),
                merchant_account_id=merchant,
                member_account_id=alice,
                amount_points=1,
            )
        )
        await call.write(pb.ExecuteBulkRequest(commands=[command]))
        response = await call.read()
        assert isinstance(response, pb.ExecuteBulkResponse)
        assert response.results[0].WhichOneof("outcome") == "ok"
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF  # type: ignore[attr-defined]


async def test_bulk_applies_commands_on_one_account_in_the_order_sent(
    channel: grpc.aio.Channel,
) -> None:
    """Issues, a mint and a burn on one merchant in one bulk message see each other in order."""
    operator, acme = Client(channel, OPERATOR_TOKEN), Client(channel, ACME_TOKEN)
    merchant, alice, bob = await open_funded(operator, acme, 1000)

    def issue(member: str, points: int) -> pb.BulkCommand:
        request = pb.IssuePointsRequest(
            request_id=rid(),
            merchant_account_id=merchant,
            member_account_id=member,
            amount_points=points,
        )
        return pb.BulkCommand(issue_points=request)

    def mint(points: int) -> pb.BulkCommand:
        request = pb.MintPointsRequest(
            request_id=rid(), merchant_account_id=merchant, amount_points=points
        )
        return pb.BulkCommand(mint_points=request)

    def burn(points: int) -> pb.BulkCommand:
        request = pb.BurnPointsRequest(
            request_id=rid(), merchant_account_id=merchant, amount_points=points
        )
        return pb.BulkCommand(burn_points=request)

    commands = [
        issue(alice, 1000),  # the merchant is left with nothing
        mint(7),
        issue(bob, 7),  # takes what the mint just added
        burn(1),  # nothing is left to burn
        issue(alice, 1),
        mint(2),
        burn(2),
    ]

    async def batches() -> AsyncIterator[pb.ExecuteBulkRequest]:
        yield pb.ExecuteBulkRequest(commands=commands)

    (response,) = [
        response
        async for response in operator.stub.ExecuteBulk(
            batches(), metadata=operator.metadata, timeout=20
        )
    ]
    outcomes = [
        r.error.reason if r.WhichOneof("outcome") == "error" else "ok" for r in response.results
    ]
    assert outcomes == ["ok", "ok", "ok", "INSUFFICIENT_POINTS", "INSUFFICIENT_POINTS", "ok", "ok"]
    assert response.results[2].ok.issue_points.merchant_available_points == 0


async def test_open_account_replies_with_the_account_at_its_first_version(
    channel: grpc.aio.Channel,
) -> None:
    """The reply states the new account: OPEN, empty, version 1, with its display name."""
    acme = Client(channel, ACME_TOKEN)
    account_id = f"acme:new-{uuid.uuid4().hex[:8]}"
    reply = await acme.call(
        "OpenAccount",
        pb.OpenAccountRequest(
            request_id=rid(), account_id=account_id, kind=MEMBER, display_name="Ann"
        ),
    )
    assert isinstance(reply, pb.OpenAccountResponse)
    account = reply.account
    assert (account.account_id, account.owner_partner_id) == (account_id, "acme")
    assert (account.version, account.display_name) == (1, "Ann")
    assert account.status == common_pb2.ACCOUNT_STATUS_OPEN
    assert (account.available_points, account.held_points) == (0, 0)
