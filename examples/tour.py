"""A tour of the Python SDK: every operation a partner uses, in the order the guide shows them.

    python examples/tour.py

Reads POINTEX_COMMAND_TARGET, POINTEX_QUERY_TARGET, POINTEX_PARTNER_TOKEN,
POINTEX_PARTNER_ID and POINTEX_OPERATOR_TOKEN (the operator funds the program; a partner
cannot mint). docs/partners.md quotes this file, and the test suite runs it against real
servers, so the guide's snippets are code that works.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from pointex.client import (
    AsyncPointexClient,
    Deadlines,
    NotFound,
    PointexClient,
    Refused,
    RetryPolicy,
    Targets,
    Tls,
)
from pointex.v1 import query_service_pb2 as qry

partner_id = os.environ["POINTEX_PARTNER_ID"]
run = uuid.uuid4().hex[:8]
shop, alice, bob = (f"{partner_id}:{name}-{run}" for name in ("shop", "alice", "bob"))


def connect() -> PointexClient:
    """Return the partner's client; show the options a production client sets."""
    # -- snippet: connect --
    client = PointexClient(
        Targets("127.0.0.1:50051", "127.0.0.1:50052"),  # command server, query server
        token=os.environ["POINTEX_PARTNER_TOKEN"],  # sent as `authorization: Bearer ...`
        deadlines=Deadlines(command_ms=10_000, query_ms=10_000),  # per attempt
        retry=RetryPolicy(attempts_max=6, total_ms_max=30_000),  # bounded, with jitter
    )
    # -- end of snippet --
    client.close()
    tls = None
    # -- snippet: tls --
    if ca := os.environ.get("POINTEX_TLS_CA"):  # TLS; with a certificate and key, mutual TLS
        cert, key = os.environ.get("POINTEX_TLS_CERT"), os.environ.get("POINTEX_TLS_KEY")
        tls = Tls.from_files(ca, cert=cert, key=key)
    # -- end of snippet --
    return PointexClient(Targets.from_env(), os.environ["POINTEX_PARTNER_TOKEN"], tls=tls)


def fund(operator: PointexClient) -> None:
    """The operator opens the shop for the partner and funds it (only an operator mints)."""
    # -- snippet: fund --
    operator.open_account(shop, "merchant", owner_partner_id=partner_id)
    operator.mint(shop, 100_000, "programme funding 2026-Q4")
    # -- end of snippet --


def movements(client: PointexClient) -> None:
    """Open members, then issue, redeem and transfer points."""
    # -- snippet: accounts --
    client.open_account(alice, "member", display_name="Alice")
    client.open_account(bob, "member", display_name="Bob")
    # -- end of snippet --
    # -- snippet: movements --
    issued = client.issue(shop, alice, 500, "purchase #8812")
    print(f"transfer {issued.transfer_id}, shop has {issued.merchant_available_points} left")
    client.redeem(alice, shop, 120, "coffee")
    client.transfer(alice, bob, 80, "happy birthday")
    # -- end of snippet --
    # -- snippet: idempotency --
    first = client.issue(shop, bob, 25, "referral", request_id=f"referral-{run}")
    again = client.issue(shop, bob, 25, "referral", request_id=f"referral-{run}")
    assert again.position == first.position  # the same command, applied once
    # -- end of snippet --


def reads(client: PointexClient) -> None:
    """Read back with read-your-writes, page through history, and handle refusals."""
    # -- snippet: read-your-writes --
    alice_now = client.get_account(alice, consistent=True)  # waits for this client's writes
    assert alice_now.available_points == 500 - 120 - 80
    # -- end of snippet --
    # -- snippet: paging --
    for movement in client.account_history(alice, newest_first=True, page_size=50):
        print(movement.kind, movement.available_delta_points, movement.memo)
    # -- end of snippet --
    # -- snippet: errors --
    try:
        client.transfer(bob, alice, 1_000_000)
    except Refused as refused:  # FAILED_PRECONDITION: a rule said no
        print(refused.code.name, refused.reason, refused.metadata, refused.request_id)
    try:
        client.get_account(f"{partner_id}:nobody-{run}")
    except NotFound as missing:
        print(missing.reason)  # ACCOUNT_NOT_FOUND
    # -- end of snippet --


