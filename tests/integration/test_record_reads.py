"""Reads of process records asked during one turn of the event loop go in one store read."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence

import pytest

from pointex.server.command.app.record_reads import RecordReads
from pointex.server.eventstore.port import (
    EventStore,
    NewEvent,
    RecordedEvent,
    StoreUnavailable,
    StreamAppend,
)


def _events(count: int) -> tuple[NewEvent, ...]:
    return tuple(NewEvent("TransferInitiated", 2, bytes([i]), b"{}") for i in range(count))


async def test_reads_asked_in_one_turn_share_one_store_read_and_later_ones_another(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four callers in one turn (a stream twice, one absent): one read; a later one: another."""
    first, second, absent = (f"transfer-{secrets.token_hex(4)}" for _ in range(3))
    written = await store.append(
        [StreamAppend(first, 0, _events(4)), StreamAppend(second, 0, _events(1))]
    )
    asked: list[list[str]] = []
    read = store.read_stream_starts

    async def counted(stream_ids: Sequence[str], count: int) -> dict[str, list[RecordedEvent]]:
        asked.append(list(stream_ids))
        return await read(stream_ids, count)

    monkeypatch.setattr(store, "read_stream_starts", counted)
    reads = RecordReads(store)
    answers = await asyncio.gather(*(reads.first_events(s) for s in (first, second, first, absent)))
    assert asked == [[first, second, absent]]
    assert answers == [written[:3], written[4:], written[:3], []]
    assert await reads.first_events(second) == written[4:]
    assert len(asked) == 2


async def test_a_failed_read_fails_each_of_its_callers(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store away: every caller of that read gets the error; the next read is tried again."""

    async def away(_stream_ids: Sequence[str], _count: int) -> dict[str, list[RecordedEvent]]:
        raise StoreUnavailable("the database is away")

    reads = RecordReads(store)
    with monkeypatch.context() as patched:
        patched.setattr(store, "read_stream_starts", away)
        answers = await asyncio.gather(
            reads.first_events("transfer-a"), reads.first_events("transfer-b"),
            return_exceptions=True,
        )  # fmt: skip
    assert [type(answer) for answer in answers] == [StoreUnavailable, StoreUnavailable]
    assert await reads.first_events("transfer-a") == []
