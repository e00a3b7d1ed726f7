"""Trade processes: request the payment, settle on confirmation, cancel on failure or deadline.

A trade's stream (`trade-<id>`) is its process record and has no actor: each step reads the
trade (a handful of events), decides with the pure state machine of
domain/processes/trade.py, and commits its trade events at the stream's expected version in
one unit with the account or market step that goes with them. Two drivers racing on one
trade (a callback and the deadline, a callback and its redelivery) therefore cannot both
win: the loser meets a version conflict on the trade stream, reads the trade again and
decides afresh.

  settle:  PaymentConfirmed + seller's PointsSold, then TradeSettled + buyer's PointsBought
  cancel:  [PaymentFailed +] TradeCancelled + OrderQuantityReturned (market) when the SELL
           order still rests, else + seller's PointsReleased; then buyer's BuyReleased

Each step that moves points is taken on one entity (`TradeStep`: the seller's or buyer's
account, or the market). With the slice ranges split across command servers, a trade is
driven by the owner of its market (payment callbacks and refunds are placed there), and a
step on another server's account is taken by that account's owner (`TradePeers`): it reads
the trade's record, checks the version the driver decided on, and builds the step's command
from the record (`take_for_peer`). A release goes to the account's owner the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pointex.server import limits
from pointex.server.actors.market_actor import MarketActors
from pointex.server.actors.runtime import AccountActors
from pointex.server.actors.stream_actor import Decide, Decided, Finish, StreamActor, appending
from pointex.server.command.app.idempotency import step_record
from pointex.server.command.app.owners import ALL_HERE, Owners
from pointex.server.command.app.runner import (
    ProcessRunner,
    pause_after_conflict,
    retry_until_done,
)
from pointex.server.domain import errors, streams
from pointex.server.domain import trade as trade_model
from pointex.server.domain.commands import (
    BuyPoints,
    ReleaseBuy,
    ReleasePoints,
    RestoreBought,
    ReturnBought,
    ReturnSold,
    SellPoints,
)
from pointex.server.domain.market_commands import ReturnTradeQuantity
from pointex.server.domain.market_events import (
    PaymentConfirmed,
    TradeCreated,
    TradeEvent,
)
from pointex.server.domain.processes import trade as process
from pointex.server.domain.trade import Trade, TradeStatus
from pointex.server.domain.values import Caller, Instant
from pointex.server.elsewhere import Elsewhere
from pointex.server.eventstore import codec
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import (
    CommitOutcomeUnknown,
    EventStore,
    StoreError,
    StoreUnavailable,
    StreamAppend,
    WrongExpectedVersion,
)
from pointex.server.overload import Overloaded
from pointex.server.payments.port import (
    PaymentProvider,
    PaymentRequest,
    PaymentRequestRefused,
    ProviderUnavailable,
    RefundRefused,
    RefundRequest,
)

log = logging.getLogger(__name__)

Clock = Callable[[], int]  # the server's time, in Unix milliseconds


@dataclass(frozen=True, slots=True)
class Loaded:
    """A trade as read from its stream, and the position of its latest event."""

    trade: Trade
    position: int


class StepKind(enum.Enum):
    """A trade's step on one entity (peer.proto's TradeStepKind)."""

    COLLECT_FROM_SELLER = "COLLECT_FROM_SELLER"  # PaymentConfirmed + seller's PointsSold
    DELIVER_TO_BUYER = "DELIVER_TO_BUYER"  # buyer's PointsBought + TradeSettled
    RETURN_TO_ORDER = "RETURN_TO_ORDER"  # TradeCancelled + the market's OrderQuantityReturned
    RELEASE_TO_SELLER = "RELEASE_TO_SELLER"  # TradeCancelled + seller's PointsReleased
    TAKE_BACK_FROM_BUYER = "TAKE_BACK_FROM_BUYER"  # RefundRequested + buyer's PurchaseReturned
    RETURN_TO_SELLER = "RETURN_TO_SELLER"  # TradeRefunded + seller's SaleReturned
    RESTORE_TO_BUYER = "RESTORE_TO_BUYER"  # RefundDeclined + buyer's PurchaseRestored


@dataclass(frozen=True, slots=True)
class TradeStep:
    """A step of a trade on one entity, with the trade events it records."""

    kind: StepKind
    events: tuple[TradeEvent, ...]
    caller: Caller | None = None  # Who asked for the refund (TAKE_BACK_FROM_BUYER).


@dataclass(frozen=True, slots=True)
class Taken:
    """A step taken: the position of its last event; `moved`: it committed anything.

    A RETURN_TO_ORDER whose SELL order no longer rests commits nothing (the quantity goes to
    the seller instead).
    """

    position: int
    moved: bool = True


class TradePeers(Protocol):
    """Asks the owner of another server's account or market to take a trade's step there."""

    async def trade_step(
        self, stream_id: str, trade: Trade, step: TradeStep, record: tuple[StreamAppend, ...]
    ) -> Taken:
        """Have the owner of `stream_id` take `step` of `trade` (at its version), with `record`.

        Raises TradeConflict when the trade changed first, WrongExpectedVersion on another
        stream that did, the account's refusal (a DomainError), Overloaded, CommitOutcomeUnknown,
        or StoreUnavailable when no owner answers (the step may have been taken all the same).
        """
        ...

    async def release(self, release: ReleasePoints | ReleaseBuy) -> int:
        """Have the owner of the release's account make it, once; return its position (0: made)."""
        ...


