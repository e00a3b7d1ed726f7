"""`pointex order|trade|book|markets`: trade points in a market's order book.

Prices are integers in minor units of the market's currency per point (125 in PTS-CNY is
1.25 CNY a point). Tables show them split into major and minor units; JSON keeps the
integers. `order quote` states an order's fee before it is placed, as a quote that
`order place --fee-quote` holds the market's fee schedule to.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Final

from rich.text import Text

from pointex.cli import formatting
from pointex.cli.errors import EXIT_OK
from pointex.cli.output import Cell, Output, rows_caption, status_text, to_json
from pointex.cli.registry import (
    Listing,
    Subcommands,
    add_after,
    add_limit,
    bounded_int,
    enum_type,
    fee_and_version,
    leaf,
    positive_int,
    request_id,
    show_pages,
)
from pointex.cli.session import Session
from pointex.v1 import command_service_pb2 as cmd
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qry

DEFAULT_MARKET: Final = "PTS-CNY"
_SIDE = common_pb2.OrderSide.DESCRIPTOR
_TIF = common_pb2.TimeInForce.DESCRIPTOR
_ORDER_STATUS = common_pb2.OrderStatus.DESCRIPTOR
_TRADE_STATUS = common_pb2.TradeStatus.DESCRIPTOR
_BOOK_DEPTH_MAX: Final = 100  # The server's bound on levels per side.


def register(group: Subcommands) -> None:
    """Add `order`, `trade`, `book` and `markets`."""
    _register_orders(group)
    _register_trades(group)
    book = leaf(group, "book", "show a market's order book: price levels per side", _book)
    book.add_argument("market_id", nargs="?", default=DEFAULT_MARKET, help="default %(default)s")
    book.add_argument(
        "--depth", type=bounded_int(1, _BOOK_DEPTH_MAX), default=10, help="levels per side"
    )
    add_after(book)
    markets = leaf(group, "markets", "list the markets: currency, fees, limits", _markets)
    add_after(markets)


def _register_orders(group: Subcommands) -> None:
    parser = group.add_parser("order", help="place, cancel and show orders")
    actions = parser.add_subparsers(title="order commands", metavar="COMMAND", required=True)
    place = leaf(actions, "place", "place a limit order", _place, mutating=True)
    place.add_argument("account_id", metavar="ACCOUNT")
    place.add_argument("side", type=enum_type(_SIDE), help="buy|sell")
    place.add_argument("quantity_points", type=positive_int, metavar="POINTS")
    place.add_argument(
        "limit_price_minor", type=positive_int, metavar="PRICE", help="minor units per point"
    )
    place.add_argument("--market", default=DEFAULT_MARKET, help="default %(default)s")
    place.add_argument(
        "--tif", type=enum_type(_TIF), default=common_pb2.TIME_IN_FORCE_GTC, help="gtc|ioc"
    )
    place.add_argument("--client-order-id", default="", help="your own reference")
    place.add_argument(
        "--fee-quote",
        type=_fee_quote,
        default=None,
        metavar="FEE:VERSION",
        help="the quote `order quote` printed for these terms (the fee in minor units and the "
        "market's fee schedule version, e.g. 101:1): the order is placed only under that "
        "schedule, or refused with FEE_SCHEDULE_CHANGED and nothing held if it changed since "
        "(default: each trade follows the schedule in force when it matches)",
    )

    quote = leaf(
        actions,
        "quote",
        "an order's fee now (one full fill at its limit price), as a quote to place it with",
        _quote,
    )
    quote.add_argument("account_id", metavar="ACCOUNT")
    quote.add_argument("side", type=enum_type(_SIDE), help="buy|sell")
    quote.add_argument("quantity_points", type=positive_int, metavar="POINTS")
    quote.add_argument(
        "limit_price_minor", type=positive_int, metavar="PRICE", help="minor units per point"
    )
    quote.add_argument("--market", default=DEFAULT_MARKET, help="default %(default)s")
    add_after(quote)

    cancel = leaf(actions, "cancel", "cancel a resting order", _cancel, mutating=True)
    cancel.add_argument("order_id", metavar="ORDER")
    cancel.add_argument("--market", default=DEFAULT_MARKET, help="default %(default)s")

    get = leaf(actions, "get", "show one order", _get_order)
    get.add_argument("order_id", metavar="ORDER")
    add_after(get)

    listing = leaf(actions, "list", "list orders, newest first", _list_orders)
    listing.add_argument("--account", default="")
    listing.add_argument("--market", default="")
    listing.add_argument("--status", type=enum_type(_ORDER_STATUS), action="append", default=[])
    listing.add_argument("--side", type=enum_type(_SIDE), default=common_pb2.ORDER_SIDE_UNSPECIFIED)
    add_limit(listing)
    add_after(listing)


def _register_trades(group: Subcommands) -> None:
    parser = group.add_parser("trade", help="show trades, refund a purchase")
    actions = parser.add_subparsers(title="trade commands", metavar="COMMAND", required=True)
    refund = leaf(
        actions,
        "refund",
        "refund a purchase within the program's cooling-off window (buyer's partner, operator)",
        _refund,
        mutating=True,
    )
    refund.add_argument("trade_id", metavar="TRADE")
    get = leaf(actions, "get", "show one trade", _get_trade)
    get.add_argument("trade_id", metavar="TRADE")
    add_after(get)
    listing = leaf(actions, "list", "list trades, newest first", _list_trades)
    listing.add_argument("--account", default="")
    listing.add_argument("--market", default="")
    listing.add_argument("--order", default="")
    listing.add_argument("--status", type=enum_type(_TRADE_STATUS), action="append", default=[])
    listing.add_argument("--refund-required", action="store_true", help="only flagged trades")
    add_limit(listing)
    add_after(listing)


def _place(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    request = cmd.PlaceOrderRequest(
        request_id=rid,
        account_id=args.account_id,
        market_id=args.market,
        side=args.side,
        quantity_points=args.quantity_points,
        limit_price_minor=args.limit_price_minor,
        time_in_force=args.tif,
        client_order_id=args.client_order_id,
        fee_quote=args.fee_quote,
    )
    reply = session.mutate(session.commands.PlaceOrder, request, rid)
    if out.json_mode:
        out.json({"request_id": rid, **to_json(reply)})
        return EXIT_OK
    out.fields(f"order {reply.order.order_id}", order_fields(reply.order))
    if reply.trades:
        caption = f"{len(reply.trades)} of {reply.trade_count} trades shown"
        out.table("trades matched", _TRADE_COLUMNS, map(_trade_row, reply.trades), caption)
    out.position(reply.position, rid)
    return EXIT_OK


def _fee_quote(text: str) -> common_pb2.OrderFeeQuote:
    """Read `--fee-quote FEE:VERSION` for argparse (the fee in minor units)."""
    fee, version = fee_and_version(text, "order quote", "101:1")
    return common_pb2.OrderFeeQuote(fee_minor=fee, schedule_version=version)


def _quote(session: Session, out: Output, args: argparse.Namespace) -> int:
    request = qry.QuoteOrderRequest(
        min_position=args.after,
        account_id=args.account_id,
        market_id=args.market,
        side=args.side,
        quantity_points=args.quantity_points,
        limit_price_minor=args.limit_price_minor,
    )
    reply = session.read(session.queries.QuoteOrder, request)
    if out.json_mode:
        out.json(to_json(reply))
        return EXIT_OK
    fee, version, currency = reply.quote.fee_minor, reply.quote.schedule_version, reply.currency
    side = formatting.enum_label(_SIDE, args.side)
    pairs: list[tuple[str, Cell]] = [
        ("market", args.market),
        ("account", args.account_id),
        ("side", side),
        ("quantity", formatting.points(args.quantity_points)),
        ("limit price", formatting.money(args.limit_price_minor, currency)),
        ("notional", formatting.money(reply.notional_minor, currency)),
        ("fee schedule", _fee(reply.schedule, currency)),
        ("fee", formatting.money(fee, currency)),
        ("pays at most" if args.side == common_pb2.ORDER_SIDE_BUY else "receives at least",
         formatting.money(reply.total_minor, currency)),
        ("schedule version", str(version)),
        ("as of", formatting.position_text(reply.as_of)),
    ]  # fmt: skip
    out.fields("order quote (one full fill at the limit price)", pairs)
    out.line(
        f"to place it under this fee schedule: pointex order place {args.account_id} "
        f"{side.lower()} {args.quantity_points} {args.limit_price_minor} --market {args.market} "
        f"--fee-quote {fee}:{version}"
    )
    return EXIT_OK


def _cancel(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    request = cmd.CancelOrderRequest(request_id=rid, market_id=args.market, order_id=args.order_id)
    reply = session.mutate(session.commands.CancelOrder, request, rid)
    if out.json_mode:
        out.json({"request_id": rid, **to_json(reply)})
        return EXIT_OK
    out.line(
        f"cancelled {formatting.points(reply.cancelled_quantity_points)} points of order "
        f"{args.order_id}; released {formatting.points(reply.released_points)} points"
    )
    out.position(reply.position, rid)
    return EXIT_OK


def _refund(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    request = cmd.RefundPurchaseRequest(request_id=rid, trade_id=args.trade_id)
    reply = session.mutate(session.commands.RefundPurchase, request, rid)
    if out.json_mode:
        out.json({"request_id": rid, **to_json(reply)})
        return EXIT_OK
    available = formatting.points(reply.buyer_available_points)
    if reply.trade_status == common_pb2.TRADE_STATUS_REFUNDED:
        said = f"refunded trade {args.trade_id}: the points went back to the seller"
    elif reply.trade_status == common_pb2.TRADE_STATUS_REFUNDING:
        said = f"refund of trade {args.trade_id} under way: the provider is asked again later"
    else:
        said = (
            f"the provider declined the refund of trade {args.trade_id} ({reply.declined_reason})"
        )
    out.line(f"{said}; buyer available {available}")
    out.position(reply.position, rid)
    return EXIT_OK


def _get_order(session: Session, out: Output, args: argparse.Namespace) -> int:
    request = qry.GetOrderRequest(min_position=args.after, order_id=args.order_id)
    reply = session.read(session.queries.GetOrder, request)
    if out.json_mode:
        out.json(to_json(reply))
        return EXIT_OK
    pairs = [*order_fields(reply.order), ("as of", formatting.position_text(reply.as_of))]
    out.fields(f"order {reply.order.order_id}", pairs)
    return EXIT_OK


def order_fields(order: common_pb2.Order) -> list[tuple[str, Cell]]:
    """Return an order's fields as (name, value) pairs for a record table."""
    return [
        ("market", order.market_id),
        ("account", order.account_id),
        ("side", formatting.enum_label(_SIDE, order.side)),
        ("time in force", formatting.enum_label(_TIF, order.time_in_force)),
        ("status", status_text(formatting.enum_label(_ORDER_STATUS, order.status))),
        ("quantity", formatting.points(order.quantity_points)),
        ("limit price", formatting.money(order.limit_price_minor, order.currency)),
        ("open", formatting.points(order.open_quantity_points)),
        ("filled", formatting.points(order.filled_quantity_points)),
        ("settled", formatting.points(order.settled_quantity_points)),
        ("cancelled", formatting.points(order.cancelled_quantity_points)),
        ("client order id", order.client_order_id or "-"),
        ("placed", formatting.timestamp(order.placed_at)),
    ]


