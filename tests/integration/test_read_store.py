"""The read-store contract, written once and run on SQLite and on PostgreSQL.

The only backend-specific code is the `make_read_store` factory. Batches are produced by
the real (pure) projections from feed events, so the rows are the rows the server writes.
The translation of driver errors is tested row by row at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from pointex.server.query.projections import keys_of, order_ids_of, project_batch
from pointex.server.query.readstore.factory import open_read_store
from pointex.server.query.readstore.market_rows import OrderFilter, TradeFilter
from pointex.server.query.readstore.port import (
    AccountFilter,
    Changes,
    CheckpointMoved,
    HistoryFilter,
    NotificationFilter,
    ReadStore,
)
from pointex.server.query.readstore.postgres import errors as pg_errors
from pointex.server.query.readstore.sqlite import errors as sqlite_errors
from pointex.server.store_errors import StoreError, StoreUnavailable
from pointex.v1 import common_pb2, events_pb2
from tests.feed_events import Log
from tests.unit.test_market_projections import MarketRows, quantities, scenario

MakeReadStore = Callable[[], ReadStore]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def read_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a read store of the test's own: a SQLite file or a PostgreSQL schema."""
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")
        schema: str = request.getfixturevalue("pg_schema")
        return f"{dsn}?schema={schema}"
    return f"sqlite:///{tmp_path / 'read.db'}"


@pytest.fixture
async def make_read_store(read_store_url: str) -> AsyncIterator[MakeReadStore]:
    """Build (unopened) read stores on the test's database; close them all afterwards."""
    built: list[ReadStore] = []

    def make() -> ReadStore:
        store = open_read_store(read_store_url)
        built.append(store)
        return store

    yield make
    for store in reversed(built):
        await store.close()


@pytest.fixture
async def store(make_read_store: MakeReadStore) -> ReadStore:
    """An opened read store."""
    opened = make_read_store()
    await opened.open()
    return opened


async def apply(
    store: ReadStore, events: list[events_pb2.Event], generation: int | None = None
) -> Changes:
    """Project `events` against the store's rows and apply them as one batch."""
    after = await store.checkpoint(generation)
    keys = keys_of(events)
    accounts = await store.accounts(keys.account_ids, generation)
    trades = await store.trades(keys.trade_ids, generation)
    orders = await store.orders([*keys.order_ids, *order_ids_of(trades.values())], generation)
    rules = await store.program_rules(generation) if keys.program_rules else None
    pending_issues = await store.pending_issues(keys.pending_issue_ids, generation)
    in_flight = await store.in_flight(keys.in_flight_ids, generation)
    changes = project_batch(
        events,
        accounts,
        after,
        orders=orders,
        trades=trades,
        program_rules=rules,
        pending_issues=pending_issues,
        in_flight=in_flight,
    )
    await store.apply(changes, generation)
    return changes


async def seed(store: ReadStore, log: Log) -> list[list[events_pb2.Event]]:
    """Three accounts of two owners, a mint and two transfers, in two batches; return them."""
    batches = [
        [
            log.opened("m1", "acme", kind=2),
            log.opened("a1", "acme"),
            log.opened("o1", "other"),
            log.minted("m1", 100, after=100),
        ],
        [*log.transfer("m1", "a1", 30, 70, 30), *log.transfer("a1", "o1", 5, 25, 5)],
    ]
    for batch in batches:
        await apply(store, batch)
    return batches


async def test_a_fresh_store_is_empty_at_checkpoint_zero(store: ReadStore) -> None:
    """A new read store has checkpoint 0, no accounts, and a balanced audit."""
    assert await store.checkpoint() == 0
    assert await store.list_accounts(AccountFilter(), "", 10) == []
    audit = await store.audit(10)
    assert (audit.position, audit.account_count, audit.minted_points) == (0, 0, 0)


