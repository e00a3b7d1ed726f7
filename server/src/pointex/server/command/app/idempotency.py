"""Request ids: scoped per caller, recorded with the command's events, replayed on retry.

A request key is a digest of the caller and its request id, so two partners using the
same request id never collide and one cannot read the other's result. A single-account
command appends a CommandRecorded event to stream `request-<key>` (expected version 0)
in the same unit as its own events; a transfer uses its process stream `transfer-<key>`.
A retry therefore meets a version conflict on that stream (or a rejection, if the first
attempt changed the state) and is answered from the record instead of running again.

A command that was rejected wrote nothing and records nothing: its retry is evaluated
afresh, like an idempotency key on which validation failed at a payment API.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

from google.protobuf.message import Message

from pointex.client.positions import position_message
from pointex.server.domain import errors
from pointex.server.domain.events import CommandRecorded
from pointex.server.domain.values import Principal
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, StreamAppend

R = TypeVar("R", bound=Message)

KEY_HEX_CHARS = 32


def request_key(principal: Principal, request_id: str) -> str:
    """Return the key of a request id within its caller's scope (32 hex characters)."""
    scope = f"{principal.role.value}:{principal.principal_id}\x00{request_id}"
    return hashlib.sha256(scope.encode()).hexdigest()[:KEY_HEX_CHARS]


def payload_digest(request: Message) -> bytes:
    """Return the SHA-256 of a request with its request_id cleared (deterministic bytes)."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


def recorded_reply(  # noqa: PLR0917 - the record's fields, in the record's order.
    stream: str,
    request_id: str,
    principal_id: str,
    command: str,
    digest: bytes,
    response: Message,
) -> StreamAppend:
    """Return the append that records a request's reply on its record stream (a new stream).

    Committed in the same unit as the command's own events, so a retry finds the record
    exactly when the command took effect.
    """
    record = CommandRecorded(
        request_id, principal_id, command, digest, response.SerializeToString(deterministic=True)
    )
    return StreamAppend(stream, 0, (codec.encode(record),))


def key_reused() -> errors.AlreadyExists:
    """Return the error for a request id reused with another payload."""
    return errors.AlreadyExists(
        errors.IDEMPOTENCY_KEY_REUSED, "this request_id was used with another payload"
    )


async def replay_record(
    store: EventStore, stream: str, digest: bytes, response_type: type[R]
) -> R | None:
    """Return the recorded response of a request (position set), or None if none is recorded.

    Raises IDEMPOTENCY_KEY_REUSED when the record holds another payload.
    """
    recorded = await store.read_stream(stream, 1, 1)
    if not recorded:
        return None
    record = codec.decode(recorded[0])
    assert isinstance(record, CommandRecorded)
    if record.payload_sha256 != digest:
        raise key_reused()
    response = response_type.FromString(record.response)
    response.position.CopyFrom(position_message(recorded[0].position))  # type: ignore[attr-defined]
    return response
