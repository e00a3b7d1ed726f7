"""THE table from exceptions to gRPC status codes and `google.rpc.ErrorInfo` reasons.

Servicers never build statuses themselves: they raise, and `abort_for` turns the
exception into a status with an ErrorInfo (domain `pointex.v1`), plus BadRequest or
RetryInfo where they help. An exception not in the table is a bug: it becomes INTERNAL
with a correlation id that is also logged with the traceback; the client never sees one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from pointex.client.errors import from_rpc_error
from pointex.client.positions import InvalidPositionError
from pointex.server import limits
from pointex.server.domain import errors as domain
from pointex.server.overload import Overloaded
from pointex.server.store_errors import (
    CommitOutcomeUnknown,
    DurabilityUnsafe,
    SchemaTooNew,
    StoreError,
    StoreUnavailable,
    WrongExpectedVersion,
)
from pointex.v1 import command_service_pb2 as pb

log = logging.getLogger(__name__)

ERROR_DOMAIN = "pointex.v1"


class InvalidRequest(domain.InvalidArgument):
    """A request field is malformed; `field` names it for BadRequest details."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        """Name the reason, the offending field and what is wrong with it."""
        super().__init__(reason, message, field=field)
        self.field = field


class PositionNotReached(Exception):
    """A read's `min_position` was not reached within its deadline (DEADLINE_EXCEEDED)."""

    def __init__(self, position: int, reached: int) -> None:
        """Name the position asked for and the position the projections had reached."""
        super().__init__(f"projections reached {reached}, not {position}, before the deadline")
        self.position = position
        self.reached = reached


class ShuttingDown(Exception):
    """The server is draining and ends the call; resume elsewhere or later (UNAVAILABLE)."""


# The reason of a call (or a step) refused because no server can take its range now, or
# because the server asked does not own it any more.
OWNER_UNAVAILABLE: Final = "OWNER_UNAVAILABLE"


class OwnerUnavailable(Exception):
    """No command server can take the call's slice range now (UNAVAILABLE, retry later).

    Its owner is not known, cannot be reached, or is this server still recovering the range
    (docs/scale-out.md, Routing).
    """