def reversals(client: PointexClient) -> None:
    """Take part of an issue back (a return), once; give a redemption back (a refund)."""
    # -- snippet: reversals --
    sale = client.issue(shop, alice, 200, "purchase #8813")
    returned = client.reverse_issue(
        sale.transfer_id,  # what `issue` replied
        50,  # 1 up to the issue's amount
        "purchase #8813: one item returned",
        request_id=f"return-8813-{run}",  # your own key, from your record of the return
    )
    print(f"reversal {returned.reversal_transfer_id}, alice has {returned.member_available_points}")
    try:
        client.reverse_issue(sale.transfer_id, 50, "the same return, booked twice")
    except Refused as refused:
        if refused.reason != "TRANSFER_ALREADY_REVERSED":  # another reason: the caller decides
            raise
        print("reversed already by", refused.metadata["reversal_transfer_id"])
    ticket = client.redeem(alice, shop, 30, "cinema ticket")
    client.reverse_redeem(ticket.transfer_id, 30, "screening cancelled", request_id=f"refund-{run}")
    # -- end of snippet --
    kept = 500 - 120 - 80 + 200 - 50  # Reversed once; the refund came back in full.
    assert returned.member_available_points == kept
    assert client.get_account(alice, consistent=True).available_points == kept


def fees(client: PointexClient) -> None:
    """Quote the program's fee on a transfer, then transfer holding the program to it."""
    # -- snippet: fees --
    quoted = client.quote_transfer(bob, 20, consistent=True)  # what bob would pay now
    print(f"bob gives 20 and pays {quoted.quote.fee_points} more: {quoted.total_points} in all")
    try:
        sent = client.transfer(bob, alice, 20, "thanks", fee_quote=quoted.quote)
        print(f"fee paid {sent.fee_points}, bob has {sent.from_available_points} left")
    except Refused as refused:
        if refused.reason != "FEE_SCHEDULE_CHANGED":  # another reason: the caller decides
            raise
        print("the fee is now", refused.metadata["fee_points"])  # quote again, ask bob again
    # -- end of snippet --
    assert quoted.total_points == 20 + quoted.quote.fee_points


def order_fees(client: PointexClient) -> None:
    """Quote a SELL order's market fee, then place it holding the market to its fee schedule."""
    # -- snippet: order-fees --
    quoted = client.quote_order(alice, "sell", 50, 125, consistent=True)  # 1.25 CNY a point
    print(f"alice receives at least {quoted.total_minor} fen, fee {quoted.quote.fee_minor}")
    try:
        placed = client.place_order(alice, "sell", 50, 125, fee_quote=quoted.quote)
    except Refused as refused:
        if refused.reason != "FEE_SCHEDULE_CHANGED":  # another reason: the caller decides
            raise
        print("the fee is now", refused.metadata["fee_minor"])  # quote again, ask alice again
    else:
        print(f"order {placed.order.order_id}, fee schedule {quoted.quote.schedule_version}")
    # -- end of snippet --
    assert quoted.total_minor == quoted.notional_minor - quoted.quote.fee_minor


async def asynchronous() -> None:
    """The same calls from asyncio, and a notification watch that resumes from a cursor."""
    # -- snippet: async --
    async with AsyncPointexClient(Targets.from_env(), os.environ["POINTEX_PARTNER_TOKEN"]) as aio:
        await aio.issue(shop, alice, 10, "streak bonus")
        cursor = b""
        async for note in aio.notifications(account_ids=[alice], from_beginning=True):
            cursor = note.cursor  # save it: passing it back resumes after this notification
            if note.kind == qry.NOTIFICATION_KIND_POINTS_RECEIVED:
                print("alice received", note.points_moved.amount_points)
            if note.points_moved.memo == "streak bonus":
                break
    # -- end of snippet --
    assert cursor


def main() -> None:
    """Run the tour."""
    operator = PointexClient(Targets.from_env(), os.environ["POINTEX_OPERATOR_TOKEN"])
    with operator, connect() as client:
        fund(operator)
        movements(client)
        reads(client)
        reversals(client)
        fees(client)
        order_fees(client)
    asyncio.run(asynchronous())
    print("tour complete")


if __name__ == "__main__":
    main()
