"""Markets' fee schedule versions in the read store, on SQLite and on PostgreSQL.

The market events are the command side's own, encoded by its codec, and projected through
the real `Projector` (which loads the stored markets when a batch configures one). Each
market row counts its configurations and keeps the version at which a fee last changed,
exactly as the order book fed the same events counts them, however the log is cut into
batches, across a restart, and in a rebuilt generation. Migration 0007 keeps the markets of
an older read store (their versions unknown: 0) and a rebuild counts them.
"""

from __future__ import annotations

import dataclasses
import itertools

from pointex.server.domain.market_events import MarketConfigured
from pointex.server.domain.order_book import OrderBook, evolve
from pointex.server.domain.values import FeeSchedule, Market, Span
from pointex.server.eventstore import codec
from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.projector import Projector
from pointex.server.query.readstore.port import ReadStore
from pointex.v1 import events_pb2
from tests.feed_events import Log
from tests.integration import test_read_store
from tests.integration.test_read_store import MakeReadStore, run_statements

# The read-store fixtures of the contract suite, shared as they are.
read_store_url = test_read_store.read_store_url
make_read_store = test_read_store.make_read_store
store = test_read_store.store

PTS = Market(
    "PTS-CNY", "CNY", FeeSchedule(100, 1), FeeSchedule(50, 0), Span(900_000), 10_000, 10**9,
    "sandbox", True,
)  # fmt: skip
MILES = dataclasses.replace(PTS, market_id="MILES-USD", currency="USD")
# PTS-CNY's configurations: closed (fees kept), a dearer buyer's fee, then a shorter window.
PTS_HISTORY = (
    PTS,
    dataclasses.replace(PTS, open=False),
    dataclasses.replace(PTS, buyer_fee=FeeSchedule(120, 1)),
    dataclasses.replace(PTS, buyer_fee=FeeSchedule(120, 1), payment_window=Span(60_000)),
)
# MILES-USD's: a new seller's fee, then back to the first one (a change too).
MILES_HISTORY = (MILES, dataclasses.replace(MILES, seller_fee=FeeSchedule(0, 9)), MILES)
# What undoes migration 0007 on generation 1.
UNDO_MIGRATION_7 = (
    "ALTER TABLE g1_markets DROP COLUMN configurations",
    "ALTER TABLE g1_markets DROP COLUMN fee_schedule_version",
    "DELETE FROM g1_schema_migrations WHERE version = 7",
)


def configured(log: Log, market: Market) -> events_pb2.Event:
    """MarketConfigured as the command side stores it and the feed carries it."""
    stored = codec.encode(MarketConfigured(market))
    payload = events_pb2.MarketConfigured.FromString(stored.data)
    return log.event(f"market-{market.market_id}", "market_configured", payload)


def market_log(log: Log) -> list[events_pb2.Event]:
    """Both markets' configurations, interleaved."""
    pairs = itertools.zip_longest(PTS_HISTORY, MILES_HISTORY)
    return [configured(log, market) for pair in pairs for market in pair if market is not None]


def book_versions() -> dict[str, tuple[int, int]]:
    """Return what each market's order book counts after its configurations."""
    versions = {}
    for history in (PTS_HISTORY, MILES_HISTORY):
        book = OrderBook()
        for market in history:
            evolve(book, MarketConfigured(market))
        versions[history[0].market_id] = (
            book.fee_version.configurations,
            book.fee_version.schedule_version,
        )
    return versions


async def stored_versions(
    store: ReadStore, generation: int | None = None
) -> dict[str, tuple[int, int]]:
    """Return each stored market's (configurations, fee schedule version)."""
    return {
        m.market_id: (m.configurations, m.fee_schedule_version)
        for m in await store.markets(generation)
    }


async def project(store: ReadStore, events: list[events_pb2.Event], size: int) -> Projector:
    """Project `events` into the active generation in batches of `size`; return the projector."""
    projector = Projector(store, CheckpointWatch(await store.checkpoint()))
    for start in range(0, len(events), size):
        await projector.apply_active(events[start : start + size])
    return projector


async def test_each_market_counts_what_its_order_book_counts_in_any_batches(
    store: ReadStore, make_read_store: MakeReadStore
) -> None:
    """One event a batch, three, or all at once: the rows agree with the books, and persist."""
    expected = book_versions()
    assert expected == {"PTS-CNY": (4, 3), "MILES-USD": (3, 3)}
    events = market_log(Log())
    projector = await project(store, events, 1)
    assert await stored_versions(store) == expected
    for size in (3, len(events)):  # Rebuilt generations, cut otherwise, compare equal.
        generation = await store.create_generation()
        after = 0
        for start in range(0, len(events), size):
            after = await projector.apply_to(generation, events[start : start + size], after)
        assert await stored_versions(store, generation) == expected
        assert await store.count_differences(generation) == 0
        await store.drop_generation(generation)
    await store.close()
    reopened = make_read_store()
    await reopened.open()
    assert await stored_versions(reopened) == expected


async def test_a_reconfiguration_in_a_later_batch_counts_on_from_the_stored_row(
    store: ReadStore,
) -> None:
    """Configured, then (another batch) closed with the same fees, then a new seller's fee."""
    log = Log()
    projector = await project(store, [configured(log, PTS)], 1)
    assert await stored_versions(store) == {"PTS-CNY": (1, 1)}
    await projector.apply_active([configured(log, dataclasses.replace(PTS, open=False))])
    assert await stored_versions(store) == {"PTS-CNY": (2, 1)}
    dearer = dataclasses.replace(PTS, seller_fee=FeeSchedule(70, 0))
    await projector.apply_active([log.opened("a1", "acme"), configured(log, dearer)])
    (row,) = await store.markets()
    assert (row.configurations, row.fee_schedule_version, row.currency) == (3, 3, "CNY")


async def test_an_older_read_store_keeps_its_markets_and_a_rebuild_counts_them(
    store: ReadStore, make_read_store: MakeReadStore, read_store_url: str
) -> None:
    """Migration 0007 on a store at schema 6: rows kept with 0, 0; a rebuild has the counts."""
    events = market_log(Log())
    await project(store, events, 2)
    bodies = {m.market_id: m.body for m in await store.markets()}
    await store.close()
    await run_statements(read_store_url, list(UNDO_MIGRATION_7))
    reopened = make_read_store()
    await reopened.open()
    migrated = await reopened.markets()
    assert {m.market_id: m.body for m in migrated} == bodies
    assert await stored_versions(reopened) == {"PTS-CNY": (0, 0), "MILES-USD": (0, 0)}
    generation = await reopened.create_generation()
    projector = Projector(reopened, CheckpointWatch(await reopened.checkpoint()))
    await projector.apply_to(generation, events, 0)
    assert await stored_versions(reopened, generation) == book_versions()
    assert await reopened.count_differences(generation) > 0  # Why the rebuild is needed.
    await reopened.activate_generation(generation)
    assert await stored_versions(reopened) == book_versions()
