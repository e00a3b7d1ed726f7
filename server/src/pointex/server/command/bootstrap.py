"""Composition root of the command server: config in, running server out.

`create_server` is what `main()` and the tests call (tests with port 0). Nothing is
wired at import time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc

from pointex.cluster.v1 import peer_pb2_grpc
from pointex.server.actors.account_actor import Clock
from pointex.server.actors.market_actor import MarketActors
from pointex.server.actors.program_actor import ProgramActor
from pointex.server.actors.runtime import AccountActors, wall_clock_ms
from pointex.server.command.app.activations import PendingActivations
from pointex.server.command.app.expiry import LotExpiry
from pointex.server.command.app.handlers import CommandHandlers
from pointex.server.command.app.handover import RangeHandover, accounts_in, markets_in
from pointex.server.command.app.market_handlers import MarketHandlers
from pointex.server.command.app.market_recovery import OpenPlacements, OpenTrades
from pointex.server.command.app.owners import ALL_HERE, Owners, RangeOwners
from pointex.server.command.app.ownership import SliceOwnership, lease_reader
from pointex.server.command.app.payment_callbacks import PaymentCallbacks
from pointex.server.command.app.record_lookup import RecordLookup
from pointex.server.command.app.recovery import (
    CHECKPOINT,
    PROCESS_KINDS,
    OpenSteps,
    checkpoint_of,
    recover,
)
from pointex.server.command.app.refunds import PurchaseRefunds
from pointex.server.command.app.runner import ProcessRunner
from pointex.server.command.app.trade_processes import TradeProcesses
from pointex.server.command.edge.callbacks import CallbackEdge
from pointex.server.command.edge.command_servicer import CommandServicer
from pointex.server.command.edge.feed_servicer import EventFeedServicer
from pointex.server.command.edge.market_peers import MarketPeers, MarketPeerSteps
from pointex.server.command.edge.market_replies import MARKET_REPLIES, ProtoMarketHandlers
from pointex.server.command.edge.peer_servicer import PeerServicer
from pointex.server.config import CommandConfig
from pointex.server.eventstore.factory import open_store
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import EventStore
from pointex.server.eventstore.postgres.store import PostgresEventStore
from pointex.server.grpc_edge.auth import TokenTable
from pointex.server.grpc_edge.forwarding import Routing
from pointex.server.grpc_edge.peer import PeerClient
from pointex.server.grpc_edge.server import RunningServer, Service, start_server
from pointex.server.markets import load_markets
from pointex.server.observability.metrics import Metrics
from pointex.server.payments.providers import build_verifier, create_providers, load_providers
from pointex.server.process import EXIT_BUG, EXIT_FENCED, EXIT_STORE
from pointex.server.slices import SLICE_RANGES
from pointex.server.store_errors import StoreError
from pointex.v1 import (
    command_service_pb2,
    command_service_pb2_grpc,
    event_feed_pb2,
    event_feed_pb2_grpc,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CommandServer:
    """The running command server and what it owns."""

    running: RunningServer
    store: EventStore
    committer: GroupCommitter
    handlers: CommandHandlers
    market: ProtoMarketHandlers
    processes: TradeProcesses
    lookup: RecordLookup
    runner: ProcessRunner
    feed: EventFeedServicer
    activations: PendingActivations
    expiry: LotExpiry
    ownership: SliceOwnership | None = None  # None: the server runs alone, without leases.
    # With leases: taking the ranges and recovering them, while the server forwards calls.
    activation: asyncio.Task[None] | None = None
    halting: asyncio.Task[None] | None = None  # Stops the server when it must stop by itself.
    stopped_by_itself: int = 0  # Why it did (an exit code), 0 until then.
    peer: PeerClient | None = None  # With split ranges: asks the others for steps on theirs.

    @property
    def port(self) -> int:
        """Return the TCP port the server is bound to."""
        return self.running.port

    @property
    def exit_code(self) -> int:
        """Return why the server stopped by itself (EXIT_FENCED, EXIT_STORE), else 0."""
        return self.stopped_by_itself

    def halt_with(self, stop: asyncio.Event) -> None:
        """Set `stop` if the server cannot take its ranges, or once it lost them (fail-stop)."""
        if self.ownership is None:
            return
        lost, activation = self.ownership.lost, self.activation

        async def halt() -> None:
            if activation is not None:
                try:
                    await activation
                except StoreError as error:
                    log.error("the command server cannot take its slice ranges: %s", error)  # noqa: TRY400 - an operating error, no trace needed.
                    self.stopped_by_itself = EXIT_STORE
                    stop.set()
                    return
                except Exception:  # A bug: logged with its trace, and the server stops.
                    log.exception("the command server cannot take its slice ranges")
                    self.stopped_by_itself = EXIT_BUG
                    stop.set()
                    return
            await lost.wait()
            self.stopped_by_itself = EXIT_FENCED
            stop.set()

        self.halting = asyncio.create_task(halt(), name="halt-when-fenced")

    async def stop(self, grace_s: float) -> None:
        """Stop taking RPCs, let in-flight ones finish within `grace_s`, close the store."""
        await self.running.health.enter_graceful_shutdown()
        await self.stopping()
        await self.running.server.stop(grace_s)
        self.running.close_metrics()
        await self.close()

    async def stopping(self) -> None:
        """End the feed's subscriptions, which would otherwise hold the whole grace period.

        So are the streams a standby relays to the holder: their callers resume elsewhere.
        """
        self.feed.stop_streams()
        self.running.stop_forwarded_streams()

    async def close(self) -> None:
        """Finish processes under way, commit what is queued, save the checkpoint, close."""
        if self.activation is not None and not self.activation.done():
            self.activation.cancel()  # A standby stops waiting for the ranges.
            await asyncio.gather(self.activation, return_exceptions=True)
        await finish_processes(self.processes, (self.activations, self.expiry), self.runner)
        await self.lookup.stop()
        await self.committer.stop()
        if self.ownership is not None:
            await self.ownership.stop()  # After the last commit: a standby takes over now.
        await self.running.close_forwarding()
        if self.peer is not None:
            await self.peer.close()
        await self.store.close()


async def finish_processes(
    processes: TradeProcesses,
    timers: tuple[PendingActivations, LotExpiry],
    runner: ProcessRunner,
) -> None:
    """Stop the timers, let the steps under way end (within the runner's bound), close providers.

    The server's close and the tests' nodes (tests/market_node.py) stop their processes here.
    """
    processes.stop_deadlines()
    for timer in timers:
        timer.stop()
    await runner.stop()
    await processes.close()


@dataclass(slots=True)
class CommandCore:
    """The single writer, the actors, the retry look-up and the process runner of one store."""

    committer: GroupCommitter
    actors: AccountActors
    lookup: RecordLookup
    runner: ProcessRunner
    program: ProgramActor


def start_core(
    store: EventStore,
    *,
    resident_max: int,
    clock: Clock = wall_clock_ms,
    here: Callable[[str], bool] | None = None,
) -> CommandCore:
    """Start the group committer and the record look-up, and the actors over them.

    The server and the tests that run the command side without gRPC wire it here alike.
    Accounts decide at the time `clock` says (Unix milliseconds): the wall clock, unless a
    test runs the command side on a clock of its own (tests/simulation). `here` tells which
    accounts this server owns (None: every one; command/app/owners.py).
    """
    committer = GroupCommitter(store)
    committer.start()
    # Accounts decide under the program's limits; `ProgramActor.load` puts them in force.
    program = ProgramActor(store, committer)
    actors = AccountActors(
        store,
        committer,
        resident_max=resident_max,
        limits_in_force=program.limits,
        clock=clock,
        here=here,
    )
    # Reads of retries go in step with the commits (see record_lookup).
    lookup = RecordLookup(store, committer.between_commits)
    lookup.start()
    return CommandCore(committer, actors, lookup, ProcessRunner(), program)


def lot_expiry(core: CommandCore, clock: Clock) -> LotExpiry:
    """Return the expiry timer of `core`'s accounts, told of every account whose lots arrive."""
    expiry = LotExpiry(core.actors, core.runner, clock, lambda: core.program.limits().expiry.notice)
    core.actors.watch_lots(expiry.watch)
    return expiry


async def create_server(config: CommandConfig) -> CommandServer:
    """Open the event store (migrating it), then start gRPC with every command-side service.

    A server that holds the slice ranges by lease listens first, forwarding every call to
    the server that holds them, and serves calls itself once it took and recovered them all.
    """
    tokens = TokenTable.from_file(config.common.auth_tokens_file)
    store = open_store(
        config.store_url,
        allow_unsafe_durability=config.allow_unsafe_durability,
        # Paused inside an append, a server holds its ranges' lease rows: not past its lease.
        stalled_transaction_ms=config.slice_lease_ms or None,
    )
    await store.open()
    ownership, peer, owners = _ownership(config, store)
    core = start_core(
        store,
        resident_max=config.actors_resident_max,
        here=None if peer is None else owners.here,
    )
    committer, actors, lookup = core.committer, core.actors, core.lookup
    running: RunningServer | None = None
    activation: asyncio.Task[None] | None = None
    try:
        handlers = CommandHandlers(store, actors, lookup, core.runner, core.program, owners=owners)
        market, callbacks = await _market_side(config, store, core, owners, peer)
        activations = PendingActivations(actors, core.runner, wall_clock_ms)
        actors.watch_pending(activations.watch)
        expiry = lot_expiry(core, wall_clock_ms)
        feed = EventFeedServicer(store)
        refunds = PurchaseRefunds(market.processes, actors)
        commands = CommandServicer(
            handlers,
            market,
            callbacks,
            refunds,
            leases=lease_reader(store),
            owner_id=ownership.owner_id if ownership is not None else "",
        )
        services, peer_servicer = _services(
            feed, commands, handlers, market, split=peer is not None
        )
        metrics = _metrics(core)
        _process_metrics(metrics, core.runner, handlers, market)
        _side_metrics(metrics, (activations, expiry), peer, peer_servicer)
        prepare = functools.partial(
            _prepare,
            store,
            core,
            handlers,
            market,
            (activations, expiry),
            ranges=None if ownership is None else ownership.ranges,
            balanced=config.balanced,
        )
        if ownership is not None:
            _ownership_metrics(metrics, ownership)
            _with_other_servers(ownership, store, core, (handlers, market), (activations, expiry))
            # Listening first: until it holds and recovered every range, calls go elsewhere.
            routing = Routing(
                ownership.route,
                tuple(service.name for service in services),
                ownership.owner_id,
                owner_of=None if peer is None else ownership.find_owner_of,
            )
            running = listening = await start_server(
                config.common, services, tokens, metrics, routing
            )
            commands.forwarder = listening.forwarder
            ownership.advertise(config.advertise or _advertised(config.common.listen, listening))
            # NOT_SERVING until calls can go somewhere: here, or to the ranges' owner.
            await listening.set_serving(serving=False)
            ownership.watch_routable(lambda routable: listening.set_serving(serving=routable))
            # In the background: a standby listens (forwarding) while it waits for the ranges.
            activation = asyncio.create_task(
                _take_ranges_then_serve(ownership, prepare, balanced=config.balanced),
                name="take-slice-ranges",
            )
        else:
            await prepare()
            running = await start_server(config.common, services, tokens, metrics)
    except BaseException:
        if running is not None:
            await running.server.stop(None)
            await running.close_forwarding()
            running.close_metrics()
        await committer.stop()
        if ownership is not None:
            await ownership.stop()
        if peer is not None:
            await peer.close()
        await store.close()
        raise
    log.info(
        "command server listening",
        extra={"port": running.port, "store": _redacted(config.store_url)},
    )
    return CommandServer(
        running=running,
        store=store,
        committer=committer,
        handlers=handlers,
        market=market,
        processes=market.processes,
        lookup=lookup,
        runner=core.runner,
        feed=feed,
        activations=activations,
        expiry=expiry,
        ownership=ownership,
        activation=activation,
        peer=peer,
    )


async def _resume_open_processes(
    store: EventStore,
    handlers: CommandHandlers,
    market: ProtoMarketHandlers,
    timers: tuple[PendingActivations, LotExpiry],
    ranges: Sequence[int] | None = None,
) -> None:
    """Run the recovery scan over the log, before any command is taken.

    A server of part of the slice ranges (`ranges`) resumes what its ranges have open, under
    a checkpoint of its own: the placements of its accounts and the trades of its markets.
    """
    accounts = markets = None
    if ranges is not None:
        accounts, markets = accounts_in(ranges), markets_in(ranges)
    kinds: tuple[OpenSteps, ...] = (
        handlers.open_steps(),
        OpenPlacements(market, accounts),
        OpenTrades(market.processes, markets),
        timers[0].tracker(),
        timers[1].tracker(),
    )
    assert tuple(steps.kind for steps in kinds) == PROCESS_KINDS, kinds
    checkpoint = CHECKPOINT if ranges is None else checkpoint_of(ranges, SLICE_RANGES)
    found = await recover(store, kinds, checkpoint)
    if any(found.values()):
        log.info("resumed processes left open", extra={"open": found})


def _ownership(
    config: CommandConfig, store: EventStore
) -> tuple[SliceOwnership | None, PeerClient | None, Owners]:
    """Return the server's slice ownership (None: it runs alone), and where accounts live.

    With part of the ranges, the others' accounts are theirs, and so are steps on them: a
    peer client asks their owners.
    """
    if not config.slice_lease_ms:
        return None, None, ALL_HERE
    assert isinstance(store, PostgresEventStore), "the configuration checks the store"
    ownership = SliceOwnership(
        store, config.slice_lease_ms, "command", config.slice_ranges, balanced=config.balanced
    )
    if not ownership.split:
        return ownership, None, ALL_HERE
    peer = PeerClient(ownership.find_owner_of)
    return ownership, peer, RangeOwners(ownership.serves, peer.credit)


def _with_other_servers(
    ownership: SliceOwnership,
    store: EventStore,
    core: CommandCore,
    sides: tuple[CommandHandlers, ProtoMarketHandlers],
    timers: tuple[PendingActivations, LotExpiry],
) -> None:
    """With part of the ranges, follow the rules others change; balanced, hand ranges over."""
    handlers, market = sides
    if ownership.split:  # Rules another server changed, in force here too.
        ownership.every_round(core.program.follow)
    if ownership.balanced:
        # A range's actors finish within half a renewal: the renewals stay on time.
        drain_s = ownership.lease_ms / 6000
        ownership.hand_over_with(
            RangeHandover(store, core.actors, handlers, *timers, market, drain_s)
        )


def _services(
    feed: EventFeedServicer,
    commands: CommandServicer,
    handlers: CommandHandlers,
    market: ProtoMarketHandlers,
    *,
    split: bool,
) -> tuple[list[Service], PeerServicer | None]:
    """Return the command server's two services, and with `split` the peer service beside them.

    The peer service (command/edge/peer_servicer.py) is what servers of split ranges ask each
    other; it is not a public service, so health and reflection do not list it.
    """
    peer = PeerServicer(handlers.take_credit, MarketPeerSteps(market)) if split else None

    def register_commands(server: grpc.aio.Server) -> None:
        command_service_pb2_grpc.add_CommandServiceServicer_to_server(commands, server)
        if peer is not None:
            peer_pb2_grpc.add_PeerServiceServicer_to_server(peer, server)

    services = [
        Service(
            event_feed_pb2.DESCRIPTOR.services_by_name["EventFeed"].full_name,
            lambda server: event_feed_pb2_grpc.add_EventFeedServicer_to_server(feed, server),
        ),
        Service(
            command_service_pb2.DESCRIPTOR.services_by_name["CommandService"].full_name,
            register_commands,
        ),
    ]
    return services, peer


async def _take_ranges_then_serve(
    ownership: SliceOwnership, prepare: Callable[[], Awaitable[None]], *, balanced: bool
) -> None:
    """Take every slice range (waiting as a standby), `prepare` (recover), then serve here.

    Balanced, `prepare` comes first (it recovers nothing): each range is recovered as taken.
    """
    if balanced:
        await prepare()
        await ownership.take_all()
        await ownership.serve()
        log.info("command server balancing slice ranges", extra={"owner_id": ownership.owner_id})
        return
    # Before recovery and every command: what they write carries the ranges' epochs.
    await ownership.take_all()
    await prepare()
    await ownership.serve()
    log.info("command server serving its slice ranges", extra={"owner_id": ownership.owner_id})


async def _prepare(
    store: EventStore,
    core: CommandCore,
    handlers: CommandHandlers,
    market: ProtoMarketHandlers,
    timers: tuple[PendingActivations, LotExpiry],
    *,
    ranges: Sequence[int] | None,
    balanced: bool = False,
) -> None:
    """Load the program's rules, record the markets' configuration, resume open processes.

    A server of part of the slice ranges (`ranges`) records the configuration of its own
    markets. Balanced, it does that and recovers each range as it takes it
    (command/app/handover.py).
    """
    await core.program.load()  # The limits in force, before any command is decided.
    if balanced:
        return
    split = ranges is not None and len(ranges) < SLICE_RANGES
    await market.configure()
    await _resume_open_processes(store, handlers, market, timers, ranges if split else None)


def _advertised(listen: str, running: RunningServer) -> str:
    """Return host:port where other servers reach this one, from where it listens."""
    host = listen.rpartition(":")[0]
    if host in {"0.0.0.0", "[::]", "::"}:  # noqa: S104 - read, not bound.
        host = socket.gethostname()
    return f"{host}:{running.port}"


def _timer_metrics(metrics: Metrics, activations: PendingActivations, expiry: LotExpiry) -> None:
    """Add the gauges of the activation and expiry timers."""
    metrics.gauge(
        "pointex_pending_issues_watched",
        "Issues whose points are pending, waiting in the activation timer.",
        lambda: activations.watched,
    )
    metrics.gauge(
        "pointex_lot_expiry_accounts_watched",
        "Member accounts with expiring lots, waiting in the expiry timer.",
        lambda: expiry.watched,
    )


def _ownership_metrics(metrics: Metrics, ownership: SliceOwnership) -> None:
    """Add the slice-range leases' gauge and counter (docs/scale-out.md)."""
    metrics.gauge(
        "pointex_slice_ranges_held",
        "Slice ranges this server holds by lease now (of 64).",
        lambda: ownership.ranges_held,
    )
    metrics.total(
        "pointex_slice_ranges_lost",
        "Slice ranges another server took over from this one since start.",
        lambda: ownership.ranges_lost,
    )
    if ownership.balanced:
        metrics.total(
            "pointex_slice_ranges_given",
            "Slice ranges this server handed over to other members since start (balanced).",
            lambda: ownership.ranges_given,
        )
        metrics.total(
            "pointex_slice_ranges_taken",
            "Slice ranges this server took and recovered since start (balanced).",
            lambda: ownership.ranges_taken,
        )


def _side_metrics(
    metrics: Metrics,
    timers: tuple[PendingActivations, LotExpiry],
    peer: PeerClient | None,
    servicer: PeerServicer | None,
) -> None:
    """Add the timers' gauges, and with split ranges the counters of the peer credits."""
    _timer_metrics(metrics, *timers)
    _peer_metrics(metrics, peer, servicer)


def _peer_metrics(metrics: Metrics, peer: PeerClient | None, servicer: PeerServicer | None) -> None:
    """Add the counters of the credits asked of and taken for the other servers (if split)."""
    if peer is None or servicer is None:
        return
    metrics.total(
        "pointex_peer_credits_asked",
        "Credits of transfers asked of the servers that own their accounts (split ranges).",
        lambda: peer.credits_asked,
    )
    metrics.total(
        "pointex_peer_credits_not_taken",
        "Credits asked of other servers that came back refused or failed (retried or returned).",
        lambda: peer.credits_not_taken,
    )
    metrics.total(
        "pointex_peer_credits_taken",
        "Credits taken on this server's accounts for transfers other servers drive.",
        lambda: servicer.credits_taken,
    )
    metrics.total(
        "pointex_peer_market_steps_asked",
        "Trade steps, placements and releases asked of the servers that own their accounts "
        "or markets (split ranges).",
        lambda: peer.steps_asked,
    )
    metrics.total(
        "pointex_peer_market_steps_taken",
        "Trade steps, placements and releases taken here for other servers.",
        lambda: servicer.market_steps_taken,
    )


def _metrics(core: CommandCore) -> Metrics:
    """Return the command server's metrics: its RPCs, and its core's gauges and counters."""
    actors, committer = core.actors, core.committer
    metrics = Metrics("command")
    metrics.gauge(
        "pointex_actors_resident",
        "Account actors in memory now (capped by POINTEX_ACTORS_RESIDENT_MAX).",
        lambda: actors.resident,
    )
    metrics.gauge(
        "pointex_actor_activations",
        "Account actors activated since start (loaded from a snapshot and the log).",
        lambda: actors.activations,
    )
    metrics.total(
        "pointex_group_commits",
        "Group commits written to the event store since start.",
        lambda: committer.batches_committed,
    )
    metrics.total(
        "pointex_group_commit_units",
        "All-or-nothing units committed by group commits since start.",
        lambda: committer.units_committed,
    )
    metrics.total(
        "pointex_group_commit_events",
        "Events committed by group commits since start.",
        lambda: committer.events_committed,
    )
    return metrics


def _process_metrics(
    metrics: Metrics, runner: ProcessRunner, handlers: CommandHandlers, market: ProtoMarketHandlers
) -> None:
    """Add a gauge for each in-memory map of the processes and the markets."""
    processes, markets = market.processes, market.markets
    metrics.gauge(
        "pointex_transfers_open",
        "Transfers debited and not yet credited or returned (points in flight).",
        lambda: handlers.open_count,
    )
    metrics.gauge(
        "pointex_reversals_under_way",
        "Issues and redemptions with a reversal running or waiting its turn (bounded by the "
        "calls in flight).",
        lambda: handlers.reversing_count,
    )
    metrics.gauge(
        "pointex_trades_open",
        "Trades this server drives that are not settled or cancelled yet.",
        lambda: processes.open_count,
    )
    metrics.gauge(
        "pointex_trade_deadlines_watched",
        "Payment deadlines waiting in the timer (ended trades leave at their deadline).",
        lambda: processes.deadlines_watched,
    )
    metrics.gauge(
        "pointex_process_steps_running",
        "Process steps running detached from their callers (retries included).",
        lambda: runner.running,
    )
    metrics.gauge(
        "pointex_market_orders_resting",
        "Resting orders in the loaded markets' books.",
        lambda: markets.orders_in_memory()[0],
    )
    metrics.gauge(
        "pointex_market_orders_finished_kept",
        "Finished orders the markets keep in memory (at most finished_orders_max a market).",
        lambda: markets.orders_in_memory()[1],
    )


async def _market_side(
    config: CommandConfig,
    store: EventStore,
    core: CommandCore,
    owners: Owners = ALL_HERE,
    peer: PeerClient | None = None,
) -> tuple[ProtoMarketHandlers, CallbackEdge]:
    """Build the markets, trade processes and payment callbacks.

    With part of the ranges (`peer`), the markets of others' ranges are theirs, and so are
    the steps on their accounts and markets: `peer` asks their owners.
    """
    peers = MarketPeers(peer) if peer is not None else None
    settings = (
        load_providers(config.payment_providers_file) if config.payment_providers_file else {}
    )
    markets = MarketActors(
        store,
        core.committer,
        load_markets(config.markets_file).values(),
        owns=None if peer is None else owners.owns,
    )
    processes = TradeProcesses(
        store=store,
        committer=core.committer,
        accounts=core.actors,
        markets=markets,
        providers=create_providers(settings),
        clock=lambda: time.time_ns() // 1_000_000,
        runner=core.runner,
        owners=owners,
        peers=peers,
    )
    market = MarketHandlers(
        store=store,
        accounts=core.actors,
        markets=markets,
        processes=processes,
        lookup=core.lookup,
        runner=core.runner,
        replies=MARKET_REPLIES,
        place_elsewhere=None if peers is None else peers.place,
    )
    callbacks = PaymentCallbacks(store=store, lookup=core.lookup, processes=processes)
    return market, CallbackEdge(callbacks, build_verifier(settings))


def _redacted(url: str) -> str:
    """Return the store URL without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
