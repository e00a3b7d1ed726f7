"""The one server interceptor both processes use: authenticate, authorize, admit, map errors.

Every handler is wrapped so that (1) the caller's bearer token and role are checked
before it runs (health and reflection excepted), and a partner with too many calls or
streams in flight is shed at once (admission.py), (2) a request whose bytes do not decode
as the method's request message gets INVALID_ARGUMENT / MALFORMED_REQUEST (grpc itself
would answer UNKNOWN), (3) an exception escaping it is reported through the status table
(grpc_edge/status.py): a named case gets its code and reason, anything else INTERNAL with
a correlation id, and (4) the call is counted with its code and duration in the server's
metrics. No client sees UNKNOWN or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import grpc

from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.domain.values import Principal
from pointex.server.elsewhere import Elsewhere
from pointex.server.grpc_edge.admission import PartnerAdmission
from pointex.server.grpc_edge.auth import TokenTable, guard_for
from pointex.server.grpc_edge.status import abort_for, map_exception
from pointex.server.observability.metrics import Metrics

# grpc.RpcMethodHandler is generic only in the type stubs, hence the string alias.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable["Handler | None"]]
Guard: TypeAlias = Callable[[Any], Principal] | None

# The handler constructor of each kind of method, by (request streamed, response streamed).
METHOD_HANDLERS: dict[tuple[bool, bool], Callable[..., Handler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}

# Exceptions that already are the call's outcome and must pass through untouched; and a call
# that reached another server's entity, which the forwarder sends there (forwarding.py).
_PASS_THROUGH = (grpc.aio.AbortError, Elsewhere)


class _Malformed:
    """A request whose bytes did not decode: the handler answers it INVALID_ARGUMENT."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def error(self) -> errors.InvalidArgument:
        return errors.InvalidArgument(
            errors.MALFORMED_REQUEST, f"the request does not decode: {self.problem}"
        )


