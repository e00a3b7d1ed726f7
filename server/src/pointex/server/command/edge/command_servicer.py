"""CommandService: proto -> validated command -> handlers -> reply with its position.

Servicers are thin: no business rule lives here. Errors are raised and mapped to
statuses by the edge interceptor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

import grpc
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message

from pointex.client.positions import position_message
from pointex.server import limits
from pointex.server.command.app.handlers import (
    CommandHandlers,
    ReversalRequest,
    TransferDone,
    TransferRequest,
)
from pointex.server.command.app.idempotency import request_key
from pointex.server.command.app.market_handlers import order_id_for
from pointex.server.command.app.ownership import LeaseReader
from pointex.server.command.app.refunds import PurchaseRefunds
from pointex.server.command.edge.bulk import (
    BULK_RPCS,
    Bulk,
    bulk_error,
    place_elsewhere,
    segments,
)
from pointex.server.command.edge.callbacks import CallbackEdge
from pointex.server.command.edge.market_replies import ProtoMarketHandlers, order_of
from pointex.server.command.edge.replies import ProtoReplies, request_of
from pointex.server.command.edge.transfer_rpcs import (
    ISSUE,
    REDEEM,
    TRANSFER,
    TRANSFER_RPCS,
    TransferRpc,
    issue_reply,
    redeem_reply,
    transfer_reply,
    transfer_request,
)
from pointex.server.domain import commands as cmd
from pointex.server.domain.account import Account
from pointex.server.domain.program import SetProgramRules
from pointex.server.domain.trade import TradeStatus
from pointex.server.domain.values import Principal, Role, TransferKind
from pointex.server.elsewhere import Elsewhere
from pointex.server.grpc_edge import convert
from pointex.server.grpc_edge.auth import current_principal
from pointex.server.grpc_edge.forwarding import Forwarder
from pointex.server.grpc_edge.status import (
    InvalidRequest,
)
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc, common_pb2

Context = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R", bound=Message)
# Constrained, not bound to Message: mypy then checks the keyword arguments each helper passes
# against every response type's generated stub.
MovedR = TypeVar("MovedR", pb.MintPointsResponse, pb.BurnPointsResponse)
ChangedR = TypeVar(
    "ChangedR", pb.FreezeAccountResponse, pb.UnfreezeAccountResponse, pb.CloseAccountResponse
)


# What a refund's reply reports: made, under way, or declined (the trade settled again).
_TRADE_STATUS: Final = {
    TradeStatus.REFUNDED: common_pb2.TRADE_STATUS_REFUNDED,
    TradeStatus.REFUNDING: common_pb2.TRADE_STATUS_REFUNDING,
    TradeStatus.SETTLED: common_pb2.TRADE_STATUS_SETTLED,
}


def _account_message(state: Account | None) -> common_pb2.Account:
    assert state is not None
    return common_pb2.Account(
        account_id=state.account_id,
        kind=convert.account_kind_to_proto(state.kind),
        status=convert.account_status_to_proto(state.status.value),
        owner_partner_id=state.owner_partner_id,
        available_points=state.available_points,
        held_points=state.held_points,
    )


def _opened(state: Account | None, display_name: str) -> common_pb2.Account:
    """Return a just-opened account as the contract states it: its first version."""
    account = _account_message(state)
    account.version = 1
    account.display_name = display_name
    return account


def _available(state: Account | None) -> int:
    assert state is not None
    return state.available_points


def _reversal(
    request: pb.ReverseIssueRequest | pb.ReverseRedeemRequest, kind: TransferKind
) -> ReversalRequest:
    """Validate a ReverseIssue or ReverseRedeem request (the caller's, from the context)."""
    return ReversalRequest(
        current_principal(),
        convert.request_id(request.request_id),
        kind,
        convert.identifier("transfer_id", request.transfer_id),
        convert.amount("amount_points", request.amount_points),
        convert.text("reason", request.reason),
    )


class CommandServicer(command_service_pb2_grpc.CommandServiceServicer):
    """Every state change of Pointex, over gRPC."""

    def __init__(
        self,
        handlers: CommandHandlers,
        market: ProtoMarketHandlers,
        callbacks: CallbackEdge,
        refunds: PurchaseRefunds,
        *,
        leases: LeaseReader,
        owner_id: str = "",
    ) -> None:
        """Serve account commands through `handlers`, the market through the others.

        `leases` reads the slice ranges' leases; `owner_id` names this server's run when it
        holds leases (empty when it runs alone). With the ranges split across servers, bulk
        commands on other servers' accounts go to their owners through `forwarder`, set once
        the server listens.
        """
        self.forwarder: Forwarder | None = None
        self._handlers = handlers
        self._market = market
        self._callbacks = callbacks
        self._refunds = refunds
        self._leases = leases
        self._owner_id = owner_id

    async def OpenAccount(
        self, request: pb.OpenAccountRequest, _: Context
    ) -> pb.OpenAccountResponse:
        """Open an account."""
        principal = current_principal()
        owner = request.owner_partner_id
        if principal.role is Role.PARTNER and not owner:
            owner = principal.principal_id
        command = cmd.OpenAccount(
            principal.caller,
            convert.identifier("account_id", request.account_id),
            convert.account_kind(request.kind),
            convert.identifier("owner_partner_id", owner),
            convert.text("display_name", request.display_name, limits.display_name_bytes_max),
        )
        return await self._single(
            principal,
            request,
            command,
            pb.OpenAccountResponse,
            lambda s, _: pb.OpenAccountResponse(account=_opened(s, command.display_name)),
        )

    async def MintPoints(self, request: pb.MintPointsRequest, _: Context) -> pb.MintPointsResponse:
        """Mint points into a merchant account (operator only)."""
        return await self._merchant_amount(request, cmd.MintPoints, pb.MintPointsResponse)

    async def BurnPoints(self, request: pb.BurnPointsRequest, _: Context) -> pb.BurnPointsResponse:
        """Burn points from a merchant account (operator only)."""
        return await self._merchant_amount(request, cmd.BurnPoints, pb.BurnPointsResponse)

    async def FreezeAccount(
        self, request: pb.FreezeAccountRequest, _: Context
    ) -> pb.FreezeAccountResponse:
        """Freeze an account."""
        return await self._status_change(request, cmd.FreezeAccount, pb.FreezeAccountResponse)

    async def UnfreezeAccount(
        self, request: pb.UnfreezeAccountRequest, _: Context
    ) -> pb.UnfreezeAccountResponse:
        """Unfreeze an account."""
        return await self._status_change(request, cmd.UnfreezeAccount, pb.UnfreezeAccountResponse)

    async def CloseAccount(
        self, request: pb.CloseAccountRequest, _: Context
    ) -> pb.CloseAccountResponse:
        """Close an empty account with no resting order and no trade under way.

        The account's actor decides: it knows the points held for SELL orders and trades and
        the quantity its BUY orders and trades are buying.
        """
        return await self._status_change(request, cmd.CloseAccount, pb.CloseAccountResponse)

    async def SetAccountTier(
        self, request: pb.SetAccountTierRequest, _: Context
    ) -> pb.SetAccountTierResponse:
        """Set or clear an account's member tier."""
        principal = current_principal()
        command = cmd.SetAccountTier(
            principal.caller,
            convert.identifier("account_id", request.account_id),
            convert.tier("tier", request.tier),
        )
        return await self._single(
            principal,
            request,
            command,
            pb.SetAccountTierResponse,
            lambda _, e: pb.SetAccountTierResponse(changed=bool(e)),
        )

    async def ListSliceLeases(
        self, _request: pb.ListSliceLeasesRequest, _: Context
    ) -> pb.ListSliceLeasesResponse:
        """List who owns each slice range, at which epoch and for how long (operator only)."""
        return pb.ListSliceLeasesResponse(
            leases=[
                pb.SliceLease(
                    slice_range=lease.slice_range,
                    owner_id=lease.owner_id,
                    epoch=lease.epoch,
                    expires_in_ms=lease.expires_in_ms,
                    owner_address=lease.owner_address,
                )
                for lease in await self._leases()
            ],
            answered_by=self._owner_id,
        )

    async def SetProgramRules(
        self, request: pb.SetProgramRulesRequest, _: Context
    ) -> pb.SetProgramRulesResponse:
        """Replace the program's rules (operator only)."""
        principal = current_principal()
        convert.request_id(request.request_id)
        command = SetProgramRules(
            principal.caller, request.expected_version, convert.program_rules(request.rules)
        )
        return await self._handlers.set_program_rules(
            principal,
            request_of(request),
            command,
            ProtoReplies(pb.SetProgramRulesResponse),
            lambda program: pb.SetProgramRulesResponse(version=program.version),
        )

    async def _merchant_amount(
        self,
        request: pb.MintPointsRequest | pb.BurnPointsRequest,
        command_type: type[cmd.MintPoints | cmd.BurnPoints],
        response_type: type[MovedR],
    ) -> MovedR:
        """Run a mint or a burn: both name a merchant, an amount and a memo."""
        principal = current_principal()
        command = command_type(
            principal.caller,
            convert.identifier("merchant_account_id", request.merchant_account_id),
            convert.amount("amount_points", request.amount_points),
            convert.text("memo", request.memo),
        )
        return await self._single(
            principal,
            request,
            command,
            response_type,
            lambda s, _: response_type(available_points=_available(s)),
        )

    async def _status_change(
        self,
        request: pb.FreezeAccountRequest | pb.UnfreezeAccountRequest | pb.CloseAccountRequest,
        command_type: type[cmd.FreezeAccount | cmd.UnfreezeAccount | cmd.CloseAccount],
        response_type: type[ChangedR],
    ) -> ChangedR:
        """Run a freeze, unfreeze or close: an account and a reason; `changed` says if it did."""
        principal = current_principal()
        command = command_type(
            principal.caller,
            convert.identifier("account_id", request.account_id),
            convert.text("reason", request.reason),
        )
        return await self._single(
            principal, request, command, response_type, lambda _, e: response_type(changed=bool(e))
        )

    async def _single(
        self,
        principal: Principal,
        request: Any,
        command: cmd.AccountCommand,
        response_type: type[R],
        respond: Callable[[Account | None, list[Any]], R],
    ) -> R:
        convert.request_id(request.request_id)
        return await self._handlers.single(
            principal,
            request_of(request),
            account_id=command.account_id,
            command=command,
            replies=ProtoReplies(response_type),
            respond=respond,
        )

    async def IssuePoints(
        self, request: pb.IssuePointsRequest, _: Context
    ) -> pb.IssuePointsResponse:
        """Reward a member from a merchant."""
        return issue_reply(await self._transfer(request, ISSUE))

    async def RedeemPoints(
        self, request: pb.RedeemPointsRequest, _: Context
    ) -> pb.RedeemPointsResponse:
        """Spend a member's points at a merchant."""
        return redeem_reply(await self._transfer(request, REDEEM))

    async def TransferPoints(
        self, request: pb.TransferPointsRequest, _: Context
    ) -> pb.TransferPointsResponse:
        """Give points from one member to another."""
        return transfer_reply(await self._transfer(request, TRANSFER))

    async def ReverseIssue(
        self, request: pb.ReverseIssueRequest, _: Context
    ) -> pb.ReverseIssueResponse:
        """Take back (part of) a completed issue from the member."""
        done = await self._handlers.reverse(_reversal(request, TransferKind.REVERSE_ISSUE))
        return pb.ReverseIssueResponse(
            position=position_message(done.position),
            reversal_transfer_id=done.initiated.transfer_id,
            member_available_points=done.initiated.from_available_points,
        )

    async def ReverseRedeem(
        self, request: pb.ReverseRedeemRequest, _: Context
    ) -> pb.ReverseRedeemResponse:
        """Give back (part of) a completed redemption to the member."""
        done = await self._handlers.reverse(_reversal(request, TransferKind.REVERSE_REDEEM))
        return pb.ReverseRedeemResponse(
            position=position_message(done.position),
            reversal_transfer_id=done.initiated.transfer_id,
            merchant_available_points=done.initiated.from_available_points,
        )

    async def _transfer(self, request: Any, rpc: TransferRpc) -> TransferDone:
        return await self._handlers.transfer(transfer_request(request, rpc))

    async def PlaceOrder(self, request: pb.PlaceOrderRequest, _: Context) -> pb.PlaceOrderResponse:
        """Place a limit order; reply once it is matched (and rests, if anything is left)."""
        principal = current_principal()
        key = request_key(principal, convert.request_id(request.request_id))
        order = order_of(request, order_id_for(key))
        return await self._market.place_order(principal, request_of(request), order)

    async def CancelOrder(
        self, request: pb.CancelOrderRequest, _: Context
    ) -> pb.CancelOrderResponse:
        """Take a resting order out of the book."""
        convert.request_id(request.request_id)
        return await self._market.cancel_order(
            current_principal(),
            request_of(request),
            convert.identifier("market_id", request.market_id),
            convert.identifier("order_id", request.order_id),
        )

    async def RefundPurchase(
        self, request: pb.RefundPurchaseRequest, _: Context
    ) -> pb.RefundPurchaseResponse:
        """Refund a purchase within its cooling-off window."""
        outcome = await self._refunds.refund(
            current_principal(),
            convert.request_id(request.request_id),
            convert.identifier("trade_id", request.trade_id),
        )
        return pb.RefundPurchaseResponse(
            position=position_message(outcome.position),
            trade_id=outcome.trade_id,
            trade_status=_TRADE_STATUS[outcome.status],
            declined_reason=outcome.declined_reason,
            buyer_available_points=outcome.buyer_available_points,
        )

    async def ConfirmPayment(
        self, request: pb.ConfirmPaymentRequest, _: Context
    ) -> pb.ConfirmPaymentResponse:
        """A provider's signed confirmation: settle the trade (or flag a late one)."""
        return await self._callbacks.handle(current_principal(), request, pb.ConfirmPaymentResponse)

    async def FailPayment(
        self, request: pb.FailPaymentRequest, _: Context
    ) -> pb.FailPaymentResponse:
        """A provider's signed failure: cancel the trade."""
        return await self._callbacks.handle(current_principal(), request, pb.FailPaymentResponse)

    async def ExecuteBulk(
        self, request_iterator: AsyncIterator[pb.ExecuteBulkRequest], context: Context
    ) -> AsyncIterator[pb.ExecuteBulkResponse]:
        """Run batches of commands; answer each batch, in order, with one result per command.

        A reader task takes request messages as they come and starts each batch at once; the
        responses go out in order as batches finish. The queue between them bounds the
        batches under way: when it is full the reader stops reading, and HTTP/2 flow control
        holds the sender back. A client may wait for each answer before sending more.
        """
        batches: asyncio.Queue[asyncio.Task[pb.ExecuteBulkResponse] | None] = asyncio.Queue(
            limits.bulk_messages_in_flight_max
        )

        async def read() -> None:
            try:
                async for batch in request_iterator:
                    if len(batch.commands) > limits.bulk_commands_max:
                        raise InvalidRequest(
                            "BULK_BATCH_TOO_LARGE",
                            "commands",
                            f"at most {limits.bulk_commands_max} a message",
                        )
                    await batches.put(asyncio.create_task(self._bulk_batch(batch, context)))
            finally:
                await batches.put(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await batches.get()) is not None:
                yield await task
            await reader  # Raises what stopped the reader (an oversized batch).
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _bulk_batch(
        self, batch: pb.ExecuteBulkRequest, context: Context
    ) -> pb.ExecuteBulkResponse:
        # Built in place, result by result: no result is built apart and copied in.
        response = pb.ExecuteBulkResponse()
        results = response.results
        for index in range(len(batch.commands)):
            results.add(index=index)
        for segment in segments(batch.commands):
            await self._bulk_segment(segment, results, context)
        return response

    async def _bulk_segment(
        self,
        segment: list[Bulk],
        results: RepeatedCompositeFieldContainer[pb.BulkResult],
        context: Context,
    ) -> None:
        """Run a segment's commands together: its transfers as one batch, the rest one by one.

        Each command's result is written into `results[index]`.
        """
        transfers: list[tuple[int, TransferRpc, TransferRequest]] = []
        singles = []
        moved: list[tuple[int, pb.BulkCommand, Elsewhere]] = []  # Owned by other servers.
        sent = {index: command for index, _, command in segment}
        for index, which, command in segment:
            rpc = TRANSFER_RPCS.get(which or "")
            if rpc is None:
                singles.append(self._bulk_one(index, command, context, moved))
                continue
            try:
                transfers.append((index, rpc, transfer_request(getattr(command, rpc.field), rpc)))
            except Exception as error:  # noqa: BLE001 - each failure becomes that command's result.
                results[index].error.CopyFrom(bulk_error(error))
        ran_singles = asyncio.gather(*singles)  # Started now, alongside the transfers.
        if transfers:
            ends = await self._handlers.transfer_many([request for _, _, request in transfers])
            for (index, rpc, _), end in zip(transfers, ends, strict=True):
                if isinstance(end, Elsewhere):
                    moved.append((index, sent[index], end))
                else:
                    _bulk_transfer_result(rpc, end, results[index])
        for result in await ran_singles:
            if result is not None:
                results[result.index].CopyFrom(result)
        if moved:
            await self._bulk_elsewhere(moved, results, context)

    async def _bulk_elsewhere(
        self,
        moved: list[tuple[int, pb.BulkCommand, Elsewhere]],
        results: RepeatedCompositeFieldContainer[pb.BulkResult],
        context: Context,
    ) -> None:
        """Run commands on other servers' accounts at their owners; fill in their results."""
        assert self.forwarder is not None, "only a server of split ranges meets Elsewhere"
        placed = await place_elsewhere(self.forwarder, moved, context)
        for index, result in placed.items():
            results[index].CopyFrom(result)

    async def _bulk_one(
        self,
        index: int,
        command: pb.BulkCommand,
        context: Context,
        moved: list[tuple[int, pb.BulkCommand, Elsewhere]],
    ) -> pb.BulkResult | None:
        """Run one command; None when it went to `moved` (another server owns its account)."""
        which = command.WhichOneof("command")
        if which is None:
            error = InvalidRequest("INVALID_FIELD", "command", "empty bulk command")
            return pb.BulkResult(index=index, error=bulk_error(error))
        method: Awaitable[Any] = getattr(self, BULK_RPCS[which])(getattr(command, which), context)
        try:
            response = await method
        except Elsewhere as where:
            moved.append((index, command, where))
            return None
        except Exception as error:  # noqa: BLE001 - each failure becomes that command's result.
            return pb.BulkResult(index=index, error=bulk_error(error))
        ok = pb.BulkOk()
        getattr(ok, which).CopyFrom(response)
        return pb.BulkResult(index=index, ok=ok)


def _bulk_transfer_result(
    rpc: TransferRpc, end: TransferDone | BaseException, result: pb.BulkResult
) -> None:
    """Fill a bulk transfer's result with its reply or its error."""
    if isinstance(end, TransferDone):
        rpc.reply(end, getattr(result.ok, rpc.field))
    elif isinstance(end, Exception):
        result.error.CopyFrom(bulk_error(end))
    else:
        raise end  # Cancelled: as the command's own RPC would be.
