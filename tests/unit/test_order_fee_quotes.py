"""Order fee quotes, pure: the market's fee schedule version, quotes, and the placement's check.

The version counts the market's configurations and moves only when a fee changes; a quote is
the fee of one full fill at the limit price, the same the trade computes; an order carrying a
quote of another version is refused with FEE_SCHEDULE_CHANGED (before its hold and when the
book decides it), one carrying another fee is INVALID_ARGUMENT; the quote travels with the
hold, so recovery places the order under the same check; book snapshots keep the version.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pointex.server import limits
from pointex.server.actors import book_snapshots
from pointex.server.domain import account, errors, market_fees, order_book
from pointex.server.domain import trade as trade_model
from pointex.server.domain.account_state import Account
from pointex.server.domain.commands import HoldPoints, ReserveBuy
from pointex.server.domain.events import BuyReserved, PointsHeld
from pointex.server.domain.market_commands import ConfigureMarket, PlaceOrder
from pointex.server.domain.market_events import MarketConfigured, OrderPlaced, TradeMatched
from pointex.server.domain.market_fees import FeeVersion
from pointex.server.domain.order_book import OrderBook, decide, evolve
from pointex.server.domain.processes import placement
from pointex.server.domain.values import (
    AccountKind,
    AccountStatus,
    Caller,
    FeeSchedule,
    Instant,
    Market,
    OrderFeeQuote,
    OrderSide,
    Role,
    Span,
    TimeInForce,
)
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import RecordedEvent, Snapshot

ACME = Caller(Role.PARTNER, "acme")
BUY, SELL = OrderSide.BUY, OrderSide.SELL
# 1% + 1.00 to the buyer, 0.5% to the seller.
MARKET = Market(
    "PTS-CNY", "CNY", FeeSchedule(100, 100), FeeSchedule(50, 0), Span(900_000), 10_000,
    10**9, "sandbox", True,
)  # fmt: skip


def _configured(*markets: Market) -> OrderBook:
    """Return a book after one MarketConfigured per market, in order."""
    book = OrderBook()
    for market in markets:
        for event in decide(book, ConfigureMarket(market)):
            evolve(book, event)
    return book


def _order(
    side: OrderSide, quantity: int = 30, price: int = 125, quote: OrderFeeQuote | None = None
) -> PlaceOrder:
    return PlaceOrder(
        "ord-1", "acme:a", "PTS-CNY", side, quantity, price, TimeInForce.GTC, "", quote
    )


def test_the_version_moves_only_when_a_fee_changes() -> None:
    """1 at the first configuration; closing or a new window keeps it; either fee moves it."""
    closed = dataclasses.replace(MARKET, open=False)
    buyer = dataclasses.replace(MARKET, buyer_fee=FeeSchedule(200, 100))
    seller = dataclasses.replace(buyer, seller_fee=FeeSchedule(50, 1))
    window = dataclasses.replace(seller, payment_window=Span(60_000))
    versions = []
    book = OrderBook()
    assert book.fee_version == market_fees.NOT_CONFIGURED
    for market in (MARKET, closed, MARKET, buyer, seller, window, window):
        for event in decide(book, ConfigureMarket(market)):
            evolve(book, event)
        versions.append((book.fee_version.configurations, book.fee_version.schedule_version))
    # The same configuration again records nothing, so it counts nothing either.
    assert versions == [(1, 1), (2, 1), (3, 1), (4, 4), (5, 5), (6, 5), (6, 5)]


def test_configured_is_the_one_rule_both_sides_apply() -> None:
    """The pure step: a first configuration is a change; equal fees keep the version."""
    fees = market_fees.fees_of(MARKET)
    assert market_fees.configured(market_fees.NOT_CONFIGURED, None, fees) == FeeVersion(1, 1)
    assert market_fees.configured(FeeVersion(4, 2), fees, fees) == FeeVersion(5, 2)
    other = (FeeSchedule(100, 100), FeeSchedule(51, 0))
    assert market_fees.configured(FeeVersion(4, 2), fees, other) == FeeVersion(5, 5)


def test_a_quote_is_the_fee_of_one_full_fill_at_the_limit_price() -> None:
    """BUY: 1% rounded up + 1.00 on the notional, added; SELL: 0.5% rounded up, deducted."""
    book = _configured(MARKET)
    bought = market_fees.quote(MARKET, book.fee_version, BUY, 30, 125)
    assert bought.quote == OrderFeeQuote(38 + 100, 1)  # ceil(3750 * 100 / 10000) = 38.
    assert (bought.schedule, bought.notional_minor, bought.total_minor) == (
        MARKET.buyer_fee,
        3750,
        3750 + 138,
    )
    sold = market_fees.quote(MARKET, book.fee_version, SELL, 30, 125)
    assert sold.quote == OrderFeeQuote(19, 1)  # ceil(3750 * 50 / 10000) = 19.
    assert (sold.schedule, sold.total_minor) == (MARKET.seller_fee, 3750 - 19)


def test_a_sellers_quote_never_exceeds_the_notional() -> None:
    """A fixed seller's fee above the notional is capped, as the trade caps it: proceeds ≥ 0."""
    steep = dataclasses.replace(MARKET, seller_fee=FeeSchedule(0, 500))
    sold = market_fees.quote(steep, FeeVersion(1, 1), SELL, 2, 100)
    assert (sold.quote.fee_minor, sold.total_minor) == (200, 0)


