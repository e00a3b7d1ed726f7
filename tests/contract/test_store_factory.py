"""Contract of `open_store`: a URL names a backend, and the store it opens is the database."""

from __future__ import annotations

import secrets

from pointex.server.eventstore.factory import open_store
from pointex.server.eventstore.port import EventStore, NewEvent, StreamAppend


async def test_open_store_by_url_opens_the_same_database(store: EventStore, store_url: str) -> None:
    """A store opened from the test database's URL reads what the fixture's store wrote."""
    stream_id = f"account-{secrets.token_hex(4)}"
    written = await store.append([StreamAppend(stream_id, 0, (NewEvent("Opened", 1, b"x"),))])
    by_url = open_store(store_url)
    await by_url.open()
    try:
        assert await by_url.read_stream(stream_id) == written
        assert await by_url.schema_version() == await store.schema_version()
    finally:
        await by_url.close()
