"""Project a batch of feed events into the row changes of one read-store transaction.

The caller loads the rows the batch touches (`keys_of`: accounts, orders, trades, the
pending issues it activates or takes back, the points in flight it returns, whose fee it
credits or whose refund it settles, the program's rules when the batch changes them, and the
markets when it configures one; then the orders of the loaded trades, `order_ids_of`) and
passes them in; the batch works on copies and returns every change at once (`Changes`).
Events this release does not project (idempotency records, transfer process steps) still
count: the checkpoint passes them.
An account stream's event it does not know stops the batch instead (`UnknownAccountEvent`).

Account streams carry the balances after each event, so every movement's balance is also
checked against the event (paired assertions): a mismatch is a bug, and the projection stops
at that position rather than serve wrong numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pointex.server.domain import streams
from pointex.server.query.projections import fees, refunds
from pointex.server.query.projections.handlers import HANDLERS
from pointex.server.query.projections.state import BatchState, at_us, position_of
from pointex.server.query.readstore.market_rows import LevelRow, MarketRow, OrderRow, TradeRow
from pointex.server.query.readstore.port import (
    AccountRow,
    Changes,
    InFlightRow,
    PendingIssueRow,
    ProgramRulesRow,
)
from pointex.v1 import events_pb2

# The schema version of every payload type this code projects.
_SCHEMA_VERSION = 1


class UnknownSchemaVersion(Exception):
    """An event has a payload schema newer than this release projects; upgrade to go on."""


class UnknownAccountEvent(Exception):
    """An account stream carries an event this release does not project; upgrade to go on.

    Every event of an account stream changes the account (its version, and most its points),
    so passing over one would leave its balance silently wrong, or stop the projection only at
    the account's next event, far from the cause.
    """


# Payload fields naming the rows an event needs (orders and trades carry their owners).
_ACCOUNT_FIELDS = ("account_id", "buyer_account_id", "seller_account_id")
_ORDER_FIELDS = ("order_id", "buy_order_id", "sell_order_id")


@dataclass(frozen=True, slots=True)
class Keys:
    """The rows projecting a batch needs, without repeats."""

    account_ids: list[str]
    order_ids: list[str]
    trade_ids: list[str]
    program_rules: bool = False  # the batch changes them: load the rules in force
    pending_issue_ids: list[str] = field(default_factory=list)  # transfer ids
    # Points in flight the batch settles and checks (returns, fees credited, refunds made or
    # declined): process ids.
    in_flight_ids: list[str] = field(default_factory=list)
    markets: bool = False  # the batch configures a market: load the stored markets


def keys_of(events: Sequence[events_pb2.Event]) -> Keys:
    """Return the accounts, orders and trades whose rows projecting `events` needs."""
    accounts: dict[str, None] = {}
    orders: dict[str, None] = {}
    trades: dict[str, None] = {}
    program_rules = False
    markets = False
    pending_issues: dict[str, None] = {}
    in_flight: dict[str, None] = {}
    for event in events:
        account_id = streams.entity_of(event.stream_id, streams.ACCOUNT)
        if account_id is not None:
            accounts[account_id] = None
        field_name = event.WhichOneof("payload")
        if field_name is None or field_name not in HANDLERS:
            continue
        program_rules = program_rules or field_name == "program_rules_set"
        markets = markets or field_name == "market_configured"
        payload = getattr(event, field_name)
        pending_issue_id = _pending_issue_of(payload)
        if pending_issue_id:
            pending_issues[pending_issue_id] = None
        in_flight.update(dict.fromkeys(fees.in_flight_ids_of(payload)))
        in_flight.update(dict.fromkeys(refunds.in_flight_ids_of(payload)))
        account_fields, order_fields, names_trade = _fields_naming_rows(field_name)
        for name in account_fields:
            if value := getattr(payload, name):
                accounts[value] = None
        for name in order_fields:
            if value := getattr(payload, name):
                orders[value] = None
        if names_trade and payload.trade_id:
            trades[payload.trade_id] = None
    return Keys(
        list(accounts),
        list(orders),
        list(trades),
        program_rules,
        list(pending_issues),
        list(in_flight),
        markets=markets,
    )


@functools.cache
def _fields_naming_rows(field_name: str) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """Return a payload's fields naming accounts and orders, and whether it names a trade."""
    payload_type = events_pb2.Event.DESCRIPTOR.fields_by_name[field_name].message_type
    assert payload_type is not None, field_name  # every payload is a message
    known = payload_type.fields_by_name
    return (
        tuple(name for name in _ACCOUNT_FIELDS if name in known),
        tuple(name for name in _ORDER_FIELDS if name in known),
        "trade_id" in known,
    )