@given(
    st.sampled_from([BUY, SELL]),
    st.integers(1, 10**6),
    st.integers(1, 10**4),
    st.integers(0, 10_000),
    st.integers(0, 10**4),
)
def test_a_quote_is_what_the_trade_of_a_full_fill_at_the_limit_charges(
    side: OrderSide, quantity: int, price: int, rate_bps: int, fixed_minor: int
) -> None:
    """The quote and the trade use one formula: a fill in one trade at the limit pays the quote."""
    fee = FeeSchedule(rate_bps, fixed_minor)
    market = dataclasses.replace(MARKET, buyer_fee=fee, seller_fee=fee)
    quoted = market_fees.quote(market, FeeVersion(1, 1), side, quantity, price)
    match = TradeMatched(
        "t1", "PTS-CNY", "b1", "s1", "acme:b", "acme:s", side.opposite, quantity, price, 0, 0
    )
    created = trade_model.created_from(match, market, Instant(0))
    charged = created.buyer_fee_minor if side is BUY else created.seller_fee_minor
    assert quoted.quote.fee_minor == charged
    paid = created.amount_due_minor if side is BUY else created.seller_proceeds_minor
    assert quoted.total_minor == paid


def test_an_order_with_the_quote_in_force_is_placed() -> None:
    """The quote of this order under this version passes, also after a change of `open` only."""
    book = _configured(MARKET)
    quote = market_fees.quote(MARKET, book.fee_version, SELL, 30, 125).quote
    assert order_book.check_order(book, _order(SELL, quote=quote)) == MARKET
    evolve(book, MarketConfigured(dataclasses.replace(MARKET, max_price_minor=20_000)))
    events = decide(book, _order(SELL, quote=quote))
    assert isinstance(events[0], OrderPlaced)


def test_a_stale_quote_is_refused_with_the_version_and_fee_now() -> None:
    """After the buyer's fee changed, a quote of version 1 is FEE_SCHEDULE_CHANGED; no event."""
    book = _configured(MARKET)
    quote = market_fees.quote(MARKET, book.fee_version, BUY, 30, 125).quote
    evolve(book, MarketConfigured(dataclasses.replace(MARKET, buyer_fee=FeeSchedule(0, 7))))
    for ask in (order_book.check_order, decide):
        with pytest.raises(errors.FailedPrecondition) as caught:
            ask(book, _order(BUY, quote=quote))
        assert caught.value.reason == errors.FEE_SCHEDULE_CHANGED
        assert dict(caught.value.metadata) == {"schedule_version": "2", "fee_minor": "7"}
    assert not book.orders  # Nothing was placed.