async def test_a_batch_and_its_checkpoint_are_applied_together(store: ReadStore) -> None:
    """After two batches the rows, the totals and the checkpoint all reflect both."""
    log = Log()
    await seed(store, log)
    assert await store.checkpoint() == log.position == 12
    accounts = await store.accounts(["m1", "a1", "o1", "nobody"])
    assert {k: v.available_points for k, v in accounts.items()} == {"m1": 70, "a1": 25, "o1": 5}
    assert accounts["a1"].version == 3
    audit = await store.audit(10)
    assert (audit.minted_points, audit.available_points, audit.in_flight_points) == (100, 100, 0)


async def test_a_failed_batch_leaves_no_rows_and_the_checkpoint_unchanged(
    store: ReadStore,
) -> None:
    """A batch whose last insert fails writes nothing at all, checkpoint included."""
    log = Log()
    changes = project_batch([log.opened("a1", "acme"), log.minted("a1", 9, after=9)], {}, 0)
    # The same movement twice: the second insert violates the primary key, after the
    # checkpoint, the account and the first movement were written in the transaction.
    broken = dataclasses.replace(changes, movements=changes.movements * 2)
    with pytest.raises(StoreError):
        await store.apply(broken)
    assert await store.checkpoint() == 0
    assert await store.accounts(["a1"]) == {}
    assert await store.history("a1", HistoryFilter(), 0, 10) == []
    assert (await store.audit(10)).minted_points == 0
    await store.apply(changes)
    assert await store.checkpoint() == 2


async def test_account_text_is_stored_as_given_whatever_its_characters(store: ReadStore) -> None:
    """Quotes, backslashes, commas, braces, spaces and the word NULL survive the array literal."""
    log = Log()
    names = ['say "hi"', "back\\slash", "a,b", "{braces}", " NULL", "NULL", "", "émoji ✓"]
    events = [log.opened(f"a{i}", "acme") for i in range(len(names))]
    for event, name in zip(events, names, strict=True):
        event.account_opened.display_name = name
    await apply(store, events)
    stored = await store.accounts([f"a{i}" for i in range(len(names))] + ['"', "a0,a1"])
    assert [stored[f"a{i}"].display_name for i in range(len(names))] == names


async def test_a_batch_whose_last_copied_rows_fail_writes_nothing(store: ReadStore) -> None:
    """Notifications, the last rows copied in, failing undo the batch's earlier rows."""
    log = Log()
    events = [log.opened("a1", "acme"), log.minted("a1", 9, after=9)]
    changes = project_batch(events, {}, 0)
    assert changes.movements
    assert changes.notifications
    broken = dataclasses.replace(changes, notifications=changes.notifications * 2)
    with pytest.raises(StoreError):
        await store.apply(broken)
    assert await store.checkpoint() == 0
    assert await store.history("a1", HistoryFilter(), 0, 10) == []
    assert await store.notifications(NotificationFilter(), (0, 0), 10) == []
    await store.apply(changes)
    written = await store.notifications(NotificationFilter(), (0, 0), 10)
    assert [(n.position, n.index, n.body) for n in written] == [
        (n.position, n.index, n.body) for n in changes.notifications
    ]


async def test_a_cancelled_batch_runs_to_its_end_and_the_cancellation_goes_on(
    store: ReadStore,
) -> None:
    """A cancelled `apply` finishes its batch, re-raises the cancel, and leaves the store usable."""
    log = Log()
    first = project_batch([log.opened("a1", "acme"), log.minted("a1", 9, after=9)], {}, 0)
    task = asyncio.create_task(store.apply(first))
    await asyncio.sleep(0)  # The batch's transaction has started.
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.checkpoint() == 2
    await apply(store, [log.minted("a1", 1, after=10)])
    assert (await store.audit(10)).minted_points == 10


async def test_a_batch_not_continuing_the_checkpoint_is_refused(store: ReadStore) -> None:
    """Applying a batch twice fails with CheckpointMoved and changes nothing the second time."""
    log = Log()
    changes = await apply(store, [log.opened("a1", "acme"), log.minted("a1", 9, after=9)])
    with pytest.raises(CheckpointMoved) as caught:
        await store.apply(changes)
    assert (caught.value.expected, caught.value.actual) == (0, 2)
    assert (await store.audit(10)).minted_points == 9
    assert len(await store.history("a1", HistoryFilter(), 0, 10)) == 1


