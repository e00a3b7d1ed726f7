"""Typed exceptions for failed calls, decoded from the gRPC status and its ErrorInfo.

Every exception the SDK raises for a failed call is a `PointexError`: it carries the gRPC
code, the `google.rpc.ErrorInfo` reason and metadata, the server's `RetryInfo` delay and the
request id the command ran under. A subclass names the family, so a program can catch what it
means to handle (`except Refused`, `except NotFound`) and branch on `reason` inside it. Which
family a reason belongs to follows from its gRPC code (`pointex.client.reasons`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import grpc
from google.rpc import error_details_pb2, status_pb2

from pointex.client.reasons import REASONS, Reason

_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
_MS_PER_S: Final = 1000
_NS_PER_MS: Final = 1_000_000
# Without an ErrorInfo these codes come from the gRPC library itself: nothing answered
# (connection refused, name not resolved), or no reply came in time.
_TRANSPORT_CODES: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)


class PointexError(Exception):
    """A call failed: the server refused it, or no answer came.

    Attributes:
        code: the gRPC status code.
        reason: the ErrorInfo reason (an ErrorReason name without its prefix, for example
            "INSUFFICIENT_POINTS"); empty when the status carried none, which means the gRPC
            library produced it (no server answered), not a Pointex server.
        message: the status message, a short English text for people; never branch on it.
        metadata: the ErrorInfo metadata, for example "account_id" or the "position" a
            compensated transfer wrote.
        retry_delay_ms: the server's RetryInfo delay, if it sent one.
        request_id: the request id a command ran under (empty for reads): retrying with it
            can never apply the command twice.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_delay_ms: int | None = None,
        request_id: str = "",
    ) -> None:
        """Record what the failed call said."""
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_delay_ms = retry_delay_ms
        self.request_id = request_id
        super().__init__(self.line())

    @property
    def described(self) -> Reason | None:
        """Return the reasons table's entry for `reason`, if this SDK knows it."""
        return REASONS.get(self.reason)

    @property
    def unreachable(self) -> bool:
        """Return whether no server answered (as opposed to a server refusing)."""
        return not self.reason and self.code in _TRANSPORT_CODES

    @property
    def outcome_unknown(self) -> bool:
        """Return whether a command may or may not have been applied (retry to find out)."""
        return bool(self.request_id) and isinstance(self, Unavailable)

    def line(self) -> str:
        """Return the failure on one line: code, reason, message and metadata."""
        text = " ".join(part for part in (self.code.name, self.reason) if part)
        message = " ".join(self.message.split())  # The library's messages can span lines.
        if message:
            text = f"{text}: {message}"
        if self.metadata:
            pairs = ", ".join(f"{key}={value}" for key, value in sorted(self.metadata.items()))
            text = f"{text} [{pairs}]"
        if self.request_id:
            text = f"{text} (request id {self.request_id})"
        return text


class InvalidRequest(PointexError):
    """INVALID_ARGUMENT: the request is malformed whatever the server's state; fix it."""


class Refused(PointexError):
    """FAILED_PRECONDITION: refused by a rule (insufficient points, a frozen account...)."""


class NotFound(PointexError):
    """NOT_FOUND: the named account, order, trade or market does not exist."""


class PermissionDenied(PointexError):
    """PERMISSION_DENIED: the caller may not do this (role, ownership, callback signature)."""


class Unauthenticated(PermissionDenied):
    """UNAUTHENTICATED: no bearer token, or one the server does not accept."""


class Conflict(PointexError):
    """ALREADY_EXISTS or ABORTED: the id is taken, or a concurrent request got there first."""


class Overloaded(PointexError):
    """RESOURCE_EXHAUSTED: the server sheds load; retry after `retry_delay_ms`."""


class Unavailable(PointexError):
    """UNAVAILABLE or DEADLINE_EXCEEDED: no clear answer; a command may or may not have run."""


class InternalError(PointexError):
    """INTERNAL (or an unexpected code): a server bug; `metadata["correlation_id"]` finds it."""


_FAMILIES: Final[Mapping[grpc.StatusCode, type[PointexError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.FAILED_PRECONDITION: Refused,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.CANCELLED: Unavailable,
}


def family(code: grpc.StatusCode) -> type[PointexError]:
    """Return the exception class a status code becomes."""
    return _FAMILIES.get(code, InternalError)


def from_status(
    code: grpc.StatusCode,
    message: str,
    details: Iterable[tuple[str, str | bytes]] = (),
    *,
    request_id: str = "",
) -> PointexError:
    """Return the typed exception of a status, decoding the rich details in its trailers."""
    reason = ""
    metadata: dict[str, str] = {}
    retry_delay_ms: int | None = None
    status = _rich_status(details)
    if status is not None:
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        for detail in status.details:
            if detail.Unpack(info):
                reason = str(info.reason)
                metadata = {str(key): str(value) for key, value in info.metadata.items()}
            elif detail.Unpack(retry):
                delay = retry.retry_delay
                retry_delay_ms = int(delay.seconds) * _MS_PER_S + int(delay.nanos) // _NS_PER_MS
    return family(code)(
        code,
        message,
        reason=reason,
        metadata=metadata,
        retry_delay_ms=retry_delay_ms,
        request_id=request_id,
    )


def from_rpc_error(error: grpc.RpcError, *, request_id: str = "") -> PointexError:
    """Return the typed exception of a failed call (a sync or an asyncio one)."""
    if not isinstance(error, grpc.Call | grpc.aio.AioRpcError):
        return InternalError(grpc.StatusCode.UNKNOWN, str(error), request_id=request_id)
    trailers = _pairs(error.trailing_metadata() or ())
    return from_status(error.code(), error.details() or "", trailers, request_id=request_id)


def from_bulk_error(
    code: int,
    reason: str,
    message: str,
    metadata: Mapping[str, str],
    retry_delay_ms: int | None,
    *,
    request_id: str = "",
) -> PointexError:
    """Return the typed exception of one failed bulk command (a `BulkError`)."""
    status_code = next((each for each in grpc.StatusCode if each.value[0] == code), None)
    return family(status_code or grpc.StatusCode.UNKNOWN)(
        status_code or grpc.StatusCode.UNKNOWN,
        message,
        reason=reason,
        metadata=metadata,
        retry_delay_ms=retry_delay_ms,
        request_id=request_id,
    )


def _pairs(trailers: Iterable[object]) -> list[tuple[str, str | bytes]]:
    """Return trailing metadata as (key, value) pairs, as both gRPC APIs deliver it."""
    pairs: list[tuple[str, str | bytes]] = []
    for item in trailers:
        if isinstance(item, tuple) and len(item) == 2:  # noqa: PLR2004 - a pair.
            key, value = item
            if isinstance(key, str) and isinstance(value, str | bytes):
                pairs.append((key, value))
    return pairs


def _rich_status(details: Iterable[tuple[str, str | bytes]]) -> status_pb2.Status | None:
    for key, value in details:
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None