def _pending_issue_of(payload: object) -> str:
    """Return the issue whose pending points an event activates or takes back, or ""."""
    if isinstance(payload, events_pb2.PointsActivated):
        return payload.transfer_id
    if isinstance(payload, events_pb2.PointsDebited):
        return payload.pending_transfer_id
    return ""


def account_ids_of(events: Sequence[events_pb2.Event]) -> list[str]:
    """Return the accounts whose rows projecting `events` needs, without repeats."""
    return keys_of(events).account_ids


def order_ids_of(trades: Iterable[TradeRow]) -> list[str]:
    """Return the orders of `trades` (a trade's settlement changes both)."""
    return [order_id for t in trades for order_id in (t.buy_order_id, t.sell_order_id)]


def project_batch(
    events: Sequence[events_pb2.Event],
    accounts: Mapping[str, AccountRow],
    after_position: int,
    *,
    orders: Mapping[str, OrderRow] | None = None,
    trades: Mapping[str, TradeRow] | None = None,
    program_rules: ProgramRulesRow | None = None,
    pending_issues: Mapping[str, PendingIssueRow] | None = None,
    in_flight: Mapping[str, InFlightRow] | None = None,
    markets: Mapping[str, MarketRow] | None = None,
) -> Changes:
    """Return the changes `events` (consecutive, after `after_position`) make to the rows.

    `program_rules` are the rules in force before the batch (None: never set), needed when
    `keys_of(events).program_rules`; `pending_issues` are the stored rows of
    `keys_of(events).pending_issue_ids`, `in_flight` those of `keys_of(events).in_flight_ids`,
    `markets` every stored market when `keys_of(events).markets` (a market configured again
    counts on from its row).
    """
    assert events, "an empty batch changes nothing"
    batch = BatchState(
        accounts=dict(accounts),
        orders=dict(orders or {}),
        trades=dict(trades or {}),
        program_rules=program_rules,
        pending_issues=dict(pending_issues or {}),
        pending_issues_stored=frozenset(pending_issues or {}),
        in_flight=dict(in_flight or {}),
        markets=dict(markets or {}),
    )
    expected = after_position
    for event in events:
        position = position_of(event)
        # The feed is gap-free and in order when unfiltered; a hole here is a bug upstream.
        assert position == expected + 1, (expected, position)
        expected = position
        field_name = event.WhichOneof("payload")
        handler = HANDLERS.get(field_name or "")
        if handler is None:
            if streams.entity_of(event.stream_id, streams.ACCOUNT) is not None:
                raise UnknownAccountEvent(f"{event.type} on {event.stream_id} at {position}")
            continue
        if event.schema_version != _SCHEMA_VERSION:
            raise UnknownSchemaVersion(f"{event.type} v{event.schema_version} at {position}")
        batch.position = position
        batch.at_us = at_us(event)
        handler(batch, event, getattr(event, field_name or ""))
    pending_kept, pending_ended = _pending_issue_changes(batch)
    changes = Changes(
        after_position=after_position,
        position=expected,
        events=len(events),
        accounts=tuple(batch.accounts[account_id] for account_id in batch.changed),
        movements=tuple(batch.movements),
        notifications=tuple(batch.notifications),
        in_flight_added=tuple(batch.in_flight_added.values()),
        in_flight_removed=tuple(batch.in_flight_removed),
        minted_points=batch.minted_points,
        burned_points=batch.burned_points,
        expired_points=batch.expired_points,
        markets=tuple(batch.markets[market_id] for market_id in batch.markets_changed),
        orders=tuple(batch.orders[order_id] for order_id in batch.orders_changed),
        trades=tuple(batch.trades[trade_id] for trade_id in batch.trades_changed),
        levels=tuple(
            LevelRow(market_id, side, price, quantity, count)
            for (market_id, side, price), (quantity, count) in batch.levels.items()
            if (quantity, count) != (0, 0)
        ),
        escrow_added=tuple(batch.escrow_added.values()),
        escrow_removed=tuple(batch.escrow_removed),
        program_rules=batch.program_rules if batch.program_rules_changed else None,
        pending_issues=pending_kept,
        pending_issues_removed=pending_ended,
    )
    changes.check()
    return changes


def _pending_issue_changes(
    batch: BatchState,
) -> tuple[tuple[PendingIssueRow, ...], tuple[str, ...]]:
    """Return the pending issues to write and the stored ones that ended (0 left)."""
    changed = [batch.pending_issues[transfer_id] for transfer_id in batch.pending_issues_changed]
    kept = tuple(row for row in changed if row.amount_points > 0)
    # An issue that arrived and ended within the batch was never stored: nothing to delete.
    ended = tuple(
        row.transfer_id
        for row in changed
        if row.amount_points == 0 and row.transfer_id in batch.pending_issues_stored
    )
    return kept, ended
