"""The rebuild's own subscription: events taken whole, or up to a position within a message."""

from __future__ import annotations

from typing import cast

from pointex.client.positions import decode_global, encode_global
from pointex.server.query.feed_subscriber import FeedClient
from pointex.server.query.rebuild import _Source
from pointex.v1 import common_pb2, event_feed_pb2, events_pb2


def _message(first: int, last: int) -> event_feed_pb2.SubscribeResponse:
    events = [
        events_pb2.Event(position=common_pb2.Position(token=encode_global(p)))
        for p in range(first, last + 1)
    ]
    return event_feed_pb2.SubscribeResponse(events=event_feed_pb2.EventBatch(events=events))


class _Call:
    def __init__(self, responses: list[event_feed_pb2.SubscribeResponse]) -> None:
        self._responses = responses

    async def read(self) -> event_feed_pb2.SubscribeResponse:
        return self._responses.pop(0)

    def cancel(self) -> None:
        """Nothing to end."""


class _Client:
    def __init__(self, responses: list[event_feed_pb2.SubscribeResponse]) -> None:
        self.call = _Call(responses)

    def subscribe(self, after_position: int) -> _Call:
        assert after_position == 0
        return self.call


def _positions(events: list[events_pb2.Event]) -> list[int]:
    return [decode_global(e.position.token) for e in events]


async def test_a_message_is_taken_whole_or_cut_at_the_position_asked() -> None:
    """Up to 3 of 1..5 leaves 4 and 5 for the next take; a later message comes whole."""
    source = _Source(cast("FeedClient", _Client([_message(1, 5), _message(6, 8)])))
    assert _positions(await source.take(3)) == [1, 2, 3]
    assert _positions(await source.take(3)) == []
    assert _positions(await source.take(None)) == [4, 5]
    assert _positions(await source.take(8)) == [6, 7, 8]