async def test_accounts_page_in_id_order_with_owner_and_kind_filters(store: ReadStore) -> None:
    """Keyset pages return each account once in id order; filters select owner and kind."""
    log = Log()
    await seed(store, log)
    seen, after = [], ""
    while page := await store.list_accounts(AccountFilter(), after, 2):
        seen += [row.account_id for row in page]
        after = page[-1].account_id
    assert seen == ["a1", "m1", "o1"]
    acme = await store.list_accounts(AccountFilter(owner_partner_id="acme"), "", 10)
    assert [row.account_id for row in acme] == ["a1", "m1"]
    merchants = await store.list_accounts(AccountFilter(kinds=("MERCHANT",)), "", 10)
    assert [row.account_id for row in merchants] == ["m1"]
    closed = await store.list_accounts(AccountFilter(statuses=("CLOSED",)), "", 10)
    assert closed == []


async def test_history_pages_both_ways_and_filters_kind_and_time(store: ReadStore) -> None:
    """A history pages oldest or newest first after a position, by kind and time window."""
    log = Log()
    await seed(store, log)
    oldest = await store.history("a1", HistoryFilter(), 0, 10)
    assert [m.kind for m in oldest] == ["TRANSFER_IN", "TRANSFER_OUT"]
    assert [m.available_points for m in oldest] == [30, 25]
    newest = await store.history("a1", HistoryFilter(newest_first=True), 0, 1)
    assert [m.kind for m in newest] == ["TRANSFER_OUT"]
    older = await store.history("a1", HistoryFilter(newest_first=True), newest[0].position, 5)
    assert [m.kind for m in older] == ["TRANSFER_IN"]
    outs = await store.history("a1", HistoryFilter(kinds=("TRANSFER_OUT",)), 0, 10)
    assert [m.position for m in outs] == [newest[0].position]
    first_at = oldest[0].recorded_at_us
    window = HistoryFilter(start_us=first_at, end_us=first_at + 1)
    assert [m.position for m in await store.history("a1", window, 0, 10)] == [oldest[0].position]


async def test_notifications_come_in_cursor_order_filtered_by_owner(store: ReadStore) -> None:
    """Notifications are ordered by (position, index); a partner's filter keeps its own."""
    log = Log()
    await seed(store, log)
    everything = await store.notifications(NotificationFilter(), (0, 0), 100)
    keys = [(n.position, n.index) for n in everything]
    assert keys == sorted(keys)
    assert len(keys) == len(set(keys))
    acme = await store.notifications(NotificationFilter(owner_partner_id="acme"), (0, 0), 100)
    assert {n.owner_partner_id for n in acme} == {"acme"}
    assert [n.kind for n in acme] == [
        "POINTS_MINTED",
        "POINTS_SENT",
        "POINTS_RECEIVED",
        "POINTS_SENT",
    ]
    after_first = await store.notifications(
        NotificationFilter(owner_partner_id="acme"), (acme[0].position, acme[0].index), 2
    )
    assert after_first == acme[1:3]
    received = NotificationFilter(kinds=("POINTS_RECEIVED",), account_ids=("o1",))
    assert [n.account_id for n in await store.notifications(received, (0, 0), 10)] == ["o1"]


