"""One market's actor: a stream actor over the order book, and the registry of markets.

Markets are few and hot, so their actors stay resident for the life of the server. Only
configured markets take new orders; a market that was configured once and then dropped
from the configuration still answers for the orders and trades it holds. With the slice
ranges split across command servers, a market is served by the owner of its range only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pointex.server.actors import book_snapshots
from pointex.server.actors.stream_actor import StreamActor
from pointex.server.domain import errors, order_book, streams
from pointex.server.domain.order_book import OrderBook
from pointex.server.domain.values import Market
from pointex.server.elsewhere import Elsewhere
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import EventStore, Snapshot


class _MarketAggregate:
    """The order book as an actor's aggregate: updated in place, snapshotted sparingly."""

    in_place = True

    def __init__(self) -> None:
        # Stream version of each market's last snapshot written or loaded here.
        self._written: dict[str, int] = {}

    def empty(self) -> OrderBook:
        return OrderBook()

    def decide(self, state: OrderBook, command: Any) -> list[Any]:
        return order_book.decide(state, command)

    def evolve(self, state: OrderBook, event: Any) -> OrderBook:
        return order_book.evolve(state, event)

    def to_snapshot(
        self, stream_id: str, state: OrderBook, version: int, position: int
    ) -> Snapshot | None:
        if not book_snapshots.worth_writing(state, version - self._written.get(stream_id, 0)):
            return None
        self._written[stream_id] = version
        return book_snapshots.to_snapshot(stream_id, state, version, position)

    def from_snapshot(self, snapshot: Snapshot) -> tuple[OrderBook, int, int] | None:
        restored = book_snapshots.from_snapshot(snapshot)
        if restored is not None:
            self._written[snapshot.stream_id] = restored[1]
        return restored


class MarketActors:
    """The market actors of one command server."""

    def __init__(
        self,
        store: EventStore,
        committer: GroupCommitter,
        configured: Iterable[Market],
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        """Serve the `configured` markets (and any recorded one, for its processes).

        `owns` tells whether this server owns a stream's range (None: every one).
        """
        self._owns = owns
        self._store = store
        self._committer = committer
        self.configured: dict[str, Market] = {m.market_id: m for m in configured}
        self._actors: dict[str, StreamActor[OrderBook]] = {}
        self._aggregate = _MarketAggregate()

    def here(self, market_id: str) -> bool:
        """Tell whether this server serves the market (owns its range)."""
        return self._owns is None or self._owns(streams.market(market_id))

    def actor(self, market_id: str) -> StreamActor[OrderBook]:
        """Return the market's actor (for a process step on a market named by the log).

        Raises Elsewhere for a market another server owns.
        """
        if not self.here(market_id):
            raise Elsewhere(streams.market(market_id))
        actor = self._actors.get(market_id)
        if actor is None:
            actor = StreamActor(
                streams.market(market_id), self._aggregate, self._store, self._committer
            )
            self._actors[market_id] = actor
        return actor

    def orders_in_memory(self) -> tuple[int, int]:
        """Return the resting and the finished orders the loaded markets keep (for metrics)."""
        books = [actor.state for actor in self._actors.values()]
        return sum(len(b.orders) for b in books), sum(len(b.finished) for b in books)

    def serving(self, market_id: str) -> StreamActor[OrderBook]:
        """Return the actor of a configured market, or raise MARKET_NOT_FOUND (or Elsewhere)."""
        self.require_configured(market_id)
        return self.actor(market_id)

    def require_configured(self, market_id: str) -> None:
        """Raise MARKET_NOT_FOUND unless the market is configured (here or not)."""
        if market_id not in self.configured:
            raise errors.NotFound(errors.MARKET_NOT_FOUND, "no such market", market_id=market_id)

    def forget(self, among: Callable[[str], bool]) -> int:
        """Drop the actors of the markets `among` (their range was given up); return how many."""
        gone = [market_id for market_id in self._actors if among(market_id)]
        for market_id in gone:
            del self._actors[market_id]
        return len(gone)