@dataclass(frozen=True, slots=True)
class Mapped:
    """How one exception goes on the wire."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: Mapping[str, str]
    retry_after_ms: int = 0
    field: str = ""


# The status code each kind of refusal is reported with (grpc_edge/peer.py reads it back).
DOMAIN_CODES: dict[type[domain.DomainError], grpc.StatusCode] = {
    domain.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    domain.NotFound: grpc.StatusCode.NOT_FOUND,
    domain.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    domain.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    domain.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    domain.Aborted: grpc.StatusCode.ABORTED,
    domain.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}


def map_exception(error: BaseException) -> Mapped | None:
    """Return how `error` is reported, or None when it is not a known case (a bug)."""
    match error:
        case domain.DomainError():
            code = next(c for t, c in DOMAIN_CODES.items() if isinstance(error, t))
            field = error.field if isinstance(error, InvalidRequest) else ""
            return Mapped(code, error.reason, error.message, error.metadata, field=field)
        case InvalidPositionError():
            return Mapped(grpc.StatusCode.INVALID_ARGUMENT, "POSITION_INVALID", str(error), {})
        case Overloaded():
            return Mapped(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                error.reason,
                error.message,
                {},
                retry_after_ms=error.retry_after_ms,
            )
        case StoreError():
            return _map_store_error(error)
        case PositionNotReached() | ShuttingDown() | OwnerUnavailable():
            return _map_server_error(error)
    return None


def _map_server_error(error: PositionNotReached | ShuttingDown | OwnerUnavailable) -> Mapped:
    if isinstance(error, PositionNotReached):
        return Mapped(grpc.StatusCode.DEADLINE_EXCEEDED, "POSITION_NOT_REACHED", str(error), {})
    if isinstance(error, OwnerUnavailable):
        return Mapped(
            grpc.StatusCode.UNAVAILABLE,
            OWNER_UNAVAILABLE,
            str(error),
            {},
            retry_after_ms=limits.unavailable_retry_after_ms,
        )
    return Mapped(
        grpc.StatusCode.UNAVAILABLE,
        "SHUTTING_DOWN",
        "the server is shutting down",
        {},
        retry_after_ms=limits.unavailable_retry_after_ms,
    )


def _map_store_error(error: StoreError) -> Mapped:
    match error:
        case WrongExpectedVersion():
            return Mapped(
                grpc.StatusCode.ABORTED,
                "CONCURRENT_MODIFICATION",
                "the stream changed concurrently; retry",
                {"stream_id": error.stream_id},
            )
        case CommitOutcomeUnknown():
            return Mapped(
                grpc.StatusCode.UNAVAILABLE,
                "COMMIT_OUTCOME_UNKNOWN",
                "the commit's outcome is unknown; retry with the same request_id",
                {},
                retry_after_ms=limits.unavailable_retry_after_ms,
            )
        case StoreUnavailable() | DurabilityUnsafe() | SchemaTooNew():
            return Mapped(
                grpc.StatusCode.UNAVAILABLE,
                "STORE_UNAVAILABLE",
                "the event store is unavailable",
                {},
                retry_after_ms=limits.unavailable_retry_after_ms,
            )
    return Mapped(
        grpc.StatusCode.UNAVAILABLE,
        "STORE_UNAVAILABLE",
        "the event store failed",
        {},
        retry_after_ms=limits.unavailable_retry_after_ms,
    )


def to_status(error: BaseException) -> status_pb2.Status:
    """Return the google.rpc.Status for `error` (INTERNAL with a correlation id if unknown)."""
    mapped = map_exception(error)
    if mapped is None:
        correlation_id = uuid.uuid4().hex
        log.error("unhandled error %s", correlation_id, exc_info=error)
        mapped = Mapped(
            grpc.StatusCode.INTERNAL,
            "INTERNAL_ERROR",
            f"internal error; quote {correlation_id}",
            {"correlation_id": correlation_id},
        )
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=mapped.reason, domain=ERROR_DOMAIN, metadata=dict(mapped.metadata)
            )
        )
    ]
    if mapped.field:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=mapped.field, description=mapped.message
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    if mapped.retry_after_ms:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(mapped.retry_after_ms)
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(
        code=getattr(code_pb2, mapped.code.name), message=mapped.message, details=details
    )


def _pack(
    message: error_details_pb2.ErrorInfo
    | error_details_pb2.BadRequest
    | error_details_pb2.RetryInfo,
) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


async def abort_for(
    context: grpc.aio.ServicerContext[object, object], error: BaseException
) -> NoReturn:
    """End the call with the status that `error` maps to."""
    status = rpc_status.to_status(to_status(error))
    # grpc-stubs predates abort_with_status on the aio context; grpc.aio has it.
    await context.abort_with_status(status)  # type: ignore[attr-defined]
    raise AssertionError("abort_with_status returned")  # pragma: no cover - it always raises.


def not_its_own(error: grpc.aio.AioRpcError) -> bool:
    """Tell whether another command server refused a call because the entity is not its own.

    Its range moved since the caller last looked at the owners: asked again, the owner the
    leases name now may take it.
    """
    return (
        error.code() == grpc.StatusCode.UNAVAILABLE
        and from_rpc_error(error).reason == OWNER_UNAVAILABLE
    )


def hop_bulk_error(error: grpc.aio.AioRpcError) -> pb.BulkError:
    """Return what another command server's failed call says, as one command's BulkError.

    Code, message, ErrorInfo reason and metadata, and RetryInfo delay as it sent them; the
    reason is empty when no status of its own came back (the server was not reached).
    """
    failed = from_rpc_error(error)
    result = pb.BulkError(
        code=error.code().value[0], message=error.details() or "", reason=failed.reason
    )
    result.metadata.update(failed.metadata)
    if failed.retry_delay_ms:
        result.retry_delay.FromMilliseconds(failed.retry_delay_ms)
    return result
