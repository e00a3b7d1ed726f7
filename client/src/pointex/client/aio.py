"""The asyncio Pointex client: `AsyncPointexClient`.

`pointex.client.sync` is generated from this module by `make proto` (scripts/gen_sync_client.py
turns every `await` into a plain call), so the two clients have the same methods, arguments,
retries and iterators. Edit this module, never the generated one.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
import grpc.aio
from google.protobuf import message
from google.protobuf.timestamp_pb2 import Timestamp

from pointex.client import builders, positions
from pointex.client._aio_compat import Queue, cancel, sleep
from pointex.client.builders import AccountKindName, SideName, TimeInForceName
from pointex.client.bulk import BULK_BATCH_COMMANDS_MAX, BulkOutcome, BulkRun
from pointex.client.connection import Deadlines, Targets, Tls, channel_options
from pointex.client.errors import PointexError, Unavailable, from_rpc_error
from pointex.client.retry import RetryPolicy
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc, common_pb2, query_service_pb2_grpc
from pointex.v1 import query_service_pb2 as qry

Request = TypeVar("Request", bound=message.Message)
Response = TypeVar("Response", bound=message.Message)
Item = TypeVar("Item")
_MS_PER_S = 1000
# Watching resumes through a query server restart: more attempts, no total deadline to speak
# of (a restart of a few seconds must not end a long-lived watch).
WATCH_RETRY = RetryPolicy(attempts_max=30, backoff_ms_max=2_000, total_ms_max=120_000)


class AsyncPointexClient:
    """A typed asyncio client of both Pointex servers.

    Commands take plain arguments, generate a request id when none is given and retry with
    that same id while the outcome is unclear (see `pointex.client.retry`). Every reply's
    position is remembered: a query with `consistent=True` waits until the query server has
    applied everything this client wrote (read-your-writes).
    """

    def __init__(
        self,
        targets: Targets,
        token: str,
        *,
        tls: Tls | None = None,
        deadlines: Deadlines | None = None,
        retry: RetryPolicy | None = None,
        options: Sequence[tuple[str, Any]] = (),
        on_retry: Callable[[PointexError, int], None] | None = None,
    ) -> None:
        """Open channels to the two servers (connections are made on first use).

        `on_retry(error, delay_ms)` is called before each retry (to log it, for example).
        """
        if not token:
            raise ValueError("a bearer token is required")
        self.targets = targets
        self.deadlines = deadlines or Deadlines()
        self.retry = retry or RetryPolicy()
        self.last_position: common_pb2.Position | None = None
        self._on_retry = on_retry
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channels = [_channel(targets.command, tls, options)]
        self._commands = command_service_pb2_grpc.CommandServiceStub(self._channels[0])
        query_channel = _channel(targets.query, tls, options) if targets.query else None
        self._queries = (
            query_service_pb2_grpc.QueryServiceStub(query_channel) if query_channel else None
        )
        if query_channel is not None:
            self._channels.append(query_channel)

    @property
    def command_stub(self) -> command_service_pb2_grpc.CommandServiceAsyncStub:
        """Return the generated CommandService stub on this client's channel."""
        return self._commands

    @property
    def query_stub(self) -> query_service_pb2_grpc.QueryServiceAsyncStub:
        """Return the generated QueryService stub on this client's channel."""
        return self._query_stub()

    @property
    def channels(self) -> Sequence[grpc.aio.Channel]:
        """Return the channels: the command server's, then the query server's if any."""
        return tuple(self._channels)

    @classmethod
    def from_env(cls, token: str | None = None, **kwargs: Any) -> Self:
        """Return a client for POINTEX_COMMAND_TARGET / POINTEX_QUERY_TARGET and POINTEX_TOKEN."""
        return cls(Targets.from_env(), token or os.environ.get("POINTEX_TOKEN", ""), **kwargs)

    async def __aenter__(self) -> Self:
        """Return the client; it is closed when the block ends."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the channels."""
        await self.close()

    async def close(self) -> None:
        """Close both channels; calls in progress are cancelled."""
        for channel in self._channels:
            await channel.close(None)

    # Commands.

    async def open_account(
        self,
        account_id: str,
        kind: AccountKindName,
        *,
        owner_partner_id: str = "",
        display_name: str = "",
        request_id: str | None = None,
    ) -> pb.OpenAccountResponse:
        """Open an account with the id the caller chose (an operator names its owner)."""
        rid = request_id or builders.new_request_id()
        request = pb.OpenAccountRequest(
            request_id=rid,
            account_id=account_id,
            kind=builders.account_kind(kind),
            owner_partner_id=owner_partner_id,
            display_name=display_name,
        )
        return await self.call_command(self._commands.OpenAccount, request, rid)

    async def mint(
        self,
        merchant_account_id: str,
        amount_points: int,
        memo: str = "",
        *,
        request_id: str | None = None,
    ) -> pb.MintPointsResponse:
        """Mint new points into a merchant account (operator only)."""
        rid = request_id or builders.new_request_id()
        request = pb.MintPointsRequest(
            request_id=rid,
            merchant_account_id=merchant_account_id,
            amount_points=amount_points,
            memo=memo,
        )
        return await self.call_command(self._commands.MintPoints, request, rid)

    async def burn(
        self,
        merchant_account_id: str,
        amount_points: int,
        memo: str = "",
        *,
        request_id: str | None = None,
    ) -> pb.BurnPointsResponse:
        """Burn points from a merchant account (operator only)."""
        rid = request_id or builders.new_request_id()
        request = pb.BurnPointsRequest(
            request_id=rid,
            merchant_account_id=merchant_account_id,
            amount_points=amount_points,
            memo=memo,
        )
        return await self.call_command(self._commands.BurnPoints, request, rid)

    async def issue(
        self,
        merchant_account_id: str,
        member_account_id: str,
        amount_points: int,
        reason: str = "",
        *,
        request_id: str | None = None,
        activates_at: dt.datetime | None = None,
    ) -> pb.IssuePointsResponse:
        """Reward a member with a merchant's points; pending until `activates_at`, if given."""
        command = builders.issue(
            merchant_account_id,
            member_account_id,
            amount_points,
            reason,
            request_id=request_id,
            activates_at=activates_at,
        )
        request = command.issue_points
        return await self.call_command(self._commands.IssuePoints, request, request.request_id)

    async def redeem(
        self,
        member_account_id: str,
        merchant_account_id: str,
        amount_points: int,
        reason: str = "",
        *,
        request_id: str | None = None,
    ) -> pb.RedeemPointsResponse:
        """Spend a member's points at a merchant."""
        command = builders.redeem(
            member_account_id, merchant_account_id, amount_points, reason, request_id=request_id
        )
        request = command.redeem_points
        return await self.call_command(self._commands.RedeemPoints, request, request.request_id)

    async def transfer(
        self,
        from_account_id: str,
        to_account_id: str,
        amount_points: int,
        memo: str = "",
        *,
        request_id: str | None = None,
        fee_quote: common_pb2.FeeQuote | None = None,
    ) -> pb.TransferPointsResponse:
        """Give a member's points to another member, paying the program's transfer fee.

        With `fee_quote` (the `quote` of `quote_transfer`), the transfer pays exactly that fee
        or raises Refused with reason FEE_SCHEDULE_CHANGED (nothing moves; quote again).
        Without it, it pays the fee in force when it is decided. The reply states the fee paid
        (`fee_points`, within the debit of `from_available_points`) and, if the fee account
        refused the fee (it came back), `fee_refused_reason`.
        """
        command = builders.transfer(
            from_account_id,
            to_account_id,
            amount_points,
            memo,
            request_id=request_id,
            fee_quote=fee_quote,
        )
        request = command.transfer_points
        return await self.call_command(self._commands.TransferPoints, request, request.request_id)

    async def reverse_issue(
        self,
        transfer_id: str,
        amount_points: int,
        reason: str = "",
        *,
        request_id: str | None = None,
    ) -> pb.ReverseIssueResponse:
        """Take back (part of) a completed issue from the member; at most once per issue."""
        rid = request_id or builders.new_request_id()
        request = pb.ReverseIssueRequest(
            request_id=rid, transfer_id=transfer_id, amount_points=amount_points, reason=reason
        )
        return await self.call_command(self._commands.ReverseIssue, request, rid)

    async def reverse_redeem(
        self,
        transfer_id: str,
        amount_points: int,
        reason: str = "",
        *,
        request_id: str | None = None,
    ) -> pb.ReverseRedeemResponse:
        """Give back (part of) a completed redemption to the member; at most once."""
        rid = request_id or builders.new_request_id()
        request = pb.ReverseRedeemRequest(
            request_id=rid, transfer_id=transfer_id, amount_points=amount_points, reason=reason
        )
        return await self.call_command(self._commands.ReverseRedeem, request, rid)

    async def freeze(
        self, account_id: str, reason: str = "", *, request_id: str | None = None
    ) -> pb.FreezeAccountResponse:
        """Freeze an account: no outgoing movement until it is unfrozen."""
        rid = request_id or builders.new_request_id()
        request = pb.FreezeAccountRequest(request_id=rid, account_id=account_id, reason=reason)
        return await self.call_command(self._commands.FreezeAccount, request, rid)

    async def unfreeze(
        self, account_id: str, reason: str = "", *, request_id: str | None = None
    ) -> pb.UnfreezeAccountResponse:
        """Unfreeze a frozen account."""
        rid = request_id or builders.new_request_id()
        request = pb.UnfreezeAccountRequest(request_id=rid, account_id=account_id, reason=reason)
        return await self.call_command(self._commands.UnfreezeAccount, request, rid)

    async def close_account(
        self, account_id: str, reason: str = "", *, request_id: str | None = None
    ) -> pb.CloseAccountResponse:
        """Close an empty account for good."""
        rid = request_id or builders.new_request_id()
        request = pb.CloseAccountRequest(request_id=rid, account_id=account_id, reason=reason)
        return await self.call_command(self._commands.CloseAccount, request, rid)

    async def set_tier(
        self, account_id: str, tier: str, *, request_id: str | None = None
    ) -> pb.SetAccountTierResponse:
        """Set an account's member tier ("" clears it); program limits may name tiers."""
        rid = request_id or builders.new_request_id()
        request = pb.SetAccountTierRequest(request_id=rid, account_id=account_id, tier=tier)
        return await self.call_command(self._commands.SetAccountTier, request, rid)

    async def set_program_rules(
        self,
        limits: Sequence[common_pb2.TransactionLimit],
        *,
        expected_version: int,
        transfer_fee: common_pb2.TransferFee | None = None,
        reversal_debt_max_points: int = 0,
        expiry: common_pb2.ExpiryPolicy | None = None,
        cooling_off: dt.timedelta | None = None,
        pending_period: dt.timedelta | None = None,
        request_id: str | None = None,
    ) -> pb.SetProgramRulesResponse:
        """Replace the program's rules (operator only), if they are still at `expected_version`.

        The rules are replaced as a whole: the limits, the transfer fee (`builders.transfer_fee`;
        None: no fee), the reversal debt policy (0: none) and the expiry policy
        (`builders.expiry_policy`; None: earned points never lapse), the cooling-off window
        of market purchases (None: no refunds) and the pending period of issues (None:
        issued points are available at once). `expected_version` is the version
        `get_program_rules` returned (0 before any change); a change made meanwhile raises
        Refused with reason PROGRAM_RULES_CHANGED.
        """
        rid = request_id or builders.new_request_id()
        request = pb.SetProgramRulesRequest(
            request_id=rid,
            expected_version=expected_version,
            rules=common_pb2.ProgramRules(
                limits=limits,
                transfer_fee=transfer_fee,
                reversal_debt_max_points=reversal_debt_max_points,
                expiry=expiry,
            ),
        )
        if cooling_off is not None:
            request.rules.cooling_off.FromTimedelta(cooling_off)
        if pending_period is not None:
            request.rules.pending_period.FromTimedelta(pending_period)
        return await self.call_command(self._commands.SetProgramRules, request, rid)

    async def place_order(
        self,
        account_id: str,
        side: SideName,
        quantity_points: int,
        limit_price_minor: int,
        *,
        market_id: str = "PTS-CNY",
        time_in_force: TimeInForceName = "gtc",
        client_order_id: str = "",
        request_id: str | None = None,
        fee_quote: common_pb2.OrderFeeQuote | None = None,
    ) -> pb.PlaceOrderResponse:
        """Place a limit order; the reply shows it after matching, with the trades it made.

        With `fee_quote` (the `quote` of `quote_order` for these terms), the order is placed
        only under the market's fee schedule it was quoted from, or raises Refused with reason
        FEE_SCHEDULE_CHANGED (nothing is held; quote again). Each trade pays its side's fee on
        its own notional under that schedule.
        """
        rid = request_id or builders.new_request_id()
        request = pb.PlaceOrderRequest(
            request_id=rid,
            account_id=account_id,
            market_id=market_id,
            side=builders.order_side(side),
            quantity_points=quantity_points,
            limit_price_minor=limit_price_minor,
            time_in_force=builders.time_in_force(time_in_force),
            client_order_id=client_order_id,
            fee_quote=fee_quote,
        )
        return await self.call_command(self._commands.PlaceOrder, request, rid)

    async def cancel_order(
        self, order_id: str, *, market_id: str = "PTS-CNY", request_id: str | None = None
    ) -> pb.CancelOrderResponse:
        """Cancel a resting order; a SELL order's held points return to available."""
        rid = request_id or builders.new_request_id()
        request = pb.CancelOrderRequest(request_id=rid, market_id=market_id, order_id=order_id)
        return await self.call_command(self._commands.CancelOrder, request, rid)

    async def refund_purchase(
        self, trade_id: str, *, request_id: str | None = None
    ) -> pb.RefundPurchaseResponse:
        """Refund a market purchase within the program's cooling-off window.

        The buyer's points go back to the seller and the provider refunds the payment
        (`trade_status` REFUNDED); REFUNDING when the provider cannot answer now (the refund
        completes later); SETTLED with `declined_reason` when it refused. Outside the window,
        or once a point left the buyer's account, Refused with COOLING_OFF_ENDED or
        PURCHASE_POINTS_SPENT.
        """
        rid = request_id or builders.new_request_id()
        request = pb.RefundPurchaseRequest(request_id=rid, trade_id=trade_id)
        return await self.call_command(self._commands.RefundPurchase, request, rid)

    async def confirm_payment(
        self, callback: pb.PaymentCallback, *, request_id: str | None = None
    ) -> pb.ConfirmPaymentResponse:
        """Report a confirmed payment (payment provider only; sign it with `callbacks.sign`)."""
        rid = request_id or callback.provider_event_id
        request = pb.ConfirmPaymentRequest(request_id=rid, callback=callback)
        return await self.call_command(self._commands.ConfirmPayment, request, rid)

    async def fail_payment(
        self, callback: pb.PaymentCallback, *, request_id: str | None = None
    ) -> pb.FailPaymentResponse:
        """Report a failed payment (payment provider only; sign it with `callbacks.sign`)."""
        rid = request_id or callback.provider_event_id
        request = pb.FailPaymentRequest(request_id=rid, callback=callback)
        return await self.call_command(self._commands.FailPayment, request, rid)

    async def bulk(
        self,
        commands: Iterable[pb.BulkCommand],
        *,
        batch_commands: int = 500,
        window_batches: int = 4,
    ) -> AsyncGenerator[BulkOutcome, None]:
        """Run commands through ExecuteBulk and yield one outcome per command, in order.

        `commands` may be any iterable, of any length: it is read lazily, `batch_commands` at
        a time, with at most `window_batches` batches unanswered, so memory stays bounded. A
        command without a request id gets one. A broken stream is reopened and every batch it
        left unanswered is sent again under the same request ids, and a command refused
        retryably (overloaded, unavailable) is sent again, both within `retry`: nothing is
        applied twice, nothing is skipped.

        Raises:
            PointexError: the stream failed for good (refused, or retries used up).
        """
        if not 1 <= batch_commands <= BULK_BATCH_COMMANDS_MAX:
            raise ValueError(f"batch_commands must be 1..{BULK_BATCH_COMMANDS_MAX}")
        if window_batches < 1:
            raise ValueError("window_batches must be at least 1")
        run = BulkRun(commands, batch_commands, window_batches)
        failures = 0
        started = time.monotonic()
        while not run.done():
            outgoing: Queue[pb.ExecuteBulkRequest | None] = Queue()
            call = self._commands.ExecuteBulk(_drain(outgoing), metadata=self._metadata)
            failure: PointexError | None = None
            try:
                run.restart(outgoing)
                async for response in call:
                    failures = 0
                    for outcome in run.answered(response, outgoing):
                        self._observe_reply(outcome.response)
                        yield outcome
            except grpc.RpcError as error:
                failure = from_rpc_error(error)
            finally:
                cancel(call)
            if run.done():
                return
            outgoing.put_nowait(None)  # Ends the request side of a stream that broke.
            failure = failure or Unavailable(
                grpc.StatusCode.UNAVAILABLE, "the bulk stream ended before every batch's answer"
            )
            failures += 1
            delay_ms = self.retry.delay_ms(failure, failures, _elapsed_ms(started))
            if delay_ms is None:
                raise failure
            self._retrying(failure, delay_ms)
            await sleep(delay_ms / _MS_PER_S)

    # Queries.

    async def get_account(
        self,
        account_id: str,
        *,
        consistent: bool = False,
        min_position: common_pb2.Position | None = None,
    ) -> common_pb2.Account:
        """Return an account as the query server knows it."""
        request = qry.GetAccountRequest(
            account_id=account_id,
            min_position=self._min(consistent=consistent, min_position=min_position),
        )
        reply = await self.call_query(self._query_stub().GetAccount, request)
        return reply.account

    async def get_order(
        self,
        order_id: str,
        *,
        consistent: bool = False,
        min_position: common_pb2.Position | None = None,
    ) -> common_pb2.Order:
        """Return an order."""
        request = qry.GetOrderRequest(
            order_id=order_id,
            min_position=self._min(consistent=consistent, min_position=min_position),
        )
        reply = await self.call_query(self._query_stub().GetOrder, request)
        return reply.order

    async def get_trade(
        self,
        trade_id: str,
        *,
        consistent: bool = False,
        min_position: common_pb2.Position | None = None,
    ) -> common_pb2.Trade:
        """Return a trade."""
        request = qry.GetTradeRequest(
            trade_id=trade_id,
            min_position=self._min(consistent=consistent, min_position=min_position),
        )
        reply = await self.call_query(self._query_stub().GetTrade, request)
        return reply.trade

    async def list_markets(
        self, *, consistent: bool = False, min_position: common_pb2.Position | None = None
    ) -> list[common_pb2.Market]:
        """Return every market."""
        request = qry.ListMarketsRequest(
            min_position=self._min(consistent=consistent, min_position=min_position)
        )
        reply = await self.call_query(self._query_stub().ListMarkets, request)
        return list(reply.markets)

    async def order_book(
        self,
        market_id: str = "PTS-CNY",
        *,
        depth: int = 10,
        consistent: bool = False,
        min_position: common_pb2.Position | None = None,
    ) -> qry.GetOrderBookResponse:
        """Return a market's aggregated bids and asks, `depth` price levels a side."""
        request = qry.GetOrderBookRequest(
            market_id=market_id,
            depth=depth,
            min_position=self._min(consistent=consistent, min_position=min_position),
        )
        return await self.call_query(self._query_stub().GetOrderBook, request)

    async def get_program_rules(
        self, *, consistent: bool = False, min_position: common_pb2.Position | None = None
    ) -> qry.GetProgramRulesResponse:
        """Return the program's rules in force, their version and the fee schedule's version."""
        request = qry.GetProgramRulesRequest(
            min_position=self._min(consistent=consistent, min_position=min_position)
        )
        return await self.call_query(self._query_stub().GetProgramRules, request)

    async def quote_transfer(
        self,
        from_account_id: str,
        amount_points: int,
        *,
        consistent: bool = False,
        min_position: common_pb2.Position | None = None,
    ) -> qry.QuoteTransferResponse:
        """Return the fee a transfer of `amount_points` from an account would pay now.

        The reply's `quote` (fee and fee schedule version) goes to `transfer(fee_quote=...)`;
        `total_points` is what would leave the account and `fee_account_id` where the fee goes.
        """
        request = qry.QuoteTransferRequest(
            from_account_id=from_account_id,
            amount_points=amount_points,
            min_position=self._min(consistent=consistent, min_position=min_position),
        )
        return await self.call_query(self._query_stub().QuoteTransfer, request)

    async def quote_order(
        self,
        account_id: str,
        side: SideName,
        quantity_points: int,
        limit_price_minor: int,
        *,
        market_id: str = "PTS-CNY",
        consistent: bool = False,
        min_position: common_pb2.Position | None = None,
    ) -> qry.QuoteOrderResponse:
        """Return the fee an order would pay now, in money, for one full fill at its limit.

        The reply's `quote` (`fee_minor` and the market's fee schedule version) goes to
        `place_order(fee_quote=...)` with the same terms; `schedule` is the side's fee
        schedule, `total_minor` what a BUY pays (notional + fee) or a SELL receives
        (notional - fee) for that one fill. An order filled in several trades pays each
        trade's fee on its own notional.
        """
        request = qry.QuoteOrderRequest(
            account_id=account_id,
            market_id=market_id,
            side=builders.order_side(side),
            quantity_points=quantity_points,
            limit_price_minor=limit_price_minor,
            min_position=self._min(consistent=consistent, min_position=min_position),
        )
        return await self.call_query(self._query_stub().QuoteOrder, request)

    async def check_invariants(
        self, *, consistent: bool = False, min_position: common_pb2.Position | None = None
    ) -> qry.CheckInvariantsResponse:
        """Return the query server's audit of conservation (I1) and escrow (I2)."""
        request = qry.CheckInvariantsRequest(
            min_position=self._min(consistent=consistent, min_position=min_position)
        )
        return await self.call_query(self._query_stub().CheckInvariants, request)

    def list_accounts(
        self,
        *,
        owner_partner_id: str = "",
        kinds: Sequence[common_pb2.AccountKind.ValueType] = (),
        statuses: Sequence[common_pb2.AccountStatus.ValueType] = (),
        page_size: int = 100,
        consistent: bool = False,
        min_position: common_pb2.Position | None = None,
    ) -> AsyncIterator[common_pb2.Account]:
        """Iterate over accounts, fetching pages lazily."""
        min_position = self._min(consistent=consistent, min_position=min_position)

        def page(token: str) -> qry.ListAccountsRequest:
            return qry.ListAccountsRequest(
                min_position=min_position,
                owner_partner_id=owner_partner_id,
                kinds=kinds,
                statuses=statuses,
                page_size=page_size,
                page_token=token,
            )

        stub = self._query_stub()
        return self._pages(stub.ListAccounts, page, lambda reply: reply.accounts)

    def account_history(
        self,
        account_id: str,
        *,
        kinds: Sequence[common_pb2.MovementKind.ValueType] = (),
        start_time: Timestamp | None = None,
        end_time: Timestamp | None = None,
        newest_first: bool = False,
        page_size: int = 100,
        consistent: bool = False,
        min_position: common_pb2.Position | None = None,
    ) -> AsyncIterator[qry.Movement]:
        """Iterate over an account's movements, fetching pages lazily."""
        min_position = self._min(consistent=consistent, min_position=min_position)

        def page(token: str) -> qry.GetAccountHistoryRequest:
            return qry.GetAccountHistoryRequest(
                min_position=min_position,
                account_id=account_id,
                kinds=kinds,
                start_time=start_time,
                end_time=end_time,
                newest_first=newest_first,
                page_size=page_size,
                page_token=token,
            )

        stub = self._query_stub()
        return self._pages(stub.GetAccountHistory, page, lambda reply: reply.movements)

    def list_orders(
        self,
        *,
        account_id: str = "",
        market_id: str = "",
        statuses: Sequence[common_pb2.OrderStatus.ValueType] = (),
        page_size: int = 100,
        consistent: bool = False,
        min_position: common_pb2.Position | None = None,
    ) -> AsyncIterator[common_pb2.Order]:
        """Iterate over orders, fetching pages lazily."""
        min_position = self._min(consistent=consistent, min_position=min_position)

        def page(token: str) -> qry.ListOrdersRequest:
            return qry.ListOrdersRequest(
                min_position=min_position,
                account_id=account_id,
                market_id=market_id,
                statuses=statuses,
                page_size=page_size,
                page_token=token,
            )

        stub = self._query_stub()
        return self._pages(stub.ListOrders, page, lambda reply: reply.orders)

    def list_trades(
        self,
        *,
        account_id: str = "",
        market_id: str = "",
        order_id: str = "",
        statuses: Sequence[common_pb2.TradeStatus.ValueType] = (),
        refund_required_only: bool = False,
        page_size: int = 100,
        consistent: bool = False,
        min_position: common_pb2.Position | None = None,
    ) -> AsyncIterator[common_pb2.Trade]:
        """Iterate over trades, fetching pages lazily."""
        min_position = self._min(consistent=consistent, min_position=min_position)

        def page(token: str) -> qry.ListTradesRequest:
            return qry.ListTradesRequest(
                min_position=min_position,
                account_id=account_id,
                market_id=market_id,
                order_id=order_id,
                statuses=statuses,
                refund_required_only=refund_required_only,
                page_size=page_size,
                page_token=token,
            )

        stub = self._query_stub()
        return self._pages(stub.ListTrades, page, lambda reply: reply.trades)

    async def notifications(
        self,
        *,
        account_ids: Sequence[str] = (),
        kinds: Sequence[qry.NotificationKind.ValueType] = (),
        cursor: bytes = b"",
        from_beginning: bool = False,
        min_position: common_pb2.Position | None = None,
        retry: RetryPolicy = WATCH_RETRY,
    ) -> AsyncGenerator[qry.Notification, None]:
        """Follow notifications live, resuming after a lost connection from the last cursor.

        Start from `cursor` (a notification's `cursor`, saved earlier), or with
        `from_beginning`, or else from now. When the stream breaks (the query server
        restarts), the iterator reconnects with the cursor of the last notification it
        yielded: none is lost and none repeated. Save `notification.cursor` to resume in a
        later process.

        Raises:
            PointexError: the watch was refused, or reconnecting kept failing past `retry`.
        """
        failures = 0
        failed_since = 0.0
        while True:
            request = qry.WatchNotificationsRequest(
                min_position=min_position,
                cursor=cursor,
                from_beginning=from_beginning and not cursor,
                account_ids=account_ids,
                kinds=kinds,
            )
            call = self._query_stub().WatchNotifications(request, metadata=self._metadata)
            try:
                async for response in call:
                    failures = 0
                    if response.HasField("notification"):
                        cursor = response.notification.cursor
                        yield response.notification
            except grpc.RpcError as error:
                failure = from_rpc_error(error)
                failed_since = failed_since if failures else time.monotonic()
                failures += 1
                delay_ms = retry.delay_ms(failure, failures, _elapsed_ms(failed_since))
                if delay_ms is None:
                    raise failure from None
                self._retrying(failure, delay_ms)
                await sleep(delay_ms / _MS_PER_S)
            finally:
                cancel(call)

    # The machinery every call goes through.

    async def call_command(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[Request, Response],
        request: Request,
        request_id: str,
    ) -> Response:
        """Send any command request with this client's deadline, retries and error types.

        The typed methods above are built on this; use it for a request they do not cover.
        `request_id` must be the request's own `request_id`: it is what a retry reuses.
        """
        reply = await self._invoke(rpc, request, self.deadlines.command_ms, request_id)
        self._observe_reply(reply)
        return reply

    async def call_query(
        self, rpc: grpc.aio.UnaryUnaryMultiCallable[Request, Response], request: Request
    ) -> Response:
        """Send any query request with this client's deadline, retries and error types."""
        return await self._invoke(rpc, request, self.deadlines.query_ms, "")

    async def _invoke(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[Request, Response],
        request: Request,
        deadline_ms: int,
        request_id: str,
    ) -> Response:
        """Call `rpc`, retrying within the policy with the same request (and request id)."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await rpc(
                    request, metadata=self._metadata, timeout=Deadlines.seconds(deadline_ms)
                )
            except grpc.RpcError as error:
                failure = from_rpc_error(error, request_id=request_id)
                delay_ms = self.retry.delay_ms(failure, attempt, _elapsed_ms(started))
                if delay_ms is None:
                    raise failure from None
                self._retrying(failure, delay_ms)
                await sleep(delay_ms / _MS_PER_S)

    async def _pages(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[Request, Response],
        page: Callable[[str], Request],
        items: Callable[[Response], Iterable[Item]],
    ) -> AsyncIterator[Item]:
        token = ""
        while True:
            reply = await self.call_query(rpc, page(token))
            for item in items(reply):
                yield item
            token = str(getattr(reply, "next_page_token", ""))
            if not token:
                return

    def _retrying(self, failure: PointexError, delay_ms: int) -> None:
        if self._on_retry is not None:
            self._on_retry(failure, delay_ms)

    def _query_stub(self) -> query_service_pb2_grpc.QueryServiceAsyncStub:
        if self._queries is None:
            raise ValueError("this client has no query target")
        return self._queries

    def _observe_reply(self, reply: message.Message | None) -> None:
        position = getattr(reply, "position", None)
        if isinstance(position, common_pb2.Position) and position.token:
            self.last_position = positions.later(self.last_position, position)

    def _min(
        self, *, consistent: bool, min_position: common_pb2.Position | None = None
    ) -> common_pb2.Position | None:
        if min_position is not None:
            return min_position
        return self.last_position if consistent else None


async def _drain(
    outgoing: Queue[pb.ExecuteBulkRequest | None],
) -> AsyncIterator[pb.ExecuteBulkRequest]:
    """Send what the bulk run queues, until it queues None (the end, or a broken stream)."""
    while (request := await outgoing.get()) is not None:
        yield request


def _elapsed_ms(since: float) -> int:
    return int((time.monotonic() - since) * _MS_PER_S)


def _channel(target: str, tls: Tls | None, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
    every = channel_options(tls, options)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=every)
    return grpc.aio.secure_channel(target, tls.credentials(), options=every)
