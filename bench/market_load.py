"""The market scenario's callers: sellers and buyers placing crossing limit orders on PTS-CNY.

Caller k trades from the account of member k: even callers sell, odd callers buy, so N
sellers and N buyers never meet their own orders. Each places GTC limit orders of 1 to
`market_order_points_max` points priced within `market_spread_minor` of
`market_price_minor`, so most orders cross one already resting; a caller keeps at most
`market_resting_orders_max` of its orders resting and cancels the oldest before placing past
that. Throughput and latency are those of PlaceOrder; trades created and cancels are tallied
apart. The payments are made by the sandbox provider, which calls the contender back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque

import grpc

from bench import limits
from bench.accounts import member_id, request_id
from bench.recorder import Recorder, error_key
from pointex.v1 import command_service_pb2 as cs
from pointex.v1 import command_service_pb2_grpc, common_pb2

_NS_PER_US = 1000
# CancelOrder of an order that was filled (or cancelled by a trade's failure path) since the
# caller last saw it resting: an expected race in a live book, not a contender error.
_TOO_LATE = "FAILED_PRECONDITION/ORDER_NOT_OPEN"

Metadata = tuple[tuple[str, str], ...]


def is_seller(caller: int) -> bool:
    """Return whether caller (and member) `caller` sells; the others buy."""
    return caller % 2 == 0


def traders_count(callers: int) -> int:
    """Return how many member accounts the market scenario trades from: one per caller."""
    return callers


def order_request(rng: random.Random, caller: int) -> cs.PlaceOrderRequest:
    """Return a fresh GTC limit order of `caller`, priced around the market price."""
    side = common_pb2.ORDER_SIDE_SELL if is_seller(caller) else common_pb2.ORDER_SIDE_BUY
    spread = limits.market_spread_minor
    return cs.PlaceOrderRequest(
        request_id=request_id(),
        account_id=member_id(caller),
        market_id=limits.market_id,
        side=side,
        quantity_points=rng.randint(1, limits.market_order_points_max),
        limit_price_minor=limits.market_price_minor + rng.randint(-spread, spread),
        time_in_force=common_pb2.TIME_IN_FORCE_GTC,
    )


def _since_us(started_ns: int) -> int:
    return (time.perf_counter_ns() - started_ns) // _NS_PER_US


async def _cancel(
    stub: command_service_pb2_grpc.CommandServiceAsyncStub,
    metadata: Metadata,
    order_id: str,
    recorder: Recorder,
) -> None:
    """Cancel one resting order; tally the outcome (cancels are not PlaceOrder samples)."""
    started_s = time.monotonic()
    request = cs.CancelOrderRequest(
        request_id=request_id(), market_id=limits.market_id, order_id=order_id
    )
    try:
        await stub.CancelOrder(request, metadata=metadata, timeout=limits.call_deadline_s)
    except grpc.aio.AioRpcError as error:
        key = error_key(error)
        if key == _TOO_LATE:
            recorder.count(started_s, Counter(cancels_too_late=1))
        else:
            recorder.count(started_s, Counter(), Counter([f"CancelOrder {key}"]))
        return
    recorder.count(started_s, Counter(cancels=1))


async def market_caller(
    stub: command_service_pb2_grpc.CommandServiceAsyncStub,
    metadata: Metadata,
    caller: int,
    recorder: Recorder,
) -> None:
    """Place orders for member `caller` in a closed loop until the window closes."""
    rng = random.Random()
    resting: deque[str] = deque()
    while (started_s := time.monotonic()) < recorder.window_end_s:
        if len(resting) >= limits.market_resting_orders_max:
            await _cancel(stub, metadata, resting.popleft(), recorder)
            continue
        request = order_request(rng, caller)
        started_ns = time.perf_counter_ns()
        try:
            reply = await stub.PlaceOrder(
                request, metadata=metadata, timeout=limits.call_deadline_s
            )
        except asyncio.CancelledError:
            recorder.record_unfinished(started_s, _since_us(started_ns))
            raise
        except grpc.aio.AioRpcError as error:
            recorder.record(started_s, _since_us(started_ns), 0, Counter([error_key(error)]))
            continue
        recorder.record(started_s, _since_us(started_ns), 1)
        recorder.count(started_s, Counter(trades_created=reply.trade_count))
        if reply.order.open_quantity_points > 0:
            resting.append(reply.order.order_id)