def _entity_of(trade: Trade, step: TradeStep) -> tuple[str, object, bool]:
    """Return the stream that takes `step`, its command, and whether the trade's events go first.

    The command is built from the trade's record alone (and the refund's caller), so the
    owner of another server's account builds the same one from the same record.
    """
    created = trade.created
    trade_id, quantity, lots = trade.trade_id, created.quantity_points, trade.delivered_lots
    seller, buyer = created.seller_account_id, created.buyer_account_id
    command: object
    match step.kind:
        case StepKind.COLLECT_FROM_SELLER:
            command = SellPoints(seller, trade_id, created.sell_order_id, quantity)
        case StepKind.DELIVER_TO_BUYER:
            command = BuyPoints(buyer, trade_id, created.buy_order_id, quantity, lots)
            return streams.account(buyer), command, False
        case StepKind.RETURN_TO_ORDER:
            command = ReturnTradeQuantity(
                created.market_id, trade_id, created.sell_order_id, quantity
            )
            return streams.market(created.market_id), command, True
        case StepKind.RELEASE_TO_SELLER:
            command = ReleasePoints(seller, created.sell_order_id, trade_id, quantity)
        case StepKind.TAKE_BACK_FROM_BUYER:
            assert step.caller is not None, step
            return streams.account(buyer), ReturnBought(step.caller, buyer, trade_id), True
        case StepKind.RETURN_TO_SELLER:
            command = ReturnSold(seller, trade_id, quantity, lots)
        case StepKind.RESTORE_TO_BUYER:
            return streams.account(buyer), RestoreBought(buyer, trade_id, quantity, lots), True
    return streams.account(seller), command, True


_STEP_CATEGORIES = frozenset({streams.ACCOUNT, streams.MARKET})
# The steps that move points, and have a step after them (or end the trade).
_MOVING_POINTS = (
    process.CollectFromSeller,
    process.DeliverToBuyer,
    process.Cancel,
    process.TakeBackFromBuyer,
    process.ReturnToSeller,
    process.RestoreToBuyer,
)


def release_record(release: ReleasePoints | ReleaseBuy) -> StreamAppend:
    """Return the record committed with a release made alone on its account (once per key).

    An order is released once on its own (no trade id: what it no longer needs), and a
    trade's buyer once (the trade id): the order and trade ids key the record.
    """
    return step_record("release", type(release).__name__, release.order_id, release.trade_id)


class TradeConflict(Exception):
    """Another driver changed the trade between reading and committing: read it again."""


