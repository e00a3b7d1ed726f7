"""Every RPC of the three services, from their descriptors, and how to call one with raw bytes.

A new RPC in a proto is picked up here without an edit, so the suites built on this list
(fuzzing, tenancy) cannot leave it out.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pointex.v1 import command_service_pb2, event_feed_pb2, query_service_pb2

SERVICES = (
    command_service_pb2.DESCRIPTOR.services_by_name["CommandService"],
    query_service_pb2.DESCRIPTOR.services_by_name["QueryService"],
    event_feed_pb2.DESCRIPTOR.services_by_name["EventFeed"],
)
# A streaming call is read this long, then cancelled: a well-formed watch would never end.
STREAM_READ_S = 0.5


@dataclass(frozen=True)
class Rpc:
    """One method: its full path, its request type and how it streams."""

    service: str
    name: str
    request: Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        """Return the method's path on the wire."""
        return f"/{self.service}/{self.name}"

    def request_class(self) -> type[Message]:
        """Return the generated class of the request message."""
        return GetMessageClass(self.request)


def _rpc(service: str, method: MethodDescriptor) -> Rpc:
    return Rpc(
        service,
        method.name,
        method.input_type,
        method.client_streaming,
        method.server_streaming,
    )


ALL_RPCS: tuple[Rpc, ...] = tuple(
    _rpc(service.full_name, method) for service in SERVICES for method in service.methods
)
COMMAND_RPCS = tuple(r for r in ALL_RPCS if r.service != "pointex.v1.QueryService")
QUERY_RPCS = tuple(r for r in ALL_RPCS if r.service == "pointex.v1.QueryService")


@dataclass(frozen=True)
class Outcome:
    """How a call ended: its code and, if the server sent one, its ErrorInfo reason."""

    code: grpc.StatusCode
    reason: str
    message: str


def _outcome(error: grpc.aio.AioRpcError) -> Outcome:
    reason = ""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
    return Outcome(error.code(), reason, error.details() or "")


async def call_raw(
    channel: grpc.aio.Channel,
    rpc: Rpc,
    payloads: Sequence[bytes],
    metadata: Sequence[tuple[str, str]],
    timeout_s: float = 10.0,
) -> Outcome:
    """Send `payloads` as the request bytes of `rpc` (one unless client streaming)."""

    async def requests() -> AsyncIterator[bytes]:
        for payload in payloads:
            yield payload

    # No (de)serializers: the request bytes go out as they are, replies come back as bytes.
    try:
        if rpc.client_streaming:
            bidi = channel.stream_stream(rpc.path, None, None)
            return await _drain(bidi(requests(), metadata=metadata, timeout=timeout_s))
        if rpc.server_streaming:
            stream = channel.unary_stream(rpc.path, None, None)
            return await _drain(stream(payloads[0], metadata=metadata, timeout=timeout_s))
        unary = channel.unary_unary(rpc.path, None, None)
        await unary(payloads[0], metadata=metadata, timeout=timeout_s)
    except grpc.aio.AioRpcError as error:
        return _outcome(error)
    return Outcome(grpc.StatusCode.OK, "", "")


async def _drain(
    call: grpc.aio.UnaryStreamCall[bytes, bytes] | grpc.aio.StreamStreamCall[bytes, bytes],
) -> Outcome:
    """Read a stream for a moment; a stream still open then is cancelled (an OK outcome)."""

    async def read() -> None:
        async for _ in call:
            pass

    try:
        await asyncio.wait_for(read(), STREAM_READ_S)
    except TimeoutError:
        call.cancel()
        return Outcome(grpc.StatusCode.OK, "", "still streaming")
    except grpc.aio.AioRpcError as error:
        return _outcome(error)
    return Outcome(grpc.StatusCode.OK, "", "")


def logged_events(store_file: Path) -> int:
    """Return how many events a SQLite event store holds (to tell that nothing was written)."""
    with sqlite3.connect(store_file) as connection:
        (count,) = connection.execute("SELECT count(*) FROM events").fetchone()
    return int(count)
