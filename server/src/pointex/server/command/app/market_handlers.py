"""The market's service layer: placing and cancelling orders, and payment callbacks.

Placing an order is a process: (1) its account holds it (a SELL's points are held,
PointsHeld; a BUY's quantity reserved, BuyReserved; both carry the order's terms), (2) the
market places and matches the order (OrderPlaced, its TradeMatched, an IOC remainder's
OrderCancelled, each trade's TradeCreated and the request record, in one unit), (3) an IOC
remainder is released on the account. Which step is due is decided by the pure state
machine of domain/processes/placement.py. After a crash between steps, the recovery scan
(market_recovery.py) finishes the order. The market checks an order (its fee quote
included) before step (1), so that an order it would refuse holds nothing, and again when
it decides step (2): a refusal then rejects the held order and releases it. Because the
account step comes first and is decided by the account's actor, an account that is closed
takes no order, and an account with orders or trades under way does not close.

A request's record (`request-<key>`) is written with the market step; the order id is
derived from the request key, so a retry names the same order. Payment callbacks are
recorded per provider event id, which is what a provider redelivers.

With the slice ranges split across command servers, an order is placed by the owner of its
account (the call is placed there): the hold and the releases are its own, and the market
step is asked of the market's owner (`PlaceElsewhere`; PeerService/PlaceHeldOrder), which
records the placement and drives its trades. A cancellation runs on the market's owner, and
its release is made by the account's owner (trade_processes.py, `TradePeers.release`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pointex.server.actors.market_actor import MarketActors
from pointex.server.actors.runtime import AccountActors
from pointex.server.actors.stream_actor import Decide, Inspect, appending
from pointex.server.command.app.idempotency import (
    Replies,
    Request,
    read_reply,
    recorded_reply,
    replay_record,
    request_key,
    step_record,
    step_stream,
)
from pointex.server.command.app.record_lookup import RecordLookup
from pointex.server.command.app.runner import ProcessRunner, retry_until_done
from pointex.server.command.app.trade_processes import TradeProcesses
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
from pointex.server.domain.order_book import BookOrder, OrderBook, check_order
from pointex.server.domain.processes import placement
from pointex.server.domain.values import (
    AccountStatus,
    Caller,
    Instant,
    Market,
    OrderSide,
    Principal,
)
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import (
    CommitOutcomeUnknown,
    EventStore,
    StoreError,
    StreamAppend,
    WrongExpectedVersion,
)
from pointex.server.overload import Overloaded

log = logging.getLogger(__name__)

R = TypeVar("R")
P = TypeVar("P")  # a PlaceOrder reply, as the edge builds it
C = TypeVar("C")  # a CancelOrder reply
ORDER_ID_PREFIX = "ord-"
_RESUMED = placement.Resumed()


def order_id_for(key: str) -> str:
    """Return the id of the order a request key places."""
    return ORDER_ID_PREFIX + key


# Asks the owner of the order's market to take the market step of a held order: (order, its
# request, the principal id) to the placement's reply and the position of its last event.
PlaceElsewhere = Callable[[PlaceOrder, Request, str], Awaitable[tuple[P, int]]]


class MarketReplies(Protocol[P, C]):
    """How the edge builds, records and replays the replies of PlaceOrder and CancelOrder."""

    @property
    def place(self) -> Replies[P]:
        """Return how a PlaceOrder reply is recorded and replayed."""
        ...

    @property
    def cancel(self) -> Replies[C]:
        """Return how a CancelOrder reply is recorded and replayed."""
        ...

    def placed(
        self, order: BookOrder, market: Market, trades: Sequence[TradeCreated], at: Instant
    ) -> P:
        """Return the reply to a placement: the order after matching and the trades it made."""
        ...

    def cancelled(
        self,
        order: BookOrder,
        market: Market,
        at: Instant,
        *,
        cancelled_points: int,
        released_points: int,
    ) -> C:
        """Return the reply to a cancellation (`released_points`: held points released)."""
        ...

    def placing(self, order: PlaceOrder) -> Request:
        """Return the request that places `order`, without its id (for recovery's record)."""
        ...

    def placement_outcome(self, reply: P) -> tuple[list[str], int]:
        """Return the trades a placement's reply names (all of them) and its IOC remainder."""
        ...

    def cancelled_points(self, reply: C) -> int:
        """Return the open quantity a cancellation's reply says it took out of the book."""
        ...


@dataclass(frozen=True, slots=True)
class Placed(Generic[P]):
    """What the market step of a placement decided: the reply, and the trades it created."""

    response: P
    created: list[TradeCreated]


class MarketHandlers(Generic[P, C]):
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
        replies: MarketReplies[P, C],
        place_elsewhere: PlaceElsewhere[P] | None = None,
    ) -> None:
        """Serve market commands through these actors and trade processes, steps in `runner`.

        `place_elsewhere` asks another server for the market step of an order whose market
        it owns (with the slice ranges split across servers).
        """
        self._place_elsewhere = place_elsewhere
        self._replies = replies
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

    async def configure(self, among: Callable[[str], bool] | None = None) -> None:
        """Record each configured market's configuration where it changed (the markets here).

        `among`: of those markets only (the ranges a balanced server just took).
        """
        for market in self._markets.configured.values():
            if self._markets.here(market.market_id) and (among is None or among(market.market_id)):
                await self._markets.actor(market.market_id).tell(Decide(ConfigureMarket(market)))

    # --- PlaceOrder ---------------------------------------------------------------------

    async def place_order(self, principal: Principal, request: Request, order: PlaceOrder) -> P:
        """Place an order once per request id; return it after matching."""
        key = request_key(principal, request.request_id)
        assert order.order_id == order_id_for(key), order
        replayed = await self._replayed(key, request.digest, self._replies.place)
        if replayed is not None:
            return replayed
        return await self._once(key, self._place(principal, request, order))

    async def _place(self, principal: Principal, request: Request, order: PlaceOrder) -> P:
        caller, principal_id = principal.caller, principal.principal_id
        await self._require_trader(caller, order.account_id)
        self._processes.require_room()
        self._markets.require_configured(order.market_id)
        if self._markets.here(order.market_id):  # Else its owner checks it as it places it.
            market = self._markets.actor(order.market_id)
            await market.tell(Inspect(lambda book: check_order(book, order)))
        # A retry after a failed placement finds the order held already.
        if order.order_id not in self._held:
            await self._hold(caller, order)
            self._held.add(order.order_id)
        try:
            return await self.place_held(order, request, principal_id)
        except (StoreError, Overloaded):
            self._place_later(order, request, principal_id)
            raise

    async def _hold(self, caller: Caller, order: PlaceOrder) -> None:
        """Hold the order on its account, once: the hold commits with its record.

        After a hold whose commit had an unknown outcome, the retry meets the record (or a
        refusal, when the first hold left too little to hold again): the order is held.
        Unless it was rejected and released since: then the retry is answered so.
        """
        hold = placement.start(caller, order).command
        record = step_record("hold", type(hold).__name__, order.order_id)
        try:
            await self._accounts.ask(order.account_id, Decide(hold, appending(record)))
        except WrongExpectedVersion as conflict:
            if conflict.stream_id != record.stream_id:
                raise
        except errors.DomainError:
            if not await self._lookup.exists(record.stream_id):
                raise
        else:
            return
        if await self._lookup.exists(step_stream("release", order.order_id)):
            raise errors.FailedPrecondition(
                errors.MARKET_CLOSED, "the order was rejected", order_id=order.order_id
            )

    def _place_later(self, order: PlaceOrder, request: Request, principal_id: str) -> None:
        """Keep placing a held order whose placement failed for an operating reason.

        Its request stays "in progress" meanwhile, so a retry cannot hold the points again.
        """
        key = order.order_id.removeprefix(ORDER_ID_PREFIX)

        async def retry() -> None:
            with contextlib.suppress(errors.DomainError):  # Rejected: its points were released.
                await retry_until_done(
                    lambda: self.place_held(order, request, principal_id),
                    retry_on=(StoreError, Overloaded),
                    what=f"placement of order {order.order_id}",
                )

        self._runner.spawn(retry(), key=key)

    async def resume_placement(self, order: PlaceOrder) -> None:
        """Place an order found held by recovery (recording its request without an id).

        A refusal rejects the order and releases it: the finished state. A placement that
        cannot be made now (the store, or the market's owner, away) goes on in the
        background, as a client's does: the recovery that found it is not held back.
        """
        request = self._replies.placing(order)
        try:
            await self.place_held(order, request, "")
        except errors.DomainError:
            return
        except (StoreError, Overloaded):
            self._place_later(order, request, "")

    async def place_held(self, order: PlaceOrder, request: Request, principal_id: str) -> P:
        """Run the market step of a placement (the order is held on its account), then its release.

        The market step runs here, or at the market's owner. A refusal rejects the order there
        and releases the hold here; an IOC remainder is released here.
        """
        try:
            if self._markets.here(order.market_id):
                response, position = await self.place_in_market(order, request, principal_id)
            else:
                assert self._place_elsewhere is not None, order.market_id
                response, position = await self._place_elsewhere(order, request, principal_id)
        except errors.DomainError as refusal:
            if refusal.reason == errors.IDEMPOTENCY_KEY_REUSED:
                raise  # The order is in the book: its record holds another request.
            self._held.discard(order.order_id)
            release = placement.decide(placement.rejected(order), _RESUMED)
            assert isinstance(release, placement.Release), release
            await self.release(release.command)
            raise
        self._held.discard(order.order_id)
        _, remainder_points = self._replies.placement_outcome(response)
        step = placement.decide(placement.placed(order, remainder_points), _RESUMED)
        if isinstance(step, placement.Release):
            position = await self.release(step.command, after=position)
        return self._replies.place.at(response, position)

    async def place_in_market(
        self, order: PlaceOrder, request: Request, principal_id: str
    ) -> tuple[P, int]:
        """Place and match a held order in its market here; return the reply and its position.

        The trades it creates are driven from here. A placement whose commit had an unknown
        outcome may have happened: then the order is in the book and its reply is the
        request's record (its trades are driven, unless they are already). A refusal is
        recorded as the order's rejection and raised: the hold is to be released.
        """
        key = order.order_id.removeprefix(ORDER_ID_PREFIX)
        market = self._markets.actor(order.market_id)
        if await market.tell(Inspect(lambda book: book.find(order.order_id) is not None)):
            recorded = await read_reply(
                self._store, streams.request(key), request.digest, self._replies.place
            )
            if recorded is None:  # Rejected after its hold: the refusal is not recorded.
                raise errors.FailedPrecondition(
                    errors.MARKET_CLOSED, "the order was rejected", order_id=order.order_id
                )
            replayed, position = recorded
            trade_ids, _ = self._replies.placement_outcome(replayed)
            for trade_id in trade_ids:
                await self._processes.drive(trade_id)
            return replayed, position
        finish = self._placement_finish(order, key, request, principal_id)
        try:
            decided = await market.tell(Decide(order, finish))
        except errors.DomainError as refusal:
            rejected = placement.decide(placement.held(order), placement.Refused(refusal.reason))
            assert isinstance(rejected, placement.Reject), rejected
            await market.tell(Decide(rejected.command))
            raise
        placed: Placed[P] = decided.value
        for created in placed.created:
            self._processes.start(created)
        return placed.response, decided.position

    def _placement_finish(
        self, order: PlaceOrder, key: str, request: Request, principal_id: str
    ) -> Callable[[OrderBook, list[MarketEvent]], tuple[tuple[StreamAppend, ...], Placed[P]]]:
        def finish(
            book: OrderBook, events: list[MarketEvent]
        ) -> tuple[tuple[StreamAppend, ...], Placed[P]]:
            assert book.market is not None
            now = self._processes.now()
            created = [
                trade_model.created_from(e, book.market, now)
                for e in events
                if isinstance(e, TradeMatched)
            ]
            response = self._replies.placed(_found(book, order.order_id), book.market, created, now)
            record = recorded_reply(
                streams.request(key), principal_id, request, self._replies.place.encode(response)
            )
            appends = (
                *(StreamAppend(streams.trade(c.trade_id), 0, (codec.encode(c),)) for c in created),
                record,
            )
            return appends, Placed(response, created)

        return finish

    async def release(self, release: ReleasePoints | ReleaseBuy, *, after: int = 0) -> int:
        """Release what an order held on its account (see TradeProcesses.release)."""
        return await self._processes.release(release, after=after)

    # --- CancelOrder --------------------------------------------------------------------

    async def cancel_order(
        self, principal: Principal, request: Request, market_id: str, order_id: str
    ) -> C:
        """Cancel a resting order once per request id; release what its account held."""
        key = request_key(principal, request.request_id)
        replayed = await self._replayed(key, request.digest, self._replies.cancel)
        if replayed is not None:
            return replayed
        return await self._once(key, self._cancel(principal, request, market_id, order_id))

    async def _cancel(
        self, principal: Principal, request: Request, market_id: str, order_id: str
    ) -> C:
        key = request_key(principal, request.request_id)
        market = self._markets.serving(market_id)
        order = await market.tell(Inspect(lambda book: book.find(order_id)))
        if order is None:
            raise errors.NotFound(errors.ORDER_NOT_FOUND, "no such order", order_id=order_id)
        account = await self._accounts.read(order.account_id)
        assert account is not None, order
        if not principal.caller.may_act_for(account.owner_partner_id):
            raise errors.PermissionDenied(
                errors.NOT_OWNER, "the order belongs to another partner", order_id=order.order_id
            )

        def finish(
            book: OrderBook, events: list[MarketEvent]
        ) -> tuple[tuple[StreamAppend, ...], tuple[C, int]]:
            assert book.market is not None
            cancelled = events[0]
            assert isinstance(cancelled, OrderCancelled)
            points = cancelled.cancelled_quantity_points
            response = self._replies.cancelled(
                _found(book, order.order_id),
                book.market,
                self._processes.now(),
                cancelled_points=points,
                released_points=points if order.side is OrderSide.SELL else 0,
            )
            record = recorded_reply(
                streams.request(key),
                principal.principal_id,
                request,
                self._replies.cancel.encode(response),
            )
            return (record,), (response, points)

        try:
            decided = await market.tell(Decide(CancelOrder(market_id, order_id), finish))
        except CommitOutcomeUnknown:
            self._runner.spawn(self._release_if_cancelled(key, request, order), key=key)
            raise
        response, points = decided.value
        cancelled = placement.cancelled(order.order_id, order.account_id, order.side, points)
        step = placement.decide(cancelled, _RESUMED)
        assert isinstance(step, placement.Release), step
        position = await self.release(step.command, after=decided.position)
        return self._replies.cancel.at(response, position)

    async def _release_if_cancelled(self, key: str, request: Request, order: BookOrder) -> None:
        """Release a cancelled order's open quantity if its cancellation committed after all.

        The cancellation's commit had an unknown outcome: its record tells once the store
        answers. The client's retry is answered from the record, and refused meanwhile.
        """
        response = await retry_until_done(
            lambda: replay_record(
                self._store, streams.request(key), request.digest, self._replies.cancel
            ),
            retry_on=(StoreError,),
            what=f"the outcome of the cancellation of {order.order_id}",
        )
        if response is None:
            return
        points = self._replies.cancelled_points(response)
        cancelled = placement.cancelled(order.order_id, order.account_id, order.side, points)
        step = placement.decide(cancelled, _RESUMED)
        assert isinstance(step, placement.Release), step
        await self.release(step.command)

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

    async def _once(self, key: str, work: Coroutine[Any, Any, R]) -> R:
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