def test_a_quote_of_another_order_is_invalid() -> None:
    """Right version, fee of another side or quantity: INVALID_ARGUMENT naming the fee."""
    book = _configured(MARKET)
    of_a_buy = market_fees.quote(MARKET, book.fee_version, BUY, 30, 125).quote
    for order in (_order(SELL, quote=of_a_buy), _order(BUY, 31, quote=of_a_buy)):
        with pytest.raises(errors.InvalidArgument) as caught:
            order_book.check_order(book, order)
        assert caught.value.reason == errors.INVALID_FIELD
        assert caught.value.metadata["field"] == "fee_quote.fee_minor"


def test_bounds_are_checked_before_the_quote() -> None:
    """A quantity above the market's maximum is AMOUNT_TOO_LARGE whatever the quote says."""
    book = _configured(MARKET)
    with pytest.raises(errors.InvalidArgument) as caught:
        order_book.check_order(book, _order(BUY, 10**9 + 1, quote=OrderFeeQuote(0, 9)))
    assert (caught.value.reason, caught.value.metadata["field"]) == (
        errors.AMOUNT_TOO_LARGE,
        "quantity_points",
    )
    huge = dataclasses.replace(MARKET, max_price_minor=limits.price_minor_max)
    with pytest.raises(errors.InvalidArgument) as overflow:
        order_book.check_bounds(huge, limits.points_amount_max // 1000, limits.price_minor_max)
    assert overflow.value.reason == errors.NOTIONAL_OVERFLOW


def _account(available: int) -> Account:
    return Account("acme:a", AccountKind.MEMBER, "acme", AccountStatus.OPEN, available, 0)


@pytest.mark.parametrize("side", [SELL, BUY])
def test_the_quote_travels_with_the_hold_so_recovery_checks_it(side: OrderSide) -> None:
    """Hold or reservation carries the quote; the order recovery rebuilds from it holds it too."""
    quote = OrderFeeQuote(19, 1)
    order = _order(side, quote=quote)
    hold = placement.start(ACME, order).command
    assert isinstance(hold, HoldPoints | ReserveBuy)
    assert hold.fee_quote == quote
    (held,) = account.decide(_account(100), hold)
    assert isinstance(held, PointsHeld | BuyReserved)
    assert held.fee_quote == quote
    stored = codec.encode(held)
    decoded = codec.decode(RecordedEvent(1, "account-acme:a", 2, 0, *stored[:3], b"", 0))
    assert decoded == held
    recovered = placement.decide(placement.evolve(None, decoded), placement.Resumed())
    assert recovered == placement.Place(order)


def test_a_book_snapshot_keeps_the_fee_version_and_an_older_schema_is_replayed() -> None:
    """Schema 3 restores (configurations, version); a schema-2 snapshot is not read."""
    changed = dataclasses.replace(MARKET, seller_fee=FeeSchedule(60, 0))
    book = _configured(MARKET, changed, dataclasses.replace(changed, open=False))
    assert book.fee_version == FeeVersion(3, 2)
    snapshot = book_snapshots.to_snapshot("market-PTS-CNY", book, 3, 30)
    assert snapshot is not None
    assert snapshot.schema_version == 3
    restored = book_snapshots.from_snapshot(snapshot)
    assert restored is not None
    assert (restored[0].fee_version, restored[0].market) == (FeeVersion(3, 2), book.market)
    data = json.loads(snapshot.data)
    del data["fee_version"]
    older = Snapshot(
        snapshot.stream_id,
        snapshot.stream_version,
        snapshot.type,
        2,
        json.dumps(data).encode(),
    )
    assert book_snapshots.from_snapshot(older) is None