async def test_a_rebuilt_generation_compares_equal_and_replaces_the_active_one(
    store: ReadStore, make_read_store: MakeReadStore
) -> None:
    """A new generation fed the same log has no differences; once active, it serves reads."""
    batches = await seed(store, Log())
    generation = await store.create_generation()
    assert await store.checkpoint(generation) == 0
    await apply(store, batches[0], generation)
    assert await store.count_differences(generation) > 0
    await apply(store, batches[1], generation)
    assert await store.count_differences(generation) == 0
    before = await store.list_accounts(AccountFilter(), "", 10)
    old = await store.activate_generation(generation)
    assert await store.checkpoint() == 12
    assert await store.list_accounts(AccountFilter(), "", 10) == before
    await store.drop_generation(old)
    reopened = make_read_store()
    await reopened.open()
    assert await reopened.checkpoint() == 12
    assert await reopened.token_secret() == await store.token_secret()
    assert await reopened.list_accounts(AccountFilter(), "", 10) == before


async def test_opening_drops_a_generation_a_crashed_rebuild_left(
    store: ReadStore, make_read_store: MakeReadStore
) -> None:
    """A generation that never became active is dropped at the next open."""
    await seed(store, Log())
    left = await store.create_generation()
    await store.close()
    reopened = make_read_store()
    await reopened.open()
    assert await reopened.create_generation() == left
    assert await reopened.checkpoint(left) == 0
    assert await reopened.checkpoint() == 12


async def test_audit_lists_offending_accounts_and_counts_them_all(store: ReadStore) -> None:
    """Negative, over-ceiling and unexplained-held accounts are listed (at most N), all counted."""
    log = Log()
    changes = project_batch([log.opened(f"a{i}", "acme") for i in range(3)], {}, 0)
    bad = tuple(
        dataclasses.replace(row, available_points=-1, held_points=2) for row in changes.accounts
    )
    await store.apply(dataclasses.replace(changes, accounts=bad))
    audit = await store.audit(2)
    assert (audit.account_count, audit.available_points, audit.held_points) == (3, -3, 6)
    assert [row.account_id for row in audit.negative] == ["a0", "a1"]
    assert (audit.negative_count, audit.escrow_count, audit.over_ceiling_count) == (3, 3, 0)
    assert [(row.account_id, expected) for row, expected in audit.escrow] == [("a0", 0), ("a1", 0)]


async def apply_in_batches(
    store: ReadStore, events: list[events_pb2.Event], size: int, generation: int | None = None
) -> None:
    """Apply `events` in batches of `size`."""
    for start in range(0, len(events), size):
        await apply(store, events[start : start + size], generation)


async def test_market_rows_round_trip_and_equal_the_pure_projection(store: ReadStore) -> None:
    """Orders, trades and markets read back exactly as the projections computed them."""
    s = scenario()
    await apply_in_batches(store, s.events, 7)
    model = MarketRows()
    model.apply(s.events)
    assert await store.orders([*s.orders.values(), "nobody"]) == model.orders
    assert await store.trades([*s.trades.values(), "nobody"]) == model.trades
    markets = await store.markets()
    assert [m.market_id for m in markets] == [s.market]
    audit = await store.audit(10)
    assert (audit.escrow_count, audit.open_sell_quantity_points) == (0, 0)
    assert audit.pending_trade_quantity_points == 0
    assert audit.in_flight_points == 0


async def test_orders_and_trades_page_newest_first_with_filters(store: ReadStore) -> None:
    """Keyset pages list each placed order once, newest first; filters narrow both listings."""
    s = scenario()
    await apply_in_batches(store, s.events, 5)
    seen, before = [], 0
    while page := await store.list_orders(OrderFilter(), before, 2):
        seen += [row.order_id for row in page]
        before = page[-1].placed_position
    names = {order_id: name for name, order_id in s.orders.items()}
    assert [names[i] for i in seen] == ["reject", "cancel", "ioc", "buy2", "buy1", "sell"]
    acme_sells = await store.list_orders(
        OrderFilter(owner_partner_id="acme", side="SELL", statuses=("CANCELLED", "FILLED")), 0, 10
    )
    assert [names[row.order_id] for row in acme_sells] == ["cancel", "sell"]
    assert await store.list_orders(OrderFilter(account_id=s.buyer, side="SELL"), 0, 10) == []
    trades = {trade_id: name for name, trade_id in s.trades.items()}
    every = await store.list_trades(TradeFilter(market_id=s.market), 0, 10)
    assert [trades[t.trade_id] for t in every] == ["released", "returned", "settled"]
    of_sell = await store.list_trades(TradeFilter(order_id=s.orders["sell"]), 0, 2)
    assert [trades[t.trade_id] for t in of_sell] == ["released", "returned"]
    older = await store.list_trades(
        TradeFilter(order_id=s.orders["sell"]), of_sell[-1].matched_position, 2
    )
    assert [trades[t.trade_id] for t in older] == ["settled"]
    refunds = await store.list_trades(TradeFilter(refund_required_only=True), 0, 10)
    assert [trades[t.trade_id] for t in refunds] == ["released"]
    cancelled = TradeFilter(owner_partner_id="other", account_id=s.seller, statuses=("CANCELLED",))
    assert len(await store.list_trades(cancelled, 0, 10)) == 2
    assert await store.list_trades(TradeFilter(owner_partner_id="nobody"), 0, 10) == []


