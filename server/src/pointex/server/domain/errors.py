"""Rejections of commands: every one is a `DomainError` with a machine-readable reason.

The reason strings are the names of `pointex.v1.ErrorReason` values without their
`ERROR_REASON_` prefix. The subclass decides the gRPC status code (grpc_edge/status.py
holds that table); the domain knows nothing of gRPC.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


class DomainError(Exception):
    """A command was rejected; nothing changed."""

    def __init__(self, reason: str, message: str, **metadata: str) -> None:
        """Record the machine-readable reason, a short message and string metadata."""
        assert reason.isupper(), reason
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata))


class InvalidArgument(DomainError):
    """The command is malformed whatever the state (INVALID_ARGUMENT)."""


class NotFound(DomainError):
    """The command names something that does not exist (NOT_FOUND)."""


class AlreadyExists(DomainError):
    """The command would create something that exists already (ALREADY_EXISTS)."""


class FailedPrecondition(DomainError):
    """The state does not allow the command now (FAILED_PRECONDITION)."""


class PermissionDenied(DomainError):
    """The caller may not do this to this object (PERMISSION_DENIED)."""


class Unauthenticated(DomainError):
    """The caller presented no valid credential (UNAUTHENTICATED)."""


# Reasons, as constants so a typo is a NameError rather than a wrong reason on the wire.
INVALID_FIELD = "INVALID_FIELD"
FIELD_TOO_LONG = "FIELD_TOO_LONG"
AMOUNT_NOT_POSITIVE = "AMOUNT_NOT_POSITIVE"
AMOUNT_TOO_LARGE = "AMOUNT_TOO_LARGE"
BALANCE_CEILING_EXCEEDED = "BALANCE_CEILING_EXCEEDED"
ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
ACCOUNT_ALREADY_EXISTS = "ACCOUNT_ALREADY_EXISTS"
ACCOUNT_KIND_MISMATCH = "ACCOUNT_KIND_MISMATCH"
ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
ACCOUNT_NOT_EMPTY = "ACCOUNT_NOT_EMPTY"
SAME_ACCOUNT = "SAME_ACCOUNT"
INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"
NOT_OWNER = "NOT_OWNER"
ROLE_FORBIDDEN = "ROLE_FORBIDDEN"
IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