def _lenient(decode: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Return `decode` answering a _Malformed request where it would raise (grpc: UNKNOWN)."""
    if decode is None:
        return None

    def lenient(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as error:  # noqa: BLE001 - whatever the parser raises, the bytes are bad.
            return _Malformed(type(error).__name__)

    return lenient


def _checked(request: Any) -> Any:
    """Raise the malformed request's INVALID_ARGUMENT, or return the request."""
    if isinstance(request, _Malformed):
        raise request.error()
    return request


async def _checked_stream(requests: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """Yield the streamed requests; a malformed one ends the call INVALID_ARGUMENT."""
    async for request in requests:
        yield _checked(request)


async def settle(requests: AsyncIterable[Any]) -> None:
    """Wait (bounded) for a refused stream's first message or its end, then return.

    The status of a client-streaming call refused before it read anything can reach the
    client while its first write is in flight; grpcio's asyncio client then reports INTERNAL
    instead of the status (grpc/grpc#36066). Once the first message has arrived here, that
    write is done, and the client's half-close does not have the flaw.
    """
    with contextlib.suppress(Exception):
        async with asyncio.timeout(limits.refused_stream_settle_ms / 1000):
            async for _ in requests:
                return


@dataclass(frozen=True, slots=True)
class _Edge:
    """What every wrapped handler of one method shares: its guard, admission and metrics."""

    guard: Guard
    admission: PartnerAdmission
    metrics: Metrics | None


@contextlib.asynccontextmanager
async def _admitted(
    edge: _Edge,
    request: Any,
    context: grpc.aio.ServicerContext[Any, Any],
    *,
    streamed: bool,
    stream: bool,
) -> AsyncIterator[None]:
    """Check the caller and hold its place (admission.py) while the call runs.

    A refused client-streaming call first lets the client's first write land (settle).
    """
    with contextlib.ExitStack() as place:
        try:
            principal = edge.guard(context) if edge.guard is not None else None
            place.enter_context(edge.admission.admitted(principal, stream=stream))
        except Exception:
            if streamed:
                await settle(request)
            raise
        yield


class _Call:
    """Times one call and reports its outcome to the metrics (if any)."""

    __slots__ = ("_method", "_metrics", "_started")

    def __init__(self, metrics: Metrics | None, method: str, started: float | None = None) -> None:
        self._metrics = metrics
        self._method = method
        self._started = time.perf_counter() if started is None else started

    def done(self, code: str) -> None:
        if self._metrics is not None:
            self._metrics.rpc_done(self._method, code, time.perf_counter() - self._started)

    def failed(self, error: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if isinstance(error, Elsewhere):
            self.done("FORWARDED")  # Answered by the entity's owner (forwarding.py).
            return
        if isinstance(error, grpc.aio.AbortError):
            code = context.code()
            self.done(code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN")
            return
        mapped = map_exception(error)
        self.done(mapped.code.name if mapped is not None else "INTERNAL")


def _wrap_unary(behavior: Any, edge: _Edge, method: str) -> Callable[..., Awaitable[Any]]:
    """Wrap a unary-unary handler: the caller's check, its place, the call's outcome.

    Most calls are unary, so theirs is the path without context managers (`_admitted`, which
    the streams keep): the place is taken and given back, and the outcome counted, in this
    one frame.
    """
    guard = edge.guard
    admission = edge.admission
    metrics = edge.metrics
    clock = time.perf_counter

    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = clock()
        try:
            partner = admission.enter(None if guard is None else guard(context), stream=False)
            try:
                if type(request) is _Malformed:
                    raise request.error()
                response = await behavior(request, context)
            finally:
                admission.leave(partner, stream=False)
        except _PASS_THROUGH as error:
            _Call(metrics, method, started).failed(error, context)
            raise
        except Exception as error:  # noqa: BLE001 - every escape is mapped, none is lost.
            _Call(metrics, method, started).failed(error, context)
            await abort_for(context, error)
        if metrics is not None:
            metrics.rpc_done(method, "OK", clock() - started)
        return response

    return wrapped


def _wrap_stream_unary(behavior: Any, edge: _Edge, method: str) -> Callable[..., Awaitable[Any]]:
    """Wrap a client-streaming handler with a unary response (a bulk import's)."""

    async def wrapped(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(edge.metrics, method)
        try:
            async with _admitted(edge, requests, context, streamed=True, stream=True):
                response = await behavior(_checked_stream(requests), context)
        except _PASS_THROUGH as error:
            call.failed(error, context)
            raise
        except Exception as error:  # noqa: BLE001 - every escape is mapped, none is lost.
            call.failed(error, context)
            await abort_for(context, error)
        call.done("OK")
        return response

    return wrapped


def _wrap_stream_response(
    behavior: Any, edge: _Edge, method: str, *, streamed: bool
) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(edge.metrics, method)
        try:
            async with _admitted(edge, request, context, streamed=streamed, stream=True):
                request = _checked_stream(request) if streamed else _checked(request)
                async for response in behavior(request, context):
                    yield response
        except _PASS_THROUGH as error:
            call.failed(error, context)
            raise
        except Exception as error:  # noqa: BLE001 - every escape is mapped, none is lost.
            call.failed(error, context)
            await abort_for(context, error)
        call.done("OK")

    return wrapped


class EdgeInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Check credentials (when `tokens` is given) and map every exception to a status."""

    def __init__(self, tokens: TokenTable | None, metrics: Metrics | None = None) -> None:
        """Authenticate against `tokens` (None: no authentication); count calls in `metrics`."""
        self._tokens = tokens
        self._metrics = metrics
        self.admission = PartnerAdmission()
        # Wrapped handlers by method name, built on a method's first call rather than on
        # every call. Bounded by the methods the server registers (unknown ones are not kept).
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        """Return the handler with its behavior wrapped (None, for an unknown method, as is)."""
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return cast("Handler", None)  # grpc answers UNIMPLEMENTED for it.
            wrapped = self._wrapped[method] = self._wrap(handler, method)
        return wrapped

    def _wrap(self, handler: Handler, method: str) -> Handler:
        guard = None if self._tokens is None else guard_for(self._tokens, method)
        make = METHOD_HANDLERS[(handler.request_streaming, handler.response_streaming)]
        behavior: Any = (
            handler.unary_unary
            or handler.unary_stream
            or handler.stream_unary
            or handler.stream_stream
        )
        edge = _Edge(guard, self.admission, self._metrics)
        wrapped: Callable[..., Any]
        if handler.response_streaming:
            wrapped = _wrap_stream_response(
                behavior, edge, method, streamed=handler.request_streaming
            )
        elif handler.request_streaming:
            wrapped = _wrap_stream_unary(behavior, edge, method)
        else:
            wrapped = _wrap_unary(behavior, edge, method)
        return make(
            wrapped,
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
