"""A member app buys points on the market and follows its trade until it is paid.

    python examples/member_buys_points.py BUYER QUANTITY PRICE_MINOR

Reads POINTEX_COMMAND_TARGET, POINTEX_QUERY_TARGET and POINTEX_PARTNER_TOKEN (the member
app's partner token). Places a BUY order (immediate or cancel) in PTS-CNY; for each trade it
matched, shows where to pay and waits until the payment provider's callback settled or
cancelled it, then prints the buyer's balance as the query server shows it after that.
"""

from __future__ import annotations

import os
import sys

from pointex.client import PointexClient, Targets, errors
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qry

_ENDED = {qry.NOTIFICATION_KIND_TRADE_SETTLED, qry.NOTIFICATION_KIND_TRADE_CANCELLED}


def main() -> int:
    """Buy, follow, report; return the exit code."""
    buyer, quantity, price = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with PointexClient(Targets.from_env(), os.environ["POINTEX_PARTNER_TOKEN"]) as client:
        try:
            # -- snippet: buy --
            placed = client.place_order(buyer, "buy", quantity, price, time_in_force="ioc")
            # -- end of snippet --
        except errors.Refused as refused:
            print(f"order refused: {refused.reason}", file=sys.stderr)
            return 1
        pending = {trade.trade_id for trade in placed.trades}
        print(f"order {placed.order.order_id}: {len(pending)} trade(s) to pay")
        # -- snippet: follow --
        for note in client.notifications(account_ids=[buyer], from_beginning=True):
            if note.kind == qry.NOTIFICATION_KIND_PAYMENT_REQUIRED:
                print(
                    f"pay {note.payment_required.trade_id} at {note.payment_required.checkout_url}"
                )
            elif note.kind in _ENDED and note.trade.trade_id in pending:
                pending.discard(note.trade.trade_id)
                status = common_pb2.TradeStatus.Name(note.trade.status)
                print(f"trade {note.trade.trade_id}: {status}")
            if not pending:
                break
        # -- end of snippet --
        # -- snippet: read-your-writes --
        account = client.get_account(buyer, min_position=note.position)
        # -- end of snippet --
    print(f"{buyer} has {account.available_points} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
