"""Apply batches of feed events to a generation of the read models, one transaction each.

Loading the touched rows (accounts, orders, trades, pending issues, points in flight, rules,
markets), projecting (pure) and writing the changes with the checkpoint happen in order
under `lock` for the active generation; the rebuild takes the same lock to switch
generations between two batches, so no batch straddles the switch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.projections import keys_of, order_ids_of, project_batch
from pointex.server.query.readstore.port import Changes, ReadStore
from pointex.v1 import events_pb2


class Projector:
    """Project feed batches into the read store and advance the served checkpoint."""

    def __init__(self, store: ReadStore, watch: CheckpointWatch) -> None:
        """Write to `store`; advance `watch` after each batch of the active generation."""
        self._store = store
        self._watch = watch
        self.lock = asyncio.Lock()

    async def apply_active(self, events: Sequence[events_pb2.Event]) -> int:
        """Apply events that continue the active checkpoint; return the new checkpoint."""
        async with self.lock:
            changes = await self._project(events, self._watch.position, None)
            await self._store.apply(changes)
            self._watch.advance(changes.position)
            return changes.position

    async def apply_to(
        self, generation: int, events: Sequence[events_pb2.Event], after_position: int
    ) -> int:
        """Apply events to an inactive generation (a rebuild); return its new checkpoint."""
        changes = await self._project(events, after_position, generation)
        await self._store.apply(changes, generation)
        return changes.position

    async def resync(self) -> int:
        """Re-read the active checkpoint after a store error (a COMMIT may have succeeded)."""
        async with self.lock:
            position = await self._store.checkpoint()
            self._watch.advance(max(position, self._watch.position))
            return self._watch.position

    async def _project(
        self, events: Sequence[events_pb2.Event], after_position: int, generation: int | None
    ) -> Changes:
        keys = keys_of(events)
        accounts = await self._store.accounts(keys.account_ids, generation)
        trades = await self._store.trades(keys.trade_ids, generation)
        # Settling or cancelling a trade changes its orders, which its events do not name.
        order_ids = list(dict.fromkeys([*keys.order_ids, *order_ids_of(trades.values())]))
        orders = await self._store.orders(order_ids, generation)
        rules = await self._store.program_rules(generation) if keys.program_rules else None
        pending_issues = await self._store.pending_issues(keys.pending_issue_ids, generation)
        in_flight = await self._store.in_flight(keys.in_flight_ids, generation)
        # A configured market counts on from its row (its fee schedule's version).
        markets = await self._store.markets(generation) if keys.markets else []
        return project_batch(
            events,
            accounts,
            after_position,
            orders=orders,
            trades=trades,
            program_rules=rules,
            pending_issues=pending_issues,
            in_flight=in_flight,
            markets={market.market_id: market for market in markets},
        )
