"""The end of a run's checks: what the clients were told against the log, and the node's view.

After the run every call has its final word, the store is healed and every trade has
ended. Then:

- every acknowledged call took effect exactly once: a transfer debited and credited once
  and completed, an order held and placed once, a cancellation and a callback recorded
  once, an account opened; a call refused for good left no order in the book;
- the node's actors hold what the log says: each account's state, and the resting orders.
"""

from __future__ import annotations

from collections.abc import Sequence

from pointex.server.command.app.idempotency import request_key
from pointex.server.command.app.market_handlers import order_id_for
from pointex.server.command.edge.callbacks import _event_key
from pointex.server.domain import streams
from pointex.server.eventstore import codec
from pointex.v1 import command_service_pb2 as pb
from tests.market_node import ACME, Node
from tests.simulation.audit import LogAudit, Violation
from tests.simulation.calls import Call


def order_id_of(call: Call) -> str:
    """Return the id of the order an order call places."""
    return order_id_for(request_key(ACME, call.request_id))


def _effects_of(call: Call, audit: LogAudit) -> tuple[int, ...]:
    """Return how often each effect of an acknowledged call is in the log (1 each is right)."""
    effects = audit.effects
    key = request_key(ACME, call.request_id)
    match call.kind:
        case "issue" | "transfer" | "redeem":
            completed = any(
                event.type == "TransferCompleted"
                # A transfer committed whole in one unit ends at its TransferInitiated.
                or (event.type == "TransferInitiated" and codec.decode(event).completed)
                for event in audit.database.streams.get(streams.transfer(key), [])
            )
            credit = effects.credits[key, str(call.args[1])]
            return effects.debits[key], credit, int(completed)
        case "order":
            order_id = order_id_of(call)
            return effects.holds[order_id], effects.placements[order_id]
        case "cancel":
            record = streams.request(key)
            return effects.records[record], effects.cancels[str(call.args[0])]
        case "callback":
            callback = pb.PaymentCallback(provider_id="sandbox")
            callback.provider_event_id = str(call.args[3])
            return (effects.records[streams.request(_event_key(callback))],)
    return (int(str(call.args[0]) in audit.accounts),)


def check_acknowledged(calls: Sequence[Call], audit: LogAudit) -> None:
    """Check that each acknowledged call took effect once, and no refused order was placed."""
    for call in calls:
        if call.answer is None:
            if call.kind == "order" and audit.effects.placements[order_id_of(call)]:
                raise Violation(f"order {call.request_id} was refused for good, and placed")
            continue
        found = _effects_of(call, audit)
        if set(found) != {1}:
            raise Violation(
                f"acknowledged {call.kind} {call.request_id} {call.args} has effects {found} "
                "in the log, not exactly one each"
            )


async def check_node_view(node: Node, audit: LogAudit) -> None:
    """Check that the node's actors hold what the log says (once nothing runs)."""
    for account_id, logged in audit.accounts.items():
        state = await node.accounts.peek(account_id)
        if state != logged:
            raise Violation(f"{account_id}: the actor has {state}, the log says {logged}")
    book = await node.book()
    resting = {order.order_id: order.open_quantity_points for order in book.orders.values()}
    logged_book = {o.order_id: o.open_quantity_points for o in audit.book.orders.values()}
    if resting != logged_book:
        raise Violation(f"the market rests {resting}, the log says {logged_book}")
