"""Forwarding a call to the command server that owns it (docs/scale-out.md, Routing).

Any command server of a cluster accepts any call. The `Forwarder` is the server's outermost
interceptor: for a method of a routed service it asks the server where the call goes now
(`Route`): here, to the owner's address, or nowhere. A call that goes elsewhere is relayed
as bytes, not decoded: the request (or request stream) to the owner, with the caller's
metadata (its bearer token, so the owner authenticates, authorizes and admits it as if
called directly) and what is left of its deadline, and the owner's responses and final
status (with its ErrorInfo) back to the caller. The forwarder checks the caller's token and
role first, with the same tokens file: a caller that fails is refused (and rate-limited by
its own address) here, and never makes the owner refuse the forwarder's address.

A forwarded call carries `pointex-forwarded`; a server that receives one and cannot take it
itself refuses it rather than forwarding it again, so two servers with different views of
the owners cannot pass a call back and forth.

With the slice ranges split across servers, a server serves every call itself until it
reaches an entity of another server's range (`Elsewhere`, raised before anything changed);
the call then goes to that range's owner, marked `pointex-placed`. A placed call goes no
further: a server that finds it belongs elsewhere again refuses it (OWNER_UNAVAILABLE), and
the client retries once the owners have settled. A call that has no owner to go to, or whose
owner cannot be reached, is refused as UNAVAILABLE / OWNER_UNAVAILABLE with a retry delay:
nothing was done, and the client retries with the same request id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, cast

import grpc

from pointex.server import limits
from pointex.server.domain.errors import DomainError
from pointex.server.elsewhere import Elsewhere
from pointex.server.grpc_edge.auth import TokenTable, guard_for
from pointex.server.grpc_edge.interceptors import (
    METHOD_HANDLERS,
    Continuation,
    Guard,
    Handler,
    settle,
)
from pointex.server.grpc_edge.status import (
    OwnerUnavailable,
    ShuttingDown,
    abort_for,
    not_its_own,
)
from pointex.server.observability.metrics import Metrics

log = logging.getLogger(__name__)

# Set on a forwarded call to the forwarder's owner id: the receiver does not forward it again.
FORWARDED_HEADER: Final = "pointex-forwarded"
# Set on a call sent to the owner of the entity it reached: it goes no further.
PLACED_HEADER: Final = "pointex-placed"

# Where a call goes: None, here; an address (host:port), that server; NOWHERE, refused.
Route: TypeAlias = str | None
NOWHERE: Final = ""

# Metadata a relay must not copy: HTTP/2 pseudo-headers and gRPC's own, which the channel
# sets again for the hop; but the status details (the ErrorInfo) go back as the owner sent them.
_RESERVED = (":", "grpc-")
_RESERVED_KEYS = frozenset({"content-type", "te", "user-agent", FORWARDED_HEADER, PLACED_HEADER})
_STATUS_DETAILS = "grpc-status-details-bin"
# A hop that fails is logged at most this often (each failure is counted in the metrics).
_WARN_EVERY_S: Final = 5.0
# The channel's call of each kind of method, by (request streamed, response streamed).
_CALL_KINDS: Final = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}


@dataclass(frozen=True, slots=True)
class Routing:
    """Where the calls of a server's routed services go, and what it tells the owners."""

    route: Callable[[], Route]  # Asked once per call.
    services: tuple[str, ...]  # Full names of the services routed (others are always here).
    forwarder_id: str  # Sent in FORWARDED_HEADER: the server's owner id.
    # With ranges split across servers: the address of a slice range's owner ("" if none), read
    # from the leases again when none is known.
    # The owner of a slice range, given the address that said it is not its own ("": none).
    owner_of: Callable[[int, str], Awaitable[str]] | None = None


def _relayed(metadata: Iterable[Any] | None) -> tuple[tuple[str, Any], ...]:
    """Return the (key, value) metadata to copy onto the hop (or back to the caller)."""
    return tuple(
        (key, value)
        for key, value in metadata or ()
        if key == _STATUS_DETAILS or (not key.startswith(_RESERVED) and key not in _RESERVED_KEYS)
    )


class PeerChannels:
    """The channels to the cluster's other command servers, one per address, kept until closed."""

    def __init__(self) -> None:
        """Hold no channel yet."""
        self._channels: dict[str, grpc.aio.Channel] = {}

    def to(self, address: str) -> grpc.aio.Channel:
        """Return the channel to `address`, opening it on first use."""
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(
                address,
                options=[
                    ("grpc.max_receive_message_length", limits.grpc_message_bytes_max),
                    ("grpc.max_send_message_length", limits.grpc_message_bytes_max),
                ],
            )
        return channel

    async def close(self) -> None:
        """Close every channel."""
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(None)


