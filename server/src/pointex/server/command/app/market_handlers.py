"""The market's service layer: placing and cancelling orders, and payment callbacks.

Placing an order is a process: (1) its account holds it (a SELL's points are held,
PointsHeld; a BUY's quantity reserved, BuyReserved; both carry the order's terms), (2) the
market places and matches the order (OrderPlaced, its TradeMatched, an IOC remainder's
OrderCancelled, each trade's TradeCreated and the request record, in one unit), (3) an IOC
remainder is released on the account. Which step is due is decided by the pure state
machine of domain/processes/placement.py. After a crash between steps, the recovery scan
(market_recovery.py) finishes the order. Because the account step comes first and is
decided by the account's actor, an account that is closed takes no order, and an account
with orders or trades under way does not close.

A request's record (`request-<key>`) is written with the market step; the order id is
derived from the request key, so a retry names the same order. Payment callbacks are
recorded per provider event id, which is what a provider redelivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import Message

from pointex.client.positions import position_message
from pointex.server.actors.market_actor import MarketActors
from pointex.server.actors.runtime import AccountActors
from pointex.server.actors.stream_actor import Decide, Inspect
from pointex.server.command.app.idempotency import (
    Replies,
    Request,
    recorded_reply,
    replay_record,
    request_key,
)
from pointex.server.command.app.record_lookup import RecordLookup
from pointex.server.command.app.runner import ProcessRunner, retry_until_done
from pointex.server.command.app.trade_processes import TradeProcesses
from pointex.server.command.edge import market_replies
from pointex.server.command.edge.replies import ProtoReplies, payload_digest
from pointex.server.domain import errors, streams
from pointex.server.domain import trade as trade_model
from pointex.server.domain.account import Account
from pointex.server.domain.commands import ReleaseBuy, ReleasePoints
from pointex.server.domain.market_commands import (
    CancelOrder,
    ConfigureMarket,
    PlaceOrder,
)
from pointex.server.domain.market_events import (
    MarketEvent,
    OrderCancelled,
    TradeCreated,
    TradeMatched,
)
from pointex.server.domain.order_book import BookOrder, OrderBook, check_order, copy_order
from pointex.server.domain.processes import placement
from pointex.server.domain.values import (
    AccountStatus,
    Caller,
    OrderSide,
    Principal,
)
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, StoreError, StreamAppend
from pointex.server.overload import Overloaded
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Message)
ORDER_ID_PREFIX = "ord-"
_PLACE_REPLIES = ProtoReplies(pb.PlaceOrderResponse)
_CANCEL_REPLIES = ProtoReplies(pb.CancelOrderResponse)
_RESUMED = placement.Resumed()


def order_id_for(key: str) -> str:
    """Return the id of the order a request key places."""
    return ORDER_ID_PREFIX + key


@dataclass(frozen=True, slots=True)
class Placed:
    """What the market step of a placement decided: the reply, and the trades it created."""

    response: pb.PlaceOrderResponse
    created: list[TradeCreated]
    remainder_points: int  # an IOC remainder, to release on the account


class MarketHandlers:
    """Run market commands against the market and account actors of one command server."""

    def __init__(
        self,
        *,
        store: EventStore,
        accounts: AccountActors,
        markets: MarketActors,
        processes: TradeProcesses,
        lookup: RecordLookup,
        runner: ProcessRunner,
    ) -> None:
        """Serve market commands through these actors and trade processes, steps in `runner`."""
        self._accounts = accounts
        self._markets = markets
        self._processes = processes
        self.processes = processes
        self._lookup = lookup
        self._store = store
        self._runner = runner
        self._held: set[str] = set()  # Orders held on their account, not yet placed

    @property
    def markets(self) -> MarketActors:
        """Return the market actors this layer drives."""
        return self._markets

    async def configure(self) -> None:
        """Record each configured market's configuration where it changed."""
        for market in self._markets.configured.values():
            await self._markets.actor(market.market_id).tell(Decide(ConfigureMarket(market)))

    # --- PlaceOrder ---------------------------------------------------------------------

    async def place_order(
        self, principal: Principal, request: pb.PlaceOrderRequest, order: PlaceOrder
    ) -> pb.PlaceOrderResponse:
        """Place an order once per request id; return it after matching."""
        key = request_key(principal, request.request_id)
        assert order.order_id == order_id_for(key), order
        digest = payload_digest(request)
        replayed = await self._replayed(key, digest, _PLACE_REPLIES)
        if replayed is not None:
            return replayed
        work = self._place(principal.caller, request.request_id, principal.principal_id, order)
        response: pb.PlaceOrderResponse = await self._once(key, work(digest))
        return response

    def _place(
        self, caller: Caller, request_id: str, principal_id: str, order: PlaceOrder
    ) -> Callable[[bytes], Any]:
        async def run(digest: bytes) -> pb.PlaceOrderResponse:
            await self._require_trader(caller, order.account_id)
            self._processes.require_room()
            market = self._markets.serving(order.market_id)
            await market.tell(Inspect(lambda book: check_order(book, order)))
            # A retry after a failed placement finds the order held already.
            if order.order_id not in self._held:
                hold = placement.start(caller, order)
                await self._accounts.ask(order.account_id, Decide(hold.command))
                self._held.add(order.order_id)
            try:
                return await self.place_held(order, digest, request_id, principal_id)
            except (StoreError, Overloaded):
                self._place_later(order, digest, request_id, principal_id)
                raise

        return run

    def _place_later(
        self, order: PlaceOrder, digest: bytes, request_id: str, principal_id: str
    ) -> None:
        """Keep placing a held order whose placement failed for an operating reason.

        Its request stays "in progress" meanwhile, so a retry cannot hold the points again.
        """
        key = order.order_id.removeprefix(ORDER_ID_PREFIX)

        async def retry() -> None:
            with contextlib.suppress(errors.DomainError):  # Rejected: its points were released.
                await retry_until_done(
                    lambda: self.place_held(order, digest, request_id, principal_id),
                    retry_on=(StoreError, Overloaded),
                    what=f"placement of order {order.order_id}",
                )

        self._runner.spawn(retry(), key=key)

    async def place_held(
        self, order: PlaceOrder, digest: bytes, request_id: str, principal_id: str
    ) -> pb.PlaceOrderResponse:
        """Run the market step of a placement (the order is held on its account).

        A placement whose commit had an unknown outcome may have happened: then the order is
        in the book and its reply is the request's record.
        """
        key = order.order_id.removeprefix(ORDER_ID_PREFIX)
        market = self._markets.actor(order.market_id)
        if await market.tell(Inspect(lambda book: book.find(order.order_id) is not None)):
            self._held.discard(order.order_id)
            replayed = await replay_record(
                self._store, streams.request(key), digest, _PLACE_REPLIES
            )
            if replayed is None:  # Rejected after its hold: the refusal is not recorded.
                raise errors.FailedPrecondition(
                    errors.MARKET_CLOSED, "the order was rejected", order_id=order.order_id
                )
            return replayed
        finish = self._placement_finish(order, key, digest, request_id, principal_id)
        try:
            decided = await market.tell(Decide(order, finish))
        except errors.DomainError as refusal:
            await self._reject_held(order, refusal.reason)
            self._held.discard(order.order_id)
            raise
        self._held.discard(order.order_id)
        placed: Placed = decided.value
        for created in placed.created:
            self._processes.start(created)
        position = decided.position
        step = placement.decide(placement.placed(order, placed.remainder_points), _RESUMED)
        if isinstance(step, placement.Release):
            position = await self.release(step.command, after=position)
        response = placed.response
        response.position.CopyFrom(position_message(position))
        return response

    def _placement_finish(
        self, order: PlaceOrder, key: str, digest: bytes, request_id: str, principal_id: str
    ) -> Callable[[OrderBook, list[MarketEvent]], tuple[tuple[StreamAppend, ...], Placed]]:
        def finish(book: OrderBook, events: list[MarketEvent]) -> Any:
            assert book.market is not None
            now = self._processes.now()
            created = [
                trade_model.created_from(e, book.market, now)
                for e in events
                if isinstance(e, TradeMatched)
            ]
            placed = book.find(order.order_id)
            assert placed is not None, order
            response = pb.PlaceOrderResponse(
                order=market_replies.order_message(
                    copy_order(placed), order.market_id, book.market.currency, changed_at=now
                ),
                trades=[market_replies.trade_message(c, now) for c in created[:100]],
                trade_count=len(created),
            )
            response.order.placed_at.CopyFrom(response.order.updated_at)
            if placed.cancelled_quantity_points:
                response.order.cancel_reason = common_pb2.ORDER_CANCEL_REASON_IOC_REMAINDER
            record = recorded_reply(
                streams.request(key),
                principal_id,
                Request(request_id, "PlaceOrder", digest),
                _PLACE_REPLIES.encode(response),
            )
            appends = (
                *(StreamAppend(streams.trade(c.trade_id), 0, (codec.encode(c),)) for c in created),
                record,
            )
            remainder = sum(
                e.cancelled_quantity_points for e in events if isinstance(e, OrderCancelled)
            )
            return appends, Placed(response, created, remainder)

        return finish

    async def _reject_held(self, order: PlaceOrder, reason: str) -> None:
        """Record that a held order cannot be placed, and release what its account held."""
        held = placement.held(order)
        rejected = placement.decide(held, placement.Refused(reason))
        assert isinstance(rejected, placement.Reject), rejected
        await self._markets.actor(order.market_id).tell(Decide(rejected.command))
        release = placement.decide(placement.rejected(order), _RESUMED)
        assert isinstance(release, placement.Release), release
        await self.release(release.command)

    async def release(self, release: ReleasePoints | ReleaseBuy, *, after: int = 0) -> int:
        """Release what an order held on its account (see TradeProcesses.release)."""
        return await self._processes.release(release, after=after)

    # --- CancelOrder --------------------------------------------------------------------

    async def cancel_order(
        self, principal: Principal, request: pb.CancelOrderRequest
    ) -> pb.CancelOrderResponse:
        """Cancel a resting order once per request id; release what its account held."""
        key = request_key(principal, request.request_id)
        digest = payload_digest(request)
        replayed = await self._replayed(key, digest, _CANCEL_REPLIES)
        if replayed is not None:
            return replayed
        response: pb.CancelOrderResponse = await self._once(
            key, self._cancel(principal, request, key, digest)
        )
        return response

    async def _cancel(
        self, principal: Principal, request: pb.CancelOrderRequest, key: str, digest: bytes
    ) -> pb.CancelOrderResponse:
        market = self._markets.serving(request.market_id)
        order = await market.tell(Inspect(lambda book: book.find(request.order_id)))
        if order is None:
            raise errors.NotFound(
                errors.ORDER_NOT_FOUND, "no such order", order_id=request.order_id
            )
        account = await self._accounts.peek(order.account_id)
        assert account is not None, order
        if not principal.caller.may_act_for(account.owner_partner_id):
            raise errors.PermissionDenied(
                errors.NOT_OWNER, "the order belongs to another partner", order_id=order.order_id
            )

        def finish(book: OrderBook, events: list[MarketEvent]) -> Any:
            assert book.market is not None
            cancelled = events[0]
            assert isinstance(cancelled, OrderCancelled)
            released = cancelled.cancelled_quantity_points if order.side is OrderSide.SELL else 0
            response = pb.CancelOrderResponse(
                order=market_replies.order_message(
                    copy_order(_found(book, order.order_id)),
                    request.market_id,
                    book.market.currency,
                    changed_at=self._processes.now(),
                    cancel_reason=common_pb2.ORDER_CANCEL_REASON_REQUESTED,
                ),
                cancelled_quantity_points=cancelled.cancelled_quantity_points,
                released_points=released,
            )
            record = recorded_reply(
                streams.request(key),
                principal.principal_id,
                Request(request.request_id, "CancelOrder", digest),
                _CANCEL_REPLIES.encode(response),
            )
            return (record,), response

        command = CancelOrder(request.market_id, request.order_id)
        decided = await market.tell(Decide(command, finish))
        response: pb.CancelOrderResponse = decided.value
        cancelled = placement.cancelled(
            order.order_id, order.account_id, order.side, response.cancelled_quantity_points
        )
        step = placement.decide(cancelled, _RESUMED)
        assert isinstance(step, placement.Release), step
        position = await self.release(step.command, after=decided.position)
        response.position.CopyFrom(position_message(position))
        return response

    # --- Shared -------------------------------------------------------------------------

    async def _require_trader(self, caller: Caller, account_id: str) -> Account:
        account = await self._accounts.peek(account_id)
        if account is None:
            raise errors.NotFound(
                errors.ACCOUNT_NOT_FOUND, "no such account", account_id=account_id
            )
        if not caller.may_act_for(account.owner_partner_id):
            raise errors.PermissionDenied(
                errors.NOT_OWNER, "the account belongs to another partner", account_id=account_id
            )
        if account.status is AccountStatus.CLOSED:
            raise errors.FailedPrecondition(
                errors.ACCOUNT_CLOSED, "account is closed", account_id=account_id
            )
        return account

    async def _replayed(self, key: str, digest: bytes, replies: Replies[R]) -> R | None:
        stream = streams.request(key)
        if not await self._lookup.exists(stream):
            return None
        return await replay_record(self._store, stream, digest, replies)

    async def _once(self, key: str, work: Any) -> Any:
        """Run a request's first attempt detached from its caller; refuse a concurrent retry.

        Detached: a client that hangs up after the points were held must not leave them
        held with no order. A retry while it runs gets ABORTED / REQUEST_IN_PROGRESS.
        """
        if self._runner.in_progress(key):
            work.close()
            raise errors.Aborted(
                errors.REQUEST_IN_PROGRESS, "the first request with this id is still running"
            )
        return await asyncio.shield(self._runner.spawn(work, key=key))


def _found(book: OrderBook, order_id: str) -> BookOrder:
    """Return an order the book knows (the step that found it is still running)."""
    order = book.find(order_id)
    assert order is not None, order_id
    return order
