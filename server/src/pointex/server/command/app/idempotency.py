"""Request ids: scoped per caller, recorded with the command's events, replayed on retry.

A request key is a digest of the caller and its request id, so two partners using the
same request id never collide and one cannot read the other's result. A single-account
command appends a CommandRecorded event to stream `request-<key>` (expected version 0)
in the same unit as its own events; a transfer uses its process stream `transfer-<key>`.
A retry therefore meets a version conflict on that stream (or a rejection, if the first
attempt changed the state) and is answered from the record instead of running again.

A command that was rejected wrote nothing and records nothing: its retry is evaluated
afresh, like an idempotency key on which validation failed at a payment API.

An order's own account steps (its hold, and a release that commits alone on the account)
are recorded the same way, on a record stream of their own whose key is derived from the
order (and trade) they are for (`step_record`): sent again after an unknown outcome, such
a step meets the version conflict on its record instead of being applied twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pointex.server.domain import errors, streams
from pointex.server.domain.events import CommandRecorded
from pointex.server.domain.values import Principal
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, StreamAppend

R = TypeVar("R")

KEY_HEX_CHARS = 32


def request_key(principal: Principal, request_id: str) -> str:
    """Return the key of a request id within its caller's scope (32 hex characters)."""
    scope = f"{principal.role.value}:{principal.principal_id}\x00{request_id}"
    return hashlib.sha256(scope.encode()).hexdigest()[:KEY_HEX_CHARS]


class Replies(Protocol[R]):
    """How the edge encodes a command's reply for its record, and decodes it for a retry."""

    def encode(self, reply: R) -> bytes:
        """Return the bytes recorded for `reply` (deterministic)."""
        ...

    def at(self, reply: R, position: int) -> R:
        """Return `reply` with the position of the command's last event set."""
        ...

    def decode(self, data: bytes, position: int) -> R:
        """Return the recorded reply `data`, with `position` set."""
        ...


@dataclass(frozen=True, slots=True)
class Request:
    """A request as the application layer needs it for idempotency, whatever its wire form.

    Attributes:
        request_id: the caller's id for the request.
        rpc: the name of the operation (recorded, for operators reading the log).
        digest: the SHA-256 of the request's payload without its request id: the same id
            with another payload is IDEMPOTENCY_KEY_REUSED.
    """

    request_id: str
    rpc: str
    digest: bytes


def recorded_reply(stream: str, principal_id: str, request: Request, reply: bytes) -> StreamAppend:
    """Return the append that records a request's reply on its record stream (a new stream).

    Committed in the same unit as the command's own events, so a retry finds the record
    exactly when the command took effect.
    """
    record = CommandRecorded(request.request_id, principal_id, request.rpc, request.digest, reply)
    return StreamAppend(stream, 0, (codec.encode(record),))


def step_stream(step: str, order_id: str, trade_id: str = "") -> str:
    """Return the record stream of an order's account step (`step`: "hold" or "release").

    An order is held once and released once on its own (its trades' releases are keyed by
    trade), so the order and trade ids name the step.
    """
    scope = f"{step}\x00{order_id}\x00{trade_id}"
    return streams.request(hashlib.sha256(scope.encode()).hexdigest()[:KEY_HEX_CHARS])


def step_record(step: str, rpc: str, order_id: str, trade_id: str = "") -> StreamAppend:
    """Return the append that records an order's account step (a new stream, version 0).

    Committed in the same unit as the step's account event, so a second attempt at the step
    conflicts on it whether or not the first one's answer came back.
    """
    subject = f"{order_id}/{trade_id}" if trade_id else order_id
    record = CommandRecorded(subject, "", rpc, b"", b"")
    return StreamAppend(step_stream(step, order_id, trade_id), 0, (codec.encode(record),))


def key_reused() -> errors.AlreadyExists:
    """Return the error for a request id reused with another payload."""
    return errors.AlreadyExists(
        errors.IDEMPOTENCY_KEY_REUSED, "this request_id was used with another payload"
    )


async def replay_record(
    store: EventStore, stream: str, digest: bytes, replies: Replies[R]
) -> R | None:
    """Return the recorded response of a request (position set), or None if none is recorded.

    Raises IDEMPOTENCY_KEY_REUSED when the record holds another payload.
    """
    found = await read_reply(store, stream, digest, replies)
    return None if found is None else found[0]


async def read_reply(
    store: EventStore, stream: str, digest: bytes, replies: Replies[R]
) -> tuple[R, int] | None:
    """Return the recorded response of a request and its record's position (see replay_record)."""
    recorded = await store.read_stream(stream, 1, 1)
    if not recorded:
        return None
    record = codec.decode(recorded[0])
    assert isinstance(record, CommandRecorded)
    if record.payload_sha256 != digest:
        raise key_reused()
    return replies.decode(record.response, recorded[0].position), recorded[0].position