async def test_books_and_i2_follow_a_partly_applied_log(store: ReadStore) -> None:
    """Midway, the book has the resting orders' levels and the audit finds I2 holding."""
    s = scenario()
    settled_at = next(i for i, e in enumerate(s.events) if e.WhichOneof("payload") == "points_sold")
    await apply_in_batches(store, s.events[: settled_at + 1], 4)
    asks = await store.price_levels(s.market, "SELL", 10)
    assert [(v.price_minor, v.quantity_points, v.order_count) for v in asks] == [(10, 30, 1)]
    assert await store.price_levels(s.market, "BUY", 10) == []
    audit = await store.audit(10)
    assert audit.escrow_count == 0, audit.escrow
    assert audit.open_sell_quantity_points == 30
    assert audit.pending_trade_quantity_points == 30
    assert audit.in_flight_points == 20
    await apply_in_batches(store, s.events[settled_at + 1 :], 3)
    assert await store.price_levels(s.market, "SELL", 10) == []
    sell = (await store.orders([s.orders["sell"]]))[s.orders["sell"]]
    assert quantities(sell) == ("FILLED", 0, 20, 20, 40)


async def test_market_stats_count_trades_not_cancelled_in_the_window(store: ReadStore) -> None:
    """Stats cover trades not cancelled: last of all time, and the window's figures."""
    s = scenario()
    await apply_in_batches(store, s.events, 50)
    settled = (await store.trades([s.trades["settled"]]))[s.trades["settled"]]
    stats = await store.market_stats(s.market, 0, 2**62)
    assert (stats.last_price_minor, stats.last_trade_at_us) == (10, settled.matched_at_us)
    assert (stats.trade_count, stats.volume_points, stats.volume_minor) == (1, 20, 200)
    assert (stats.open_price_minor, stats.high_price_minor, stats.low_price_minor) == (10, 10, 10)
    empty = await store.market_stats(s.market, 0, settled.matched_at_us)
    assert (empty.trade_count, empty.open_price_minor, empty.last_price_minor) == (0, 0, 10)


async def test_a_rebuilt_generation_has_the_same_market_rows(store: ReadStore) -> None:
    """A rebuild cut into other batches compares equal on every market table."""
    s = scenario()
    await apply_in_batches(store, s.events, 6)
    generation = await store.create_generation()
    await apply_in_batches(store, s.events[:20], 1, generation)
    assert await store.count_differences(generation) > 0
    await apply_in_batches(store, s.events[20:], 9, generation)
    assert await store.count_differences(generation) == 0


def _transfer_limit(max_points: int) -> common_pb2.TransactionLimit:
    return common_pb2.TransactionLimit(
        operation=common_pb2.LIMITED_OPERATION_TRANSFER, max_points=max_points
    )