@contextlib.contextmanager
def _raced_on(trade: Trade) -> Iterator[None]:
    """Turn a race with another driver of the trade into a TradeConflict (decide again).

    The race shows as a version conflict on the trade's own stream; or, when the other
    driver's step already moved the points this one would move, as the account's refusal
    of a step no longer possible (domain/account.py, `_require_still_held`); or as a
    conflict on the account or market stream of the step, when a unit the actor had
    queued after the loser's failed with it (the actor reloads). Deciding again on the
    trade as it now is answers all three. A conflict on a request record is the caller's.
    """
    try:
        yield
    except WrongExpectedVersion as conflict:
        category = conflict.stream_id.partition("-")[0]
        if conflict.stream_id == streams.trade(trade.trade_id) or category in _STEP_CATEGORIES:
            raise TradeConflict(trade.trade_id) from conflict
        raise
    except errors.Aborted as refusal:
        # Or the account cannot decide the step until one still committing has: a release
        # beside a racing driver's sale (domain/account_market.py, `release`).
        busy = refusal.reason == errors.CONCURRENT_MODIFICATION
        if busy or refusal.metadata.get("trade_id") == trade.trade_id:
            raise TradeConflict(trade.trade_id) from refusal
        raise


class TradeProcesses:
    """Drive every trade of one command server from match to SETTLED or CANCELLED."""

    def __init__(
        self,
        *,
        store: EventStore,
        committer: GroupCommitter,
        accounts: AccountActors,
        markets: MarketActors,
        providers: dict[str, PaymentProvider],
        clock: Clock,
        runner: ProcessRunner,
        owners: Owners = ALL_HERE,
        peers: TradePeers | None = None,
    ) -> None:
        """Drive trades over these stores, actors and payment providers, steps in `runner`.

        `owners` tells which accounts and markets are here; `peers` asks the owners of the
        others (with the slice ranges split across servers).
        """
        self._owners = owners
        self._peers = peers
        self._store = store
        self._runner = runner
        self._committer = committer
        self._accounts = accounts
        self._markets = markets
        self._providers = providers
        self._clock = clock
        # A heap of (deadline ms, trade id), compacted in watch_deadline (see its bound).
        self._deadlines: list[tuple[int, str]] = []
        # Trades not known to have ended. At most about trades_open_max (orders are shed past
        # it); a trade leaves when this process ends it.
        self._open: set[str] = set()
        self._deadline_added = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None

    @property
    def open_count(self) -> int:
        """Return the trades this server drives that have not ended (for metrics)."""
        return len(self._open)

    @property
    def deadlines_watched(self) -> int:
        """Return the payment deadlines waiting in the timer (for metrics)."""
        return len(self._deadlines)

    def now(self) -> Instant:
        """Return the server's time."""
        return Instant(self._clock())

    async def load(self, trade_id: str) -> Loaded | None:
        """Return the trade rebuilt from its stream, or None if there is no such trade."""
        recorded = await self._store.read_stream(streams.trade(trade_id), 1, 64)
        if not recorded:
            return None
        trade: Trade | None = None
        for event in recorded:
            trade = trade_model.evolve(trade, codec.decode(event))
        assert trade is not None
        return Loaded(trade, recorded[-1].position)

    def _append(self, trade: Trade, events: Sequence[TradeEvent]) -> StreamAppend:
        return StreamAppend(
            streams.trade(trade.trade_id), trade.version, tuple(codec.encode(e) for e in events)
        )

    async def _commit_via(
        self,
        actor: StreamActor[Any],
        command: object,
        extra: tuple[StreamAppend, ...] | Finish[Any, None],
        trade: Trade,
        *,
        trade_first: bool,
    ) -> Decided[None]:
        """Commit `command` on an actor with the trade's appends; a trade race is a conflict.

        `trade_first` puts the trade's events before the actor's in the log, as the process's
        order has it (PaymentConfirmed before PointsSold, TradeCancelled before the return).
        """
        with_extra = extra if callable(extra) else appending(*extra)
        finish: Decide[Any, None] = Decide(command, with_extra, extra_first=trade_first)
        try:
            with _raced_on(trade):
                return await actor.tell(finish)
        except TradeConflict:
            # The other driver's step may still be committing: read the trade after it.
            await actor.settled()
            raise

    async def commit_trade_only(
        self, trade: Trade, events: Sequence[TradeEvent], *more: StreamAppend
    ) -> int:
        """Commit trade events that move no points; return the last position."""
        with _raced_on(trade):
            recorded = await self._committer.submit((self._append(trade, events), *more))
        return recorded[-1].position

    # --- Deciding and carrying out steps ----------------------------------------------------

    async def advance(self, trade_id: str, happened: process.Happened) -> int | None:
        """Decide the trade's next step after `happened` and carry it out; decide again on a race.

        Returns the position of the last event written (or of the trade's latest event when
        nothing was due), None when there is no such trade. Raises TradeConflict when the
        trade kept changing under it.
        """
        for attempt in range(limits.trade_step_attempts_max):
            loaded = await self.load(trade_id)
            if loaded is None:
                return None
            step = process.decide(loaded.trade, happened, self.now())
            if isinstance(step, process.RequestPayment):
                happened = await self._ask_provider(loaded.trade)
                continue
            if isinstance(step, process.RequestRefund):
                happened = await self._ask_refund(loaded.trade)
                continue
            try:
                return await self.execute(loaded, step)
            except TradeConflict:
                await pause_after_conflict(attempt)
        raise TradeConflict(trade_id)

    async def execute(
        self, loaded: Loaded, step: process.Step, record: tuple[StreamAppend, ...] = ()
    ) -> int:
        """Carry out one decided step, committing `record` in its unit; return the last position.

        Raises TradeConflict if another driver changed the trade first. When the outcome of
        a step that moves points is unknown, the trade is driven on once the store answers:
        the step may have committed, and what follows it (a delivery, a buyer's release) has
        no driver left (a callback's redelivery is answered from its record).
        """
        try:
            return await self._execute(loaded, step, record)
        except CommitOutcomeUnknown:
            if isinstance(step, _MOVING_POINTS):
                self._drive_later(loaded.trade.trade_id)
            raise

    async def _execute(
        self, loaded: Loaded, step: process.Step, record: tuple[StreamAppend, ...]
    ) -> int:
        trade = loaded.trade
        work: Awaitable[int]
        match step:
            case process.CollectFromSeller():
                work = self._collect(trade, step.confirmed, record)
            case process.DeliverToBuyer():
                delivery = TradeStep(StepKind.DELIVER_TO_BUYER, (step.settled,))
                work = self._deliver(trade, delivery, record)
            case process.Cancel():
                work = self._cancel(trade, step.events, record)
            case process.RecordEvents():
                work = self.commit_trade_only(trade, step.events, *record)
            case process.TakeBackFromBuyer():
                work = self._take_back(trade, step, record)
            case process.ReturnToSeller() | process.RestoreToBuyer():
                work = self._give_back(trade, step, record)
            case process.Acknowledge() | process.Nothing():
                work = self._acknowledge(loaded, step, record)
            case _:
                raise AssertionError(f"{step} is not carried out here")
        return await work

    async def _acknowledge(
        self,
        loaded: Loaded,
        step: process.Acknowledge | process.Nothing,
        record: tuple[StreamAppend, ...],
    ) -> int:
        """Change nothing; commit `record` (a callback's), and resume delivery if it is due."""
        if isinstance(step, process.Acknowledge) and step.resume:
            self.in_background(self.advance(loaded.trade.trade_id, process.Resumed()))
        if not record:
            return loaded.position
        recorded = await self._committer.submit(record)
        return recorded[-1].position

    async def _take(self, trade: Trade, step: TradeStep, record: tuple[StreamAppend, ...]) -> Taken:
        """Take `step` here if its entity is here, else have its owner take it."""
        stream_id, _, _ = _entity_of(trade, step)
        if self._owners.owns(stream_id):
            with contextlib.suppress(Elsewhere):  # Its range moved just now: ask its new owner.
                return await self.take_here(trade, step, record)
        assert self._peers is not None, f"{stream_id} is elsewhere but no peer is known"
        try:
            with _raced_on(trade):
                return await self._peers.trade_step(stream_id, trade, step, record)
        except CommitOutcomeUnknown:
            raise
        except StoreUnavailable as unanswered:
            # Asked and not answered, it may have been taken there: found out as a commit's
            # unknown outcome is (`execute` drives the trade on once the owner answers).
            raise CommitOutcomeUnknown(f"{step.kind.value} of {trade.trade_id}") from unanswered

    async def take_here(
        self, trade: Trade, step: TradeStep, record: tuple[StreamAppend, ...]
    ) -> Taken:
        """Take `step` on its entity's actor here, with the trade's events and `record`."""
        stream_id, command, trade_first = _entity_of(trade, step)
        actor: StreamActor[Any]
        if step.kind is StepKind.RETURN_TO_ORDER:
            actor = self._markets.actor(trade.created.market_id)
        else:
            account_id = streams.entity_of(stream_id, streams.ACCOUNT)
            assert account_id is not None, stream_id
            actor = self._accounts.actor(account_id)
        extra: tuple[StreamAppend, ...] | Finish[Any, None] = (
            self._append(trade, step.events),
            *record,
        )
        if step.kind is StepKind.COLLECT_FROM_SELLER:
            (confirmed,) = step.events
            assert isinstance(confirmed, PaymentConfirmed), step

            def delivered(
                _state: object, events: list[Any]
            ) -> tuple[tuple[StreamAppend, ...], None]:
                # The confirmation states the lots the sale took: the buyer's credit gets them.
                (sold,) = events
                with_lots = replace(confirmed, lots=sold.lots) if sold.lots else confirmed
                return (self._append(trade, [with_lots]), *record), None

            extra = delivered
        decided = await self._commit_via(actor, command, extra, trade, trade_first=trade_first)
        return Taken(decided.position, bool(decided.recorded))

    async def take_for_peer(
        self, trade_id: str, version: int, step: TradeStep, record: tuple[StreamAppend, ...]
    ) -> Taken:
        """Take a step another server's driver decided on the trade at `version`, here.

        Raises TradeConflict when the trade is no longer at that version (the driver decides
        again), Elsewhere when the step's entity is not here now.
        """
        loaded = await self.load(trade_id)
        if loaded is None or loaded.trade.version != version:
            raise TradeConflict(trade_id)
        stream_id, _, _ = _entity_of(loaded.trade, step)
        if not self._owners.owns(stream_id):
            raise Elsewhere(stream_id)
        return await self.take_here(loaded.trade, step, record)

    def require_driver(self, trade: Trade) -> None:
        """Raise Elsewhere unless this server owns the trade's market, which drives it."""
        market = streams.market(trade.created.market_id)
        if not self._owners.owns(market):
            raise Elsewhere(market)

    async def _collect(
        self, trade: Trade, confirmed: PaymentConfirmed, record: tuple[StreamAppend, ...]
    ) -> int:
        """Record the confirmation with the seller's delivery, then credit the buyer."""
        step = TradeStep(StepKind.COLLECT_FROM_SELLER, (confirmed,))
        taken = await self._take(trade, step, record)
        try:
            delivered_at = await self.advance(trade.trade_id, process.Resumed())
        except (StoreError, Overloaded, errors.DomainError, TradeConflict) as error:
            log.warning("settlement of %s continues later: %s", trade.trade_id, error)
            self.in_background(self._deliver_later(trade.trade_id))
            return taken.position
        assert delivered_at is not None, trade.trade_id
        return delivered_at

    async def _deliver(
        self, trade: Trade, step: TradeStep, record: tuple[StreamAppend, ...]
    ) -> int:
        """Credit the buyer of a confirmed trade and record it settled."""
        taken = await self._take(trade, step, record)
        self._open.discard(trade.trade_id)
        return taken.position

    async def _take_back(
        self, trade: Trade, step: process.TakeBackFromBuyer, record: tuple[StreamAppend, ...]
    ) -> int:
        """Take the purchase's points from the buyer with the refund's request; drive it on."""
        taking = TradeStep(StepKind.TAKE_BACK_FROM_BUYER, (step.requested,), step.caller)
        taken = await self._take(trade, taking, record)
        self._open.add(trade.trade_id)  # Open until the provider answers (recovery too).
        return taken.position

    async def _give_back(
        self,
        trade: Trade,
        step: process.ReturnToSeller | process.RestoreToBuyer,
        record: tuple[StreamAppend, ...],
    ) -> int:
        """End a refund: the points to the seller (refunded) or back to the buyer (declined)."""
        if isinstance(step, process.ReturnToSeller):
            giving = TradeStep(StepKind.RETURN_TO_SELLER, (step.refunded,))
        else:
            giving = TradeStep(StepKind.RESTORE_TO_BUYER, (step.declined,))
        taken = await self._take(trade, giving, record)
        self._open.discard(trade.trade_id)
        return taken.position

    async def _ask_refund(self, trade: Trade) -> process.RefundMade | process.RefundRefused:
        """Ask the market's provider to refund the trade (ProviderUnavailable: retry)."""
        refund, payment = trade.refund, trade.payment
        assert refund is not None, trade
        assert payment is not None, trade  # A settled trade's payment was requested.
        provider = self._providers.get(payment.provider_id)
        if provider is None:
            log.warning("no provider %r to refund %s", payment.provider_id, trade.trade_id)
            return process.RefundRefused("UNKNOWN_PROVIDER")
        request = RefundRequest(
            refund.refund_id,
            trade.trade_id,
            payment.provider_id,
            payment.payment_id,
            refund.amount.amount_minor,
            refund.amount.currency,
        )
        timeout_s = limits.provider_request_timeout_ms_max / 1000
        try:
            done = await provider.refund_payment(request, timeout_s=timeout_s)
        except RefundRefused as refused:
            log.warning("provider refused the refund of %s: %s", trade.trade_id, refused)
            return process.RefundRefused(refused.reason)
        return process.RefundMade(done.provider_refund_id)

    def refund_later(self, trade_id: str) -> None:
        """Drive a refund on until it ends: the provider, or the seller's account, answers later.

        A seller's account closed meanwhile refuses the points (ACCOUNT_CLOSED): they stay in
        flight, visible to CheckInvariants, as a closed buyer's do in a settlement.
        """
        self._open.add(trade_id)
        retried = (ProviderUnavailable, StoreError, Overloaded, errors.DomainError, TradeConflict)
        self.in_background(
            retry_until_done(
                lambda: self.advance(trade_id, process.Resumed()),
                retry_on=retried,
                what=f"refund of trade {trade_id}",
            )
        )

    async def _deliver_later(self, trade_id: str) -> None:
        # A closed buyer account refuses the credit (ACCOUNT_CLOSED): the points stay in
        # flight, visible to CheckInvariants, until an operator reopens the case.
        await retry_until_done(
            lambda: self.advance(trade_id, process.Resumed()),
            retry_on=(StoreError, Overloaded, errors.DomainError, TradeConflict),
            what=f"settlement of trade {trade_id}",
        )

    async def _cancel(
        self, trade: Trade, events: Sequence[TradeEvent], record: tuple[StreamAppend, ...]
    ) -> int:
        """End a pending trade with `events`, returning its quantity; return the last position.

        The quantity goes back to the SELL order if it still rests, else to the seller; then
        the buyer's account stops counting it as being bought.
        """
        assert trade.status is TradeStatus.PENDING_PAYMENT, trade
        taken = await self._take(trade, TradeStep(StepKind.RETURN_TO_ORDER, tuple(events)), record)
        if not taken.moved:
            # The SELL order no longer rests (and never will again): the seller gets the points.
            releasing = TradeStep(StepKind.RELEASE_TO_SELLER, tuple(events))
            taken = await self._take(trade, releasing, record)
        self._open.discard(trade.trade_id)
        return await self.release(process.buyer_release(trade.created), after=taken.position)

    async def release(self, release: ReleasePoints | ReleaseBuy, *, after: int = 0) -> int:
        """Release what an order or trade held on an account, once; return its position.

        The step before it is committed, so the release must happen: if it fails for an
        operating reason it is retried in the background, and `after` (the position of the
        step before) is returned instead: the release follows, or recovery finishes it. It
        commits with its record (`release_record`), so a release sent again (after an
        unknown outcome, or by whatever drives the step again) changes nothing.
        """
        try:
            position = await self._release_once(release)
        except (StoreError, Overloaded, errors.Aborted) as error:
            log.warning("release for %s continues later: %s", release.order_id, error)
            self._runner.spawn(self._release_later(release))
            return after
        return position or after

    async def _release_once(self, release: ReleasePoints | ReleaseBuy) -> int:
        """Commit a release with its record, here or by its account's owner; return its position.

        Returns 0 when its record shows it was made already.
        """
        if self._owners.here(release.account_id):
            with contextlib.suppress(Elsewhere):  # Its range moved just now: ask its new owner.
                return await self.release_here(release)
        assert self._peers is not None, f"{release.account_id} is elsewhere but no peer is known"
        return await self._peers.release(release)

    async def release_here(self, release: ReleasePoints | ReleaseBuy) -> int:
        """Commit a release on an account here, once; return its position (0: made already)."""
        record = release_record(release)
        try:
            decided: Decided[None] = await self._accounts.ask(
                release.account_id, Decide(release, appending(record))
            )
        except WrongExpectedVersion as conflict:
            if conflict.stream_id != record.stream_id:
                raise
            return 0
        return decided.position

    async def _release_later(self, release: ReleasePoints | ReleaseBuy) -> None:
        record = release_record(release).stream_id

        async def release_unless_made() -> int:
            # A release whose commit had an unknown outcome may have been made: then the
            # account may refuse it again (its held points are gone), and its record tells.
            if await self._store.read_stream(record, 1, 1):
                return 0
            return await self._release_once(release)

        await retry_until_done(
            release_unless_made,
            retry_on=(StoreError, Overloaded, errors.Aborted),
            what=f"release for order {release.order_id}",
        )

    # --- Payment requests and deadlines -------------------------------------------------

    def start(self, created: TradeCreated) -> None:
        """Drive a new (or recovered) trade: watch its deadline and do what is due now.

        For a pending trade that is asking for its payment; for a confirmed one, delivering.
        A trade this server drives already is left to its driver.
        """
        if created.trade_id in self._open:
            return
        self.track(created)
        self.watch_deadline(created.trade_id, created.payment_deadline)
        self.in_background(self._resume(created.trade_id))

    async def drive(self, trade_id: str, among: Callable[[str], bool] | None = None) -> None:
        """Make sure what is due for a trade happens (nothing, if this server drives it).

        For a trade found after a commit whose answer was lost (its placement's, or one of
        its own steps'): a pending or confirmed trade is started; a cancelled one has its
        buyer released (once: the release is recorded); a settled one needs nothing. With
        `among`, only a trade of the markets it names (recovery of some slice ranges).
        """
        if trade_id in self._open:
            return
        loaded = await self.load(trade_id)
        if loaded is None:
            return
        trade = loaded.trade
        if among is not None and not among(trade.created.market_id):
            return  # Another server's market: it drives the trade.
        if trade.status is TradeStatus.CANCELLED:
            await self.release(process.buyer_release(trade.created))
        elif trade.status is not TradeStatus.SETTLED and trade.status is not TradeStatus.REFUNDED:
            self.start(trade.created)

    def _drive_later(self, trade_id: str) -> None:
        """Drive a trade once the store answers (a step's commit had an unknown outcome)."""
        self._open.discard(trade_id)  # Ended, or started again by `drive`.
        self._runner.spawn(
            retry_until_done(
                lambda: self.drive(trade_id),
                retry_on=(StoreError, Overloaded),
                what=f"the outcome of a step of trade {trade_id}",
            )
        )

    def track(self, created: TradeCreated) -> None:
        """Remember a trade's parties until it ends (the open trades' bound and deadlines)."""
        self._open.add(created.trade_id)

    async def _resume(self, trade_id: str) -> None:
        """Do what is due now, retried while the provider or the store is unavailable."""
        await retry_until_done(
            lambda: self.advance(trade_id, process.Resumed()),
            retry_on=(ProviderUnavailable, StoreError, Overloaded, TradeConflict),
            what=f"trade {trade_id}",
            pause_first=False,
        )

    async def _ask_provider(self, trade: Trade) -> process.PaymentCreated | process.PaymentRefused:
        """Ask the market's provider for the trade's payment (ProviderUnavailable: retry)."""
        created = trade.created
        market = self._markets.configured.get(created.market_id)
        provider_id = market.provider_id if market is not None else ""
        provider = self._providers.get(provider_id)
        if provider is None:
            log.warning("no provider %r for the payment of %s", provider_id, trade.trade_id)
            return process.PaymentRefused("UNKNOWN_PROVIDER")
        request = PaymentRequest(
            trade.trade_id,
            provider_id,
            created.amount_due_minor,
            created.currency,
            created.payment_deadline.unix_ms // 1000,
            created.buyer_account_id,
        )
        # The provider's own request_timeout_ms bounds the call; this is only its ceiling.
        timeout_s = limits.provider_request_timeout_ms_max / 1000
        try:
            payment = await provider.create_payment(request, timeout_s=timeout_s)
        except PaymentRequestRefused as refused:
            log.warning("provider refused the payment of %s: %s", trade.trade_id, refused)
            return process.PaymentRefused(str(refused))
        return process.PaymentCreated(provider_id, payment.payment_id, payment.checkout_url)

    def require_room(self) -> None:
        """Raise Overloaded when this server drives as many open trades as it may."""
        if len(self._open) >= limits.trades_open_max:
            raise Overloaded(
                "OVERLOADED",
                "too many trades await payment; retry later",
                limits.overload_retry_after_ms,
            )

    def watch_deadline(self, trade_id: str, deadline: Instant) -> None:
        """Cancel the trade at `deadline` if it is still pending then."""
        entries_max = max(
            limits.trades_open_max,
            limits.trade_deadlines_per_open_trade_max * len(self._open),
        )
        if len(self._deadlines) >= entries_max:
            # Ended trades' entries wait for their deadlines: drop them now.
            self._deadlines = [entry for entry in self._deadlines if entry[1] in self._open]
            heapq.heapify(self._deadlines)
        heapq.heappush(self._deadlines, (deadline.unix_ms, trade_id))
        self._deadline_added.set()
        if self._timer is None:
            self._timer = asyncio.create_task(self._run_deadlines(), name="trade-deadlines")

    async def _run_deadlines(self) -> None:
        while True:
            now_ms = self._clock()
            while self._deadlines and self._deadlines[0][0] <= now_ms:
                _, trade_id = heapq.heappop(self._deadlines)
                self.in_background(self._at_deadline(trade_id))
            wait_ms = self._deadlines[0][0] - now_ms if self._deadlines else None
            self._deadline_added.clear()
            # Sleep until the next deadline, waking early when an earlier one is added; never
            # longer than a second, so a clock that jumps is noticed soon.
            timeout_s = min(wait_ms, 1000) / 1000 if wait_ms is not None else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deadline_added.wait(), timeout_s)

    async def _at_deadline(self, trade_id: str) -> None:
        """Cancel a trade whose deadline passed; retry operating failures (it fires once)."""
        await retry_until_done(
            lambda: self.advance(trade_id, process.DeadlineReached()),
            retry_on=(StoreError, Overloaded, TradeConflict),
            what=f"the deadline of trade {trade_id}",
            pause_first=False,
        )

    def in_background(self, work: Awaitable[object]) -> None:
        """Run a process step detached from any caller (see ProcessRunner.detach)."""
        self._runner.detach(work, expected=(TradeConflict,))

    def stop_deadlines(self) -> None:
        """Stop the deadline timer; a trade left pending stays open and recovery resumes it."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None

    async def close(self) -> None:
        """Close the payment providers (once no process step runs any more)."""
        for provider in self._providers.values():
            await provider.close()
