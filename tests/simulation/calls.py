"""The simulation's clients: each call, how it is sent to a node, and what its answer means.

A `Call` is one request with its client-chosen request id and payload; every attempt sends
the same id and payload (a client retry). An attempt ends in one of four ways:

- answered: the node acknowledged it; the answer is kept in a normal form (positions
  aside, see `normal_form`) and every later answer to the same id must be equal;
- refused: a domain error that a retry will not change; the client stops;
- unknown: the store or the node failed, the call was cut by a crash or the client's
  deadline (`UNAVAILABLE`, `ABORTED`, `RESOURCE_EXHAUSTED`, a lost connection); the
  client retries with the same id later;
- broken: anything else (an assertion, a KeyError): a bug, reported as a violation.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from pointex.server.command.app.handlers import TransferDone, TransferRequest
from pointex.server.domain import errors
from pointex.server.domain.values import AccountKind, OrderSide, TimeInForce, TransferKind
from pointex.server.eventstore.port import StoreError
from pointex.server.overload import Overloaded
from pointex.server.payments.port import (
    PaymentCreated,
    PaymentRequest,
    PaymentRequestRefused,
    ProviderUnavailable,
)
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2
from tests.market_node import ACME, Node, Provider, payment_id_of

_TRANSFER_KINDS = {
    "issue": TransferKind.ISSUE,
    "transfer": TransferKind.TRANSFER,
    "redeem": TransferKind.REDEEM,
}
# Errors after which the outcome is unknown, or the request may succeed later: the gRPC
# edge answers them UNAVAILABLE, RESOURCE_EXHAUSTED or ABORTED; a client's deadline or a
# crash cuts the call. Anything else that is not a DomainError would be INTERNAL: a bug.
_UNKNOWN = (StoreError, Overloaded, TimeoutError, errors.Aborted)


class Ending(enum.Enum):
    """How one attempt of a call ended."""

    ANSWERED = "answered"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass
class Call:
    """One client request: its id, what it asks, and what it was answered so far.

    Attributes:
        number: Its place among the run's calls (request ids derive from it).
        kind: issue, transfer, redeem, order, cancel, callback or open.
        request_id: The client's id, the same on every attempt.
        args: The payload, the same on every attempt.
        answer: The normal form of the first acknowledgement, None until there is one.
        refusal: The reason of the last refusal, "" if none.
        attempts: How many times it was sent.
    """

    number: int
    kind: str
    request_id: str
    args: tuple[object, ...]
    answer: object = None
    refusal: str = ""
    attempts: int = 0

    @property
    def settled(self) -> bool:
        """Tell whether the client has its final word (an answer or a refusal)."""
        return self.answer is not None or bool(self.refusal)


def _int(value: object) -> int:
    """Return a payload's integer (asserted: the schedule put one there)."""
    assert isinstance(value, int), value
    return value


async def invoke(node: Node, call: Call) -> object:
    """Send one attempt of `call` to `node`; return the node's reply."""
    args = call.args
    match call.kind:
        case "issue" | "transfer" | "redeem":
            source, target, amount = args
            kind = _TRANSFER_KINDS[call.kind]
            request = TransferRequest(
                ACME, call.request_id, kind, str(source), str(target), _int(amount), ""
            )
            return await node.handlers.transfer(request)
        case "order":
            account, side, quantity, price, tif = args
            assert isinstance(side, OrderSide)
            assert isinstance(tif, TimeInForce)
            return await node.place(
                str(account), side, _int(quantity), _int(price), tif, call.request_id
            )
        case "cancel":
            return await node.cancel(str(args[0]), call.request_id)
        case "callback":
            trade_id, amount, confirmed, event_id = args
            callback = pb.PaymentCallback(
                provider_id="sandbox",
                payment_id=payment_id_of(str(trade_id)),
                trade_id=str(trade_id),
                amount=common_pb2.Money(amount_minor=_int(amount), currency="CNY"),
                provider_event_id=str(event_id),
            )
            deliver = node.deliver(callback, confirmed=bool(confirmed), request_id=call.request_id)
            return await deliver
        case "open":
            await node.open(str(args[0]), AccountKind.MEMBER)
            return "opened"
    raise AssertionError(call)


def normal_form(reply: object) -> object:
    """Return what must be equal in every answer to one request id.

    Positions are left out: a retry carries the position of the request's record, which
    the spec allows to differ from the position of the first reply's last event.
    """
    match reply:
        case TransferDone():
            initiated = reply.initiated
            return (initiated.transfer_id, initiated.kind, initiated.amount_points)
        case pb.PlaceOrderResponse() | pb.CancelOrderResponse():
            copy = type(reply).FromString(reply.SerializeToString())
            copy.ClearField("position")
            return copy.SerializeToString(deterministic=True)
        case pb.ConfirmPaymentResponse() | pb.FailPaymentResponse():
            return (reply.trade_id, reply.trade_status, reply.refund_required)
    return reply


def ending_of(call: Call, error: BaseException) -> Ending:
    """Return how an attempt that raised `error` ended (re-raise a bug)."""
    if isinstance(error, errors.AlreadyExists) and call.kind == "open":
        return Ending.ANSWERED  # Opened by an earlier attempt whose answer was lost.
    if isinstance(error, _UNKNOWN):
        return Ending.UNKNOWN
    if isinstance(error, errors.DomainError):
        return Ending.REFUSED
    raise error


PaymentCreatedHook = Callable[[PaymentRequest], None]


def _ignore(_request: PaymentRequest) -> None:
    """Do nothing with a created payment."""


@dataclass
class SimProvider(Provider):
    """A payment provider that answers after a (virtual) round trip, and now and then fails.

    The first payment of each trade is reported to `on_created`, which plans the provider's
    callbacks for it; a payment asked again (after a restart) is the same payment.
    """

    draw: random.Random = field(default_factory=random.Random)
    on_created: PaymentCreatedHook = _ignore
    unavailable: float = 0.05  # Chance that the provider does not answer (retried).
    refused: float = 0.03  # Chance that it refuses the payment for good.
    failures: int = 0  # Unavailable or refused answers so far.
    created: dict[str, PaymentRequest] = field(default_factory=dict)

    async def create_payment(self, request: PaymentRequest, *, timeout_s: float) -> PaymentCreated:
        """Create the trade's payment after a round trip, unless it fails now."""
        assert timeout_s > 0
        self.asked[request.trade_id] += 1
        await asyncio.sleep(self.draw.uniform(0.001, 0.05))
        roll = self.draw.random()
        if roll < self.unavailable:
            self.failures += 1
            raise ProviderUnavailable("injected: the provider did not answer")
        if roll < self.unavailable + self.refused and self.asked[request.trade_id] == 1:
            self.failures += 1
            raise PaymentRequestRefused("DECLINED", "injected: the provider declines")
        trade_id = request.trade_id
        if trade_id not in self.created:
            self.created[trade_id] = request
            self.on_created(request)
        return PaymentCreated(payment_id_of(trade_id), f"https://pay.test/{trade_id}")
