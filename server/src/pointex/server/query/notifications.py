"""WatchNotifications: the caller's notifications from a cursor, catch-up then live.

A stream reads the read store page by page after its cursor, so it holds at most one page
(`limits.notification_page_max`) whatever its lag, and yielding waits for HTTP/2 flow
control: a watcher that stops reading stops the reads too. When caught up it waits for the
projections to advance (a wake-up, no polling) or sends a heartbeat after
`limits.notification_heartbeat_ms`. Ordering and cursors are `(position, index)`, which
every rebuild reproduces, so a resumed stream continues exactly after its last cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from google.protobuf import timestamp_pb2

from pointex.client.positions import position_message
from pointex.server import limits
from pointex.server.domain.values import Principal
from pointex.server.grpc_edge.status import ShuttingDown
from pointex.server.overload import Overloaded
from pointex.server.query import requests, views
from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.readstore.port import NotificationFilter, ReadStore
from pointex.server.query.tokens import TokenCodec
from pointex.v1 import query_service_pb2 as pb

# Above every notification index at a position: "after everything at this position".
INDEX_END = 2**31 - 1


class NotificationStreams:
    """Serve WatchNotifications streams, at most `limits.notification_watchers_max` at once."""

    def __init__(self, store: ReadStore, watch: CheckpointWatch, tokens: TokenCodec) -> None:
        """Read from `store`, wake on `watch`, sign cursors with `tokens`."""
        self._store = store
        self._watch = watch
        self._tokens = tokens
        self._watchers = 0

    async def watch(
        self,
        caller: Principal,
        request: pb.WatchNotificationsRequest,
        time_remaining_s: float | None,
    ) -> AsyncIterator[pb.WatchNotificationsResponse]:
        """Yield the caller's notifications (and heartbeats) as the request asks."""
        selected = requests.notification_filter(caller, request)
        after = self._tokens.read_cursor(request.cursor, caller) if request.cursor else (0, 0)
        min_position = requests.min_position(request.min_position)
        if self._watchers >= limits.notification_watchers_max:
            raise Overloaded(
                "OVERLOADED", "too many notification streams", limits.overload_retry_after_ms
            )
        self._watchers += 1
        try:
            await self._watch.wait_for(min_position, time_remaining_s)
            await self._check_accounts(caller, selected)
            if not request.cursor and not request.from_beginning:
                after = (self._watch.position, INDEX_END)
            async for message in self._follow(caller, selected, after):
                yield message
        finally:
            self._watchers -= 1

    async def _check_accounts(self, caller: Principal, selected: NotificationFilter) -> None:
        found = await self._store.accounts(list(selected.account_ids))
        for account_id in selected.account_ids:
            requests.require_visible(caller, found.get(account_id), account_id)

    async def _follow(
        self, caller: Principal, selected: NotificationFilter, after: tuple[int, int]
    ) -> AsyncIterator[pb.WatchNotificationsResponse]:
        heartbeat_s = limits.notification_heartbeat_ms / 1000
        last_sent_s = time.monotonic()
        while True:
            if self._watch.closed:
                raise ShuttingDown
            # Taken before the read: an advance that lands during the read still wakes us.
            woken = self._watch.armed()
            as_of = self._watch.position
            page = await self._store.notifications(selected, after, limits.notification_page_max)
            for row in page:
                cursor = self._tokens.cursor(caller, row.position, row.index)
                yield pb.WatchNotificationsResponse(
                    notification=views.notification_message(row, cursor)
                )
                after = (row.position, row.index)
                last_sent_s = time.monotonic()
            if len(page) == limits.notification_page_max:
                continue
            # Every notification up to `as_of` has now been sent.
            idle_s = heartbeat_s - (time.monotonic() - last_sent_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(idle_s, 0)):
                    await woken.wait()
                    continue
            yield pb.WatchNotificationsResponse(heartbeat=_heartbeat(as_of))
            last_sent_s = time.monotonic()


def _heartbeat(as_of: int) -> pb.NotificationHeartbeat:
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    return pb.NotificationHeartbeat(as_of=position_message(as_of), server_time=now)