def tiers_and_rules(log: Log) -> list[events_pb2.Event]:
    """A log that sets, changes and clears tiers and sets the program's rules twice."""
    return [
        log.opened("a1", "acme"),
        log.opened("b1", "acme"),
        log.program_rules_set(_transfer_limit(100)),
        log.tier_set("a1", "gold"),
        log.tier_set("b1", "silver"),
        log.minted("a1", 9, after=9),
        log.tier_set("b1", ""),
        log.program_rules_set(
            _transfer_limit(250),
            common_pb2.TransactionLimit(
                operation=common_pb2.LIMITED_OPERATION_MARKET_BUY, tier="gold", step_points=10
            ),
        ),
    ]


async def test_tiers_read_back_on_accounts_and_listings(store: ReadStore) -> None:
    """A tier set shows on the row and in listings; cleared, it is empty; each bumps the version."""
    await apply_in_batches(store, tiers_and_rules(Log()), 3)
    accounts = await store.accounts(["a1", "b1"])
    assert {k: (v.tier, v.version) for k, v in accounts.items()} == {
        "a1": ("gold", 3),
        "b1": ("", 3),
    }
    listed = await store.list_accounts(AccountFilter(owner_partner_id="acme"), "", 10)
    assert [(row.account_id, row.tier) for row in listed] == [("a1", "gold"), ("b1", "")]
    assert listed == [accounts["a1"], accounts["b1"]]
    audit = await store.audit(10)
    assert (audit.account_count, audit.negative_count) == (2, 0)


async def test_the_latest_program_rules_are_read_and_survive_a_restart(
    store: ReadStore, make_read_store: MakeReadStore
) -> None:
    """None before the first change; then the second change at version 2, after reopening too."""
    assert await store.program_rules() is None
    log = Log()
    events = tiers_and_rules(log)
    await apply(store, events[:4])
    first = await store.program_rules()
    assert first is not None
    assert (first.version, first.position) == (1, 3)
    await apply(store, events[4:])
    rules = await store.program_rules()
    assert rules is not None
    assert (rules.version, rules.position) == (2, 8)
    assert rules.set_at_us == events[7].recorded_at.ToMicroseconds()
    assert common_pb2.ProgramRules.FromString(rules.body) == events[7].program_rules_set.rules
    await store.close()
    reopened = make_read_store()
    await reopened.open()
    assert await reopened.program_rules() == rules
    assert (await reopened.accounts(["a1"]))["a1"].tier == "gold"


async def test_a_rebuilt_generation_has_the_same_tiers_and_program_rules(
    store: ReadStore,
) -> None:
    """A rebuild cut into other batches compares equal, program rules and tiers included."""
    events = tiers_and_rules(Log())
    await apply_in_batches(store, events, 8)
    generation = await store.create_generation()
    assert await store.program_rules(generation) is None
    await apply_in_batches(store, events[:7], 2, generation)
    # Only the rules differ now (and the checkpoint, which is not compared).
    assert await store.count_differences(generation) == 2
    await apply_in_batches(store, events[7:], 1, generation)
    assert await store.count_differences(generation) == 0
    rules = await store.program_rules()
    await store.activate_generation(generation)
    assert await store.program_rules() == rules


async def test_an_older_read_store_gets_the_tier_column_and_the_rules_table(
    store: ReadStore, make_read_store: MakeReadStore, read_store_url: str
) -> None:
    """Migration 0003 on a generation at schema 2 keeps its rows, with an empty tier."""
    await seed(store, Log())
    before = await store.accounts(["m1", "a1", "o1"])
    await store.close()
    await _undo_migration_3(read_store_url)
    reopened = make_read_store()
    await reopened.open()
    assert await reopened.accounts(["m1", "a1", "o1"]) == before
    assert {row.tier for row in before.values()} == {""}
    assert await reopened.program_rules() is None
    log = Log()
    log.position = await reopened.checkpoint()
    log.versions = {"account-a1": 3}
    await apply(reopened, [log.tier_set("a1", "gold"), log.program_rules_set()])
    assert (await reopened.accounts(["a1"]))["a1"].tier == "gold"
    rules = await reopened.program_rules()
    assert rules is not None
    assert rules.version == 1