def _list_orders(session: Session, out: Output, args: argparse.Namespace) -> int:
    def request(token: str, size: int) -> qry.ListOrdersRequest:
        return qry.ListOrdersRequest(
            min_position=args.after,
            account_id=args.account,
            market_id=args.market,
            statuses=args.status,
            side=args.side,
            page_size=size,
            page_token=token,
        )

    return show_pages(session, out, _ORDERS, request, limit=args.limit, title="orders")


def _order_row(order: common_pb2.Order) -> Sequence[Cell]:
    return (
        order.order_id,
        order.market_id,
        order.account_id,
        formatting.enum_label(_SIDE, order.side),
        status_text(formatting.enum_label(_ORDER_STATUS, order.status)),
        formatting.points(order.quantity_points),
        formatting.points(order.filled_quantity_points),
        formatting.money(order.limit_price_minor, order.currency),
    )


_ORDERS: Final[Listing[common_pb2.Order]] = Listing(
    rpc="ListOrders",
    items="orders",
    doing="listing orders",
    columns=("order", "market", "account", "side", "status", "quantity#", "filled#", "price#"),
    row=_order_row,
)


_TRADE_COLUMNS: Final = ("trade", "market", "status", "quantity#", "price#", "amount due#")


def _trade_row(trade: common_pb2.Trade) -> Sequence[Cell]:
    return (
        trade.trade_id,
        trade.market_id,
        status_text(formatting.enum_label(_TRADE_STATUS, trade.status)),
        formatting.points(trade.quantity_points),
        formatting.money(trade.price_minor, trade.currency),
        formatting.money(trade.amount_due_minor, trade.currency),
    )