class Forwarder(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Relay the calls of routed services to their owner, when it is another server."""

    def __init__(
        self, routing: Routing, tokens: TokenTable | None, metrics: Metrics | None = None
    ) -> None:
        """Route by `routing`; check callers against `tokens`; count calls in `metrics`."""
        self._routing = routing
        self._tokens = tokens
        self._prefixes = tuple(f"/{name}/" for name in routing.services)
        self._channels = PeerChannels()
        self._relays: dict[str, Handler] = {}
        self._placed: dict[str, Handler] = {}  # Served here, or where the entity lives.
        # Relayed streams under way: a server that stops ends them at once (stop_streams).
        self._streams: set[Any] = set()
        self._stopping = False
        self._warned_at_s = -_WARN_EVERY_S  # When a failed hop was last logged.
        self.forwarded = 0
        self.refused = 0
        if metrics is not None:
            metrics.total(
                "pointex_calls_forwarded_total",
                "calls relayed to the command server that owns their slice range",
                lambda: self.forwarded,
            )
            metrics.total(
                "pointex_calls_unrouted_total",
                "calls refused (OWNER_UNAVAILABLE) because no server could take them",
                lambda: self.refused,
            )

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        """Return the local handler, or one relaying the call to its owner."""
        method = handler_call_details.method
        if not method.startswith(self._prefixes):
            return cast("Handler", await continuation(handler_call_details))
        route = self._routing.route()
        if route is None:
            local = await continuation(handler_call_details)
            if self._routing.owner_of is None or local is None or local.response_streaming:
                return cast("Handler", local)
            placed = self._placed.get(method)
            if placed is None:
                placed = self._placed[method] = self._placing(method, local)
            return placed
        relay = self._relays.get(method)
        if relay is None:
            local = await continuation(handler_call_details)
            if local is None:
                return cast("Handler", None)  # grpc answers UNIMPLEMENTED for it.
            relay = self._relays[method] = self._relay(method, local)
        return relay

    def stop_streams(self) -> None:
        """End every relayed stream now (UNAVAILABLE / SHUTTING_DOWN); callers resume elsewhere."""
        self._stopping = True
        for call in self._streams:
            call.cancel()

    async def close(self) -> None:
        """Close the channels to other servers."""
        await self._channels.close()

    def _target(self, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[str, dict[str, Any]]:
        """Return the owner's address and the hop's call options, or raise OwnerUnavailable."""
        metadata = context.invocation_metadata() or ()
        if any(key == FORWARDED_HEADER for key, _ in metadata):
            raise OwnerUnavailable("the server this call was forwarded to does not own it")
        route = self._routing.route()
        if route is None:  # Taken over since the call arrived: it still goes by the hop.
            raise OwnerUnavailable("the call's slice range changed hands; retry")
        if route == NOWHERE:
            raise OwnerUnavailable("no command server owns the call's slice range now")
        hop = [*_relayed(metadata), (FORWARDED_HEADER, self._routing.forwarder_id)]
        return route, {"metadata": hop, "timeout": context.time_remaining()}

    def _hop(
        self, method: str, kind: tuple[bool, bool], guard: Guard, request: Any, context: Any
    ) -> Any:
        """Check the caller with `guard`, then start the call to the owner; return the hop's call.

        Raises the caller's refusal (DomainError) or OwnerUnavailable.
        """
        if guard is not None:
            guard(context)
        address, options = self._target(context)
        start = getattr(self.channel(address), _CALL_KINDS[kind])
        return start(method, None, None)(request, **options)

    def _relay(self, method: str, local: Handler) -> Handler:
        """Return a handler of `method`'s kind relaying its bytes to the owner."""
        kind = (local.request_streaming, local.response_streaming)
        # Built once per method, as the edge interceptor builds its own.
        guard = None if self._tokens is None else guard_for(self._tokens, method)
        relay = self._relay_stream if local.response_streaming else self._relay_unary
        return METHOD_HANDLERS[kind](relay(method, kind, guard))

    def _relay_unary(
        self, method: str, kind: tuple[bool, bool], guard: Guard
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        """Return the behaviour relaying a call with one response."""
        forwarder, streamed = self, kind[0]

        async def unary_response(request: Any, context: Any) -> Any:
            try:
                call = forwarder._hop(method, kind, guard, request, context)
                response = await call
                context.set_trailing_metadata(_relayed(await call.trailing_metadata()))
            except grpc.aio.AioRpcError as error:
                await forwarder._answer_failed(error, context)
            except (OwnerUnavailable, DomainError) as error:
                await forwarder._refuse(error, request, context, streamed=streamed)
            forwarder.forwarded += 1
            return response

        return unary_response

    def _relay_stream(
        self, method: str, kind: tuple[bool, bool], guard: Guard
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        """Return the behaviour relaying a call with a stream of responses."""
        forwarder, streamed = self, kind[0]

        async def stream_response(request: Any, context: Any) -> AsyncIterator[Any]:
            call = None
            try:
                call = forwarder._hop(method, kind, guard, request, context)
                forwarder._streams.add(call)
                async for response in call:
                    yield response
                context.set_trailing_metadata(_relayed(await call.trailing_metadata()))
            except grpc.aio.AioRpcError as error:
                await forwarder._answer_failed(error, context)
            except (OwnerUnavailable, DomainError) as error:
                await forwarder._refuse(error, request, context, streamed=streamed)
            except asyncio.CancelledError:
                if not forwarder._stopping:
                    raise  # The caller went away.
                await abort_for(context, ShuttingDown())
            finally:
                if call is not None:  # The caller went away, or the server stops: end the hop.
                    forwarder._streams.discard(call)
                    call.cancel()
            forwarder.forwarded += 1

        return stream_response

    def _placing(self, method: str, local: Handler) -> Handler:
        """Return `local` sending a call that reaches another server's entity to its owner.

        Only calls with one request and one response are placed so: a bulk stream's
        commands go to their owners one message at a time where it runs (command/edge/bulk.py).
        """
        behavior = local.unary_unary
        serialize = local.response_serializer
        assert behavior is not None, method
        assert serialize is not None, method
        forwarder = self

        async def placed(request: Any, context: Any) -> Any:
            try:
                return await behavior(request, context)
            except Elsewhere as moved:
                elsewhere = moved
            moved_from = ""
            while True:
                try:
                    call, address = await forwarder._place(
                        method, elsewhere, request, context, moved_from
                    )
                    response = await call
                    context.set_trailing_metadata(_relayed(await call.trailing_metadata()))
                    break
                except grpc.aio.AioRpcError as error:
                    if not moved_from and not_its_own(error):
                        moved_from = address  # Its range moved since the last look: once more.
                        continue
                    await forwarder._answer_failed(error, context)
                except OwnerUnavailable as error:
                    await abort_for(context, error)
            forwarder.forwarded += 1
            return response

        def serialized(response: Any) -> bytes:
            return response if isinstance(response, bytes) else bytes(serialize(response))

        return grpc.unary_unary_rpc_method_handler(
            placed, request_deserializer=local.request_deserializer, response_serializer=serialized
        )

    async def _place(
        self, method: str, moved: Elsewhere, request: Any, context: Any, moved_from: str
    ) -> tuple[Any, str]:
        """Start the call to the owner of the entity it reached; return the hop's call, and where.

        Raises OwnerUnavailable (as the call's status) when it has no owner to go to, or was
        placed already. `moved_from`: the address that said the entity is not its own.
        """
        address, options = await self.placing(moved, context, moved_from)
        start = self.channel(address).unary_unary(method, None, None)
        return start(request.SerializeToString(), **options), address

    async def placing(
        self, moved: Elsewhere, context: Any, moved_from: str = ""
    ) -> tuple[str, dict[str, Any]]:
        """Return where a call (or a bulk command) that reached `moved` goes, and its options.

        The options carry the caller's metadata and remaining deadline. Raises
        OwnerUnavailable when no other server owns the entity now, or the call was placed
        already (it goes no further). `moved_from`: an address that answered that the entity
        is not its own (its range moved since the last look at the owners).
        """
        owner_of = self._routing.owner_of
        metadata = context.invocation_metadata() or ()
        placed = any(key == PLACED_HEADER for key, _ in metadata)
        address = (
            "" if owner_of is None or placed else await owner_of(moved.slice_range, moved_from)
        )
        if not address:
            self.refused += 1
            raise OwnerUnavailable(f"no other command server owns {moved.stream_id} now")
        hop = [*_relayed(metadata), (PLACED_HEADER, self._routing.forwarder_id)]
        return address, {"metadata": hop, "timeout": context.time_remaining()}

    def channel(self, address: str) -> grpc.aio.Channel:
        """Return the channel to another command server (kept until `close`)."""
        return self._channels.to(address)

    async def _refuse(
        self, error: Exception, request: Any, context: Any, *, streamed: bool
    ) -> None:
        """End a call refused before its hop; a request stream first lets its first write land."""
        if isinstance(error, OwnerUnavailable):
            self.refused += 1
        if streamed:
            await settle(request)
        await abort_for(context, error)

    async def _answer_failed(self, error: grpc.aio.AioRpcError, context: Any) -> None:
        """End the call as the owner ended it; a hop that failed on its way, OWNER_UNAVAILABLE."""
        self.forwarded += 1
        trailing = _relayed(error.trailing_metadata())
        if error.code() == grpc.StatusCode.UNAVAILABLE and not any(
            key == _STATUS_DETAILS for key, _ in trailing
        ):
            # The owner was not reached (or went away): no status of its own came back.
            now_s = time.monotonic()
            if now_s - self._warned_at_s >= _WARN_EVERY_S:  # Not once per call of a burst.
                self._warned_at_s = now_s
                log.warning("forwarding failed: %s", error.details())
            self.refused += 1
            await abort_for(context, OwnerUnavailable("the owner of the call's range is away"))
        await context.abort(error.code(), error.details() or "", trailing_metadata=trailing)
