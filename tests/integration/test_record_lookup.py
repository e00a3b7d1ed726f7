"""Retry look-ups go in step with the group commit: one read per commit, after it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pointex.server.command.bootstrap import start_core
from pointex.server.eventstore.port import EventStore, NewEvent, RecordedEvent, StreamAppend
from tests.conftest import MakeStore

EVENT = NewEvent("RequestRecorded", 1, b"")


def _count_reads(store: EventStore) -> list[int]:
    """Count the store's version reads (the look-up's only query) from now on."""
    reads = [0]
    read = store.stream_versions

    async def counted(stream_ids: Sequence[str]) -> dict[str, int]:
        reads[0] += 1
        return await read(stream_ids)

    store.stream_versions = counted  # type: ignore[method-assign]
    return reads


async def test_questions_during_a_commit_wait_for_it_and_share_one_read(
    make_store: MakeStore,
) -> None:
    """Asked while a commit is under way: no read until it ends, then one read that sees it."""
    release = asyncio.Event()
    holding = asyncio.Event()

    async def hold(_rows: Sequence[RecordedEvent]) -> None:
        holding.set()
        await release.wait()

    store = make_store(before_commit=hold)
    await store.open()
    core = start_core(store, resident_max=10)  # Wired as the server wires it.
    committer, lookup = core.committer, core.lookup
    try:
        committed = committer.submit((StreamAppend("request-first", 0, (EVENT,)),))
        await holding.wait()
        reads = _count_reads(store)
        asked = [
            asyncio.create_task(lookup.exists_many(["request-first", f"request-other{i}"]))
            for i in range(5)
        ]
        for _ in range(20):
            await asyncio.sleep(0)
        assert reads[0] == 0
        assert not any(task.done() for task in asked)

        release.set()
        await committed
        answers = await asyncio.gather(*asked)
        assert answers == [[True, False]] * 5  # The read came after the commit it waited for.
        assert reads[0] == 1
    finally:
        release.set()
        await lookup.stop()
        await committer.stop()


async def test_an_idle_committer_adds_no_wait(store: EventStore) -> None:
    """With no commit under way, a question is read at once."""
    core = start_core(store, resident_max=10)  # Wired as the server wires it.
    committer, lookup = core.committer, core.lookup
    try:
        await committer.submit((StreamAppend("request-known", 0, (EVENT,)),))
        reads = _count_reads(store)
        async with asyncio.timeout(5):
            assert await lookup.exists_many(["request-known", "request-unknown"]) == [True, False]
        assert reads[0] == 1
    finally:
        await lookup.stop()
        await committer.stop()