_TRADES: Final[Listing[common_pb2.Trade]] = Listing(
    rpc="ListTrades", items="trades", doing="listing trades", columns=_TRADE_COLUMNS, row=_trade_row
)


def _get_trade(session: Session, out: Output, args: argparse.Namespace) -> int:
    request = qry.GetTradeRequest(min_position=args.after, trade_id=args.trade_id)
    reply = session.read(session.queries.GetTrade, request)
    if out.json_mode:
        out.json(to_json(reply))
        return EXIT_OK
    trade = reply.trade
    pairs: list[tuple[str, Cell]] = [
        ("market", trade.market_id),
        ("status", status_text(formatting.enum_label(_TRADE_STATUS, trade.status))),
        ("buyer", trade.buyer_account_id or "-"),
        ("seller", trade.seller_account_id or "-"),
        ("quantity", formatting.points(trade.quantity_points)),
        ("price", formatting.money(trade.price_minor, trade.currency)),
        ("notional", formatting.money(trade.notional_minor, trade.currency)),
        ("amount due", formatting.money(trade.amount_due_minor, trade.currency)),
        ("seller proceeds", formatting.money(trade.seller_proceeds_minor, trade.currency)),
        ("payment deadline", formatting.timestamp(trade.payment_deadline)),
        ("payment", trade.payment_id or "-"),
        ("refund required", "yes" if trade.refund_required else "no"),
        ("matched", formatting.timestamp(trade.matched_at)),
        ("as of", formatting.position_text(reply.as_of)),
    ]
    out.fields(f"trade {trade.trade_id}", pairs)
    return EXIT_OK


