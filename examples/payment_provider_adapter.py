"""A payment provider's adapter: turns its own payment outcome into a signed callback.

    python examples/payment_provider_adapter.py confirm|fail TRADE PAYMENT AMOUNT CURRENCY EVENT

Reads POINTEX_COMMAND_TARGET, POINTEX_PROVIDER_TOKEN (a payment_provider token),
POINTEX_PROVIDER_ID (default "sandbox") and POINTEX_PROVIDER_SECRET (the shared secret the
command server has for this provider). A real adapter runs this on each webhook of its own
gateway; EVENT is the gateway's unique id of that notification, so a redelivery of the same
notification is recognised and changes nothing.
"""

from __future__ import annotations

import os
import sys
import time

from pointex.client import PointexClient, Targets
from pointex.client.callbacks import signed_callback
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2


def main() -> int:
    """Send one signed callback; return the exit code."""
    verb, trade_id, payment_id, amount, currency, event_id = sys.argv[1:7]
    targets = Targets(os.environ.get("POINTEX_COMMAND_TARGET", "127.0.0.1:50051"))
    with PointexClient(targets, os.environ["POINTEX_PROVIDER_TOKEN"]) as provider:
        # -- snippet: callback --
        callback = signed_callback(
            provider_id=os.environ.get("POINTEX_PROVIDER_ID", "sandbox"),
            payment_id=payment_id,
            trade_id=trade_id,
            confirmed=verb == "confirm",
            amount=common_pb2.Money(amount_minor=int(amount), currency=currency),
            provider_event_id=event_id,
            secret=os.environ["POINTEX_PROVIDER_SECRET"].encode(),
            signed_at_s=int(time.time()),
        )
        reply: pb.ConfirmPaymentResponse | pb.FailPaymentResponse
        if callback.outcome == common_pb2.PAYMENT_OUTCOME_CONFIRMED:
            reply = provider.confirm_payment(callback)
        else:
            reply = provider.fail_payment(callback)
        # -- end of snippet --
    status = common_pb2.TradeStatus.Name(reply.trade_status)
    print(f"trade {reply.trade_id}: {status} duplicate={reply.duplicate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
