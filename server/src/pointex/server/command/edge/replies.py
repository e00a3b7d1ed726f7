"""The protobuf form of what the application layer records and replays for a retry.

The application layer treats a command's reply as opaque (`app.idempotency.Replies`): the
edge says how a reply is encoded for its record, decoded for a retry, and given the
position of the command's last event. It also digests a request's payload, without its
request id, so the same id sent with another payload is told apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from pointex.client.positions import position_message
from pointex.server.command.app.idempotency import Request

R = TypeVar("R", bound=Message)


@dataclass(frozen=True, slots=True)
class ProtoReplies(Generic[R]):
    """Replies of one response message type, each with a `position` field."""

    response_type: type[R]

    def encode(self, reply: R) -> bytes:
        """Return the deterministic bytes of `reply`."""
        return reply.SerializeToString(deterministic=True)

    def at(self, reply: R, position: int) -> R:
        """Set the position of the command's last event on `reply` and return it."""
        reply.position.CopyFrom(position_message(position))  # type: ignore[attr-defined]
        return reply

    def decode(self, data: bytes, position: int) -> R:
        """Return the recorded reply, with `position` set."""
        return self.at(self.response_type.FromString(data), position)


def payload_digest(request: Message) -> bytes:
    """Return the SHA-256 of a request with its request_id cleared (deterministic bytes)."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


def request_of(request: Message) -> Request:
    """Return what idempotency needs of a request: its id, its operation and its digest."""
    return Request(
        request.request_id,  # type: ignore[attr-defined]
        type(request).__name__.removesuffix("Request"),
        payload_digest(request),
    )