def _list_trades(session: Session, out: Output, args: argparse.Namespace) -> int:
    def request(token: str, size: int) -> qry.ListTradesRequest:
        return qry.ListTradesRequest(
            min_position=args.after,
            account_id=args.account,
            market_id=args.market,
            order_id=args.order,
            statuses=args.status,
            refund_required_only=args.refund_required,
            page_size=size,
            page_token=token,
        )

    return show_pages(session, out, _TRADES, request, limit=args.limit, title="trades")


def _book(session: Session, out: Output, args: argparse.Namespace) -> int:
    request = qry.GetOrderBookRequest(
        min_position=args.after, market_id=args.market_id, depth=args.depth
    )
    reply = session.read(session.queries.GetOrderBook, request)
    if out.json_mode:
        out.json(to_json(reply))
        return EXIT_OK
    # Asks are printed best last and bids best first, so the spread sits in the middle.
    rows: list[Sequence[Cell]] = [
        _level_row("SELL", "red", level, reply.currency) for level in reversed(reply.asks)
    ]
    rows += [_level_row("BUY", "green", level, reply.currency) for level in reply.bids]
    columns = ("side", "price#", "quantity#", "orders#")
    out.table(f"order book {reply.market_id}", columns, rows, rows_caption(len(rows), reply.as_of))
    return EXIT_OK


def _level_row(side: str, style: str, level: qry.PriceLevel, currency: str) -> Sequence[Cell]:
    return (
        Text(side, style=style),
        formatting.money(level.price_minor, currency),
        formatting.points(level.quantity_points),
        str(level.order_count),
    )


def _markets(session: Session, out: Output, args: argparse.Namespace) -> int:
    reply = session.read(
        session.queries.ListMarkets, qry.ListMarketsRequest(min_position=args.after)
    )
    if out.json_mode:
        out.json(to_json(reply))
        return EXIT_OK
    columns = (
        "market",
        "currency",
        "open",
        "buyer fee",
        "seller fee",
        "fee version#",
        "max price#",
        "provider",
    )
    rows = [
        (
            market.market_id,
            market.currency,
            status_text("OPEN" if market.open else "CLOSED"),
            _fee(market.buyer_fee, market.currency),
            _fee(market.seller_fee, market.currency),
            str(market.fee_schedule_version),
            formatting.money(market.max_price_minor, market.currency),
            market.provider_id,
        )
        for market in reply.markets
    ]
    out.table("markets", columns, rows, caption=rows_caption(len(rows), reply.as_of))
    return EXIT_OK


def _fee(fee: common_pb2.FeeSchedule, currency: str) -> str:
    """Return a fee schedule as `<bps> bps + <fixed>`; basis points stay integers."""
    return f"{fee.rate_bps} bps + {formatting.money(fee.fixed_minor, currency)}"
