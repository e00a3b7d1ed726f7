"""Failed calls as one line for people and an exit code for scripts.

Exit codes: 0 success; 1 the server refused the command (or `audit` found violations);
2 the command line is wrong (argparse uses 2 as well); 3 a server could not be reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import grpc
from google.rpc import error_details_pb2, status_pb2

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3

_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
_MS_PER_S: Final = 1000
_NS_PER_MS: Final = 1_000_000
# Without an ErrorInfo these codes come from the gRPC library itself, not from a Pointex
# server: nothing answered (connection refused, name not resolved, no reply in time).
_TRANSPORT_CODES: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit code 2)."""


@dataclass(frozen=True)
class CallFailure:
    """What a failed call said: the gRPC code and the `google.rpc.ErrorInfo` it carried.

    Attributes:
        code: the gRPC status code.
        message: the status message (a short English debug text).
        reason: the ErrorInfo reason (an ErrorReason name without prefix); empty when the
            status carried none, which means the gRPC library produced it, not a server.
        metadata: the ErrorInfo metadata, for example the `position` of a compensated
            transfer.
        retry_delay_ms: the server's `google.rpc.RetryInfo` delay, if it sent one.
    """

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    retry_delay_ms: int | None = None

    @property
    def unreachable(self) -> bool:
        """Return whether no server answered (as opposed to a server refusing)."""
        return not self.reason and self.code in _TRANSPORT_CODES

    @property
    def exit_code(self) -> int:
        """Return the process exit code this failure ends a command with."""
        return EXIT_UNREACHABLE if self.unreachable else EXIT_REFUSED

    def line(self) -> str:
        """Return the failure on one line: code, reason, message and ErrorInfo metadata."""
        parts = [self.code.name]
        if self.reason:
            parts.append(self.reason)
        text = " ".join(parts)
        message = " ".join(self.message.split())  # The library's messages can span lines.
        if message:
            text = f"{text}: {message}"
        if self.metadata:
            pairs = ", ".join(f"{key}={value}" for key, value in sorted(self.metadata.items()))
            text = f"{text} [{pairs}]"
        return text


def describe(error: grpc.RpcError) -> CallFailure:
    """Return what a failed call said, decoding the `grpc-status-details-bin` trailer."""
    if not isinstance(error, grpc.Call):
        return CallFailure(grpc.StatusCode.UNKNOWN, str(error))
    code = error.code()
    message = error.details() or ""
    status = _status_of(error)
    if status is None:
        return CallFailure(code, message)
    reason = ""
    metadata: dict[str, str] = {}
    retry_delay_ms: int | None = None
    info = error_details_pb2.ErrorInfo()
    retry = error_details_pb2.RetryInfo()
    for detail in status.details:
        if detail.Unpack(info):
            reason = str(info.reason)
            metadata = {str(key): str(value) for key, value in info.metadata.items()}
        elif detail.Unpack(retry):
            delay = retry.retry_delay
            retry_delay_ms = int(delay.seconds) * _MS_PER_S + int(delay.nanos) // _NS_PER_MS
    return CallFailure(code, message, reason, metadata, retry_delay_ms)


def _status_of(call: grpc.Call) -> status_pb2.Status | None:
    """Return the rich status a server attached to a failed call, if any."""
    for key, value in call.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None