async def _undo_migration_3(url: str) -> None:
    """Take generation 1 of a closed read store back to schema version 2.

    Migration 6 is undone too: it adds a column to the rules table this one drops.
    """
    await run_statements(
        url,
        [
            *UNDO_MIGRATION_6,
            "ALTER TABLE g1_accounts DROP COLUMN tier",
            "DROP TABLE g1_program_rules",
            "DELETE FROM g1_schema_migrations WHERE version = 3",
        ],
    )


# What takes generation 1 from schema version 6 back to 5 (transfer fees).
UNDO_MIGRATION_6 = (
    "ALTER TABLE g1_movements DROP COLUMN fee_points",
    "ALTER TABLE g1_program_rules DROP COLUMN fee_schedule_version",
    "DELETE FROM g1_schema_migrations WHERE version = 6",
)


async def run_statements(url: str, statements: list[str]) -> None:
    """Run raw statements, in order, on the closed read store at `url` (SQLite or PostgreSQL)."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
            for statement in statements:
                connection.execute(statement)
            connection.commit()
        return
    dsn, _, schema = url.partition("?schema=")
    connection = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def _sqlite_error(code: int) -> sqlite3.Error:
    error = sqlite3.OperationalError("sqlite")
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (sqlite3.SQLITE_BUSY, StoreUnavailable),
        (sqlite3.SQLITE_LOCKED, StoreUnavailable),
        (sqlite3.SQLITE_IOERR_FSYNC, StoreUnavailable),
        (sqlite3.SQLITE_FULL, StoreUnavailable),
        (sqlite3.SQLITE_CANTOPEN, StoreUnavailable),
        (sqlite3.SQLITE_READONLY, StoreUnavailable),
        (sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, StoreError),
        (sqlite3.SQLITE_CORRUPT, StoreError),
        (sqlite3.SQLITE_ERROR, StoreError),
    ],
)
def test_sqlite_translation_table(code: int, expected: type[StoreError]) -> None:
    """Each SQLite result code becomes its read-store error."""
    assert type(sqlite_errors.translate(_sqlite_error(code))) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (asyncpg.ConnectionDoesNotExistError("connection lost"), StoreUnavailable),
        (asyncpg.AdminShutdownError("terminating connection"), StoreUnavailable),
        (asyncpg.QueryCanceledError("statement timeout"), StoreUnavailable),
        (asyncpg.TooManyConnectionsError("too many"), StoreUnavailable),
        (asyncpg.SerializationError("serialization"), StoreUnavailable),
        (asyncpg.ReadOnlySQLTransactionError("read-only"), StoreUnavailable),
        (asyncpg.InterfaceError("connection is closed"), StoreUnavailable),
        (ConnectionRefusedError("refused"), StoreUnavailable),
        (TimeoutError("timed out"), StoreUnavailable),
        (asyncpg.UniqueViolationError("duplicate key"), StoreError),
        (asyncpg.UndefinedTableError("no such table"), StoreError),
        (asyncpg.InternalClientError("bug"), StoreError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_postgres_translation_table(error: BaseException, expected: type[StoreError]) -> None:
    """Each asyncpg (or socket) exception becomes its read-store error."""
    assert type(pg_errors.translate(error)) is expected


async def test_an_unreachable_postgres_is_store_unavailable(pg_dsn: str) -> None:
    """Opening a read store on a closed port fails with StoreUnavailable, not a driver error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = open_read_store(f"postgresql://postgres@127.0.0.1:{port}/test?schema=x")
    with pytest.raises(StoreUnavailable):
        await store.open()


async def test_an_unreachable_sqlite_file_is_store_unavailable(tmp_path: Path) -> None:
    """Opening a read store in a missing directory fails with StoreUnavailable."""
    store = open_read_store(f"sqlite:///{tmp_path / 'missing' / 'read.db'}")
    with pytest.raises(StoreUnavailable):
        await store.open()
