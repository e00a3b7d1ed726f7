"""Market and trade feed events for the query side's tests, built by hand as the feed has them.

`MarketLog` extends `Log` with one builder per market event; each takes the figures the event
states (balances and open quantities after it), so a test spells out what it expects.
"""

from __future__ import annotations

import uuid

from google.protobuf import duration_pb2

from pointex.v1 import common_pb2, errors_pb2, events_pb2
from tests.feed_events import Log

CURRENCY = "CNY"
PAYMENT_WINDOW_S = 900


def new_id(prefix: str) -> str:
    """Return a random id with a readable prefix."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class MarketLog(Log):
    """A `Log` that also writes market and trade streams."""

    def market(self, market_id: str) -> events_pb2.Event:
        """MarketConfigured: open, 1% buyer fee, no seller fee."""
        market = common_pb2.Market(
            market_id=market_id,
            currency=market_id.rsplit("-", 1)[-1],
            buyer_fee=common_pb2.FeeSchedule(rate_bps=100),
            payment_window=duration_pb2.Duration(seconds=PAYMENT_WINDOW_S),
            max_price_minor=1_000_000,
            max_quantity_points=1_000_000,
            provider_id="sandbox",
            open=True,
        )
        payload = events_pb2.MarketConfigured(market=market)
        return self.event(f"market-{market_id}", "market_configured", payload)

    def held(
        self,
        account_id: str,
        order_id: str,
        market_id: str,
        amount: int,
        price: int,
        *,
        available: int,
        held: int,
    ) -> events_pb2.Event:
        """PointsHeld for a GTC SELL order."""
        payload = events_pb2.PointsHeld(
            account_id=account_id,
            order_id=order_id,
            market_id=market_id,
            amount_points=amount,
            limit_price_minor=price,
            time_in_force=common_pb2.TIME_IN_FORCE_GTC,
            client_order_id=f"c-{order_id}",
            available_points=available,
            held_points=held,
        )
        return self.event(f"account-{account_id}", "points_held", payload)

    def placed(  # noqa: PLR0917 - an order's terms, in the order the proto lists them.
        self,
        order_id: str,
        market_id: str,
        account_id: str,
        side: common_pb2.OrderSide.ValueType,
        quantity: int,
        price: int,
        tif: common_pb2.TimeInForce.ValueType = common_pb2.TIME_IN_FORCE_GTC,
    ) -> events_pb2.Event:
        """OrderPlaced."""
        payload = events_pb2.OrderPlaced(
            order_id=order_id,
            market_id=market_id,
            account_id=account_id,
            side=side,
            quantity_points=quantity,
            limit_price_minor=price,
            currency=CURRENCY,
            time_in_force=tif,
            client_order_id=f"c-{order_id}",
        )
        return self.event(f"market-{market_id}", "order_placed", payload)

    def matched(
        self,
        market_id: str,
        buy: tuple[str, str],
        sell: tuple[str, str],
        quantity: int,
        price: int,
        *,
        buy_open: int,
        sell_open: int,
        maker_side: common_pb2.OrderSide.ValueType = common_pb2.ORDER_SIDE_SELL,
    ) -> tuple[str, list[events_pb2.Event]]:
        """TradeMatched (market) and TradeCreated (trade): `buy`/`sell` are (order, account)."""
        trade_id = new_id("t")
        common = {
            "trade_id": trade_id,
            "market_id": market_id,
            "buy_order_id": buy[0],
            "sell_order_id": sell[0],
            "buyer_account_id": buy[1],
            "seller_account_id": sell[1],
            "maker_side": maker_side,
            "quantity_points": quantity,
            "price_minor": price,
        }
        notional = quantity * price
        fee = (notional * 100 + 9_999) // 10_000
        created = events_pb2.TradeCreated(
            currency=CURRENCY,
            notional_minor=notional,
            buyer_fee_minor=fee,
            amount_due_minor=notional + fee,
            seller_proceeds_minor=notional,
            **common,  # type: ignore[arg-type]
        )
        created.payment_deadline.FromSeconds(self.position + PAYMENT_WINDOW_S)
        return trade_id, [
            self.event(
                f"market-{market_id}",
                "trade_matched",
                events_pb2.TradeMatched(
                    buy_open_quantity_points=buy_open,
                    sell_open_quantity_points=sell_open,
                    **common,  # type: ignore[arg-type]
                ),
            ),
            self.event(f"trade-{trade_id}", "trade_created", created),
        ]

    def order_cancelled(  # noqa: PLR0917 - as the proto lists the fields.
        self,
        order_id: str,
        market_id: str,
        account_id: str,
        side: common_pb2.OrderSide.ValueType,
        quantity: int,
        reason: common_pb2.OrderCancelReason.ValueType = common_pb2.ORDER_CANCEL_REASON_REQUESTED,
    ) -> events_pb2.Event:
        """OrderCancelled."""
        payload = events_pb2.OrderCancelled(
            order_id=order_id,
            market_id=market_id,
            account_id=account_id,
            side=side,
            reason=reason,
            cancelled_quantity_points=quantity,
        )
        return self.event(f"market-{market_id}", "order_cancelled", payload)

    def rejected(
        self, order_id: str, market_id: str, account_id: str, quantity: int
    ) -> events_pb2.Event:
        """OrderRejected of a held SELL order (MARKET_CLOSED)."""
        payload = events_pb2.OrderRejected(
            order_id=order_id,
            market_id=market_id,
            account_id=account_id,
            side=common_pb2.ORDER_SIDE_SELL,
            quantity_points=quantity,
            reason=errors_pb2.ERROR_REASON_MARKET_CLOSED,
        )
        return self.event(f"market-{market_id}", "order_rejected", payload)

    def quantity_returned(
        self, order_id: str, market_id: str, trade_id: str, quantity: int, open_after: int
    ) -> events_pb2.Event:
        """OrderQuantityReturned."""
        payload = events_pb2.OrderQuantityReturned(
            order_id=order_id,
            market_id=market_id,
            trade_id=trade_id,
            quantity_points=quantity,
            open_quantity_points=open_after,
        )
        return self.event(f"market-{market_id}", "order_quantity_returned", payload)

    def released(
        self,
        account_id: str,
        order_id: str,
        amount: int,
        *,
        available: int,
        held: int,
        trade_id: str = "",
    ) -> events_pb2.Event:
        """PointsReleased."""
        payload = events_pb2.PointsReleased(
            account_id=account_id,
            order_id=order_id,
            trade_id=trade_id,
            amount_points=amount,
            available_points=available,
            held_points=held,
        )
        return self.event(f"account-{account_id}", "points_released", payload)

    def payment_requested(self, trade_id: str, amount_due: int) -> events_pb2.Event:
        """PaymentRequested by the sandbox provider."""
        payload = events_pb2.PaymentRequested(
            trade_id=trade_id,
            provider_id="sandbox",
            payment_id=f"pay-{trade_id}",
            checkout_url=f"https://pay.example/{trade_id}",
            amount=common_pb2.Money(amount_minor=amount_due, currency=CURRENCY),
        )
        return self.event(f"trade-{trade_id}", "payment_requested", payload)

    def payment_confirmed(
        self, trade_id: str, amount_due: int, *, late: bool = False
    ) -> events_pb2.Event:
        """PaymentConfirmed."""
        payload = events_pb2.PaymentConfirmed(
            trade_id=trade_id,
            provider_id="sandbox",
            payment_id=f"pay-{trade_id}",
            provider_event_id=new_id("pe"),
            amount=common_pb2.Money(amount_minor=amount_due, currency=CURRENCY),
            late=late,
        )
        return self.event(f"trade-{trade_id}", "payment_confirmed", payload)

    def payment_failed(self, trade_id: str, amount_due: int) -> events_pb2.Event:
        """PaymentFailed."""
        payload = events_pb2.PaymentFailed(
            trade_id=trade_id,
            provider_id="sandbox",
            payment_id=f"pay-{trade_id}",
            provider_event_id=new_id("pe"),
            amount=common_pb2.Money(amount_minor=amount_due, currency=CURRENCY),
        )
        return self.event(f"trade-{trade_id}", "payment_failed", payload)

    def settlement(
        self,
        trade_id: str,
        seller: tuple[str, str],
        buyer: tuple[str, str],
        quantity: int,
        proceeds: int,
        *,
        seller_held: int,
        buyer_available: int,
    ) -> list[events_pb2.Event]:
        """PointsSold, PointsBought, TradeSettled: `seller`/`buyer` are (account, order)."""
        return [
            self.event(
                f"account-{seller[0]}",
                "points_sold",
                events_pb2.PointsSold(
                    account_id=seller[0],
                    trade_id=trade_id,
                    order_id=seller[1],
                    amount_points=quantity,
                    held_points=seller_held,
                ),
            ),
            self.event(
                f"account-{buyer[0]}",
                "points_bought",
                events_pb2.PointsBought(
                    account_id=buyer[0],
                    trade_id=trade_id,
                    order_id=buyer[1],
                    amount_points=quantity,
                    available_points=buyer_available,
                ),
            ),
            self.event(
                f"trade-{trade_id}",
                "trade_settled",
                events_pb2.TradeSettled(
                    trade_id=trade_id,
                    seller_proceeds=common_pb2.Money(amount_minor=proceeds, currency=CURRENCY),
                ),
            ),
        ]

    def trade_cancelled(
        self, trade_id: str, reason: common_pb2.TradeCancelReason.ValueType
    ) -> events_pb2.Event:
        """TradeCancelled."""
        payload = events_pb2.TradeCancelled(trade_id=trade_id, reason=reason)
        return self.event(f"trade-{trade_id}", "trade_cancelled", payload)

    def refund_required(self, trade_id: str, amount_due: int) -> events_pb2.Event:
        """RefundRequired."""
        payload = events_pb2.RefundRequired(
            trade_id=trade_id,
            provider_id="sandbox",
            payment_id=f"pay-{trade_id}",
            provider_event_id=new_id("pe"),
            amount=common_pb2.Money(amount_minor=amount_due, currency=CURRENCY),
        )
        return self.event(f"trade-{trade_id}", "refund_required", payload)
