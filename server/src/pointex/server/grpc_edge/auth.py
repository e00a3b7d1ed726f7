"""Authentication and role checks: bearer token -> Principal, method -> allowed roles.

Callers send `authorization: Bearer <token>`. Tokens are configured in a file, one per
line: `<role> <principal_id> <token>`; role is operator, partner, payment_provider or
query_server, and a partner's principal id is its partner (tenant) id. Tokens are
compared by their SHA-256 digest with `hmac.compare_digest`, never logged.

Which role may call which method is THE table below; object-level checks (is this the
partner's account?) happen in the domain, which receives the principal as a `Caller`.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

from pointex.server import limits
from pointex.server.domain.errors import PermissionDenied, Unauthenticated
from pointex.server.domain.values import Principal, Role

_OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")
_PARTNERS = frozenset({Role.OPERATOR, Role.PARTNER})
_PROVIDERS = frozenset({Role.OPERATOR, Role.PAYMENT_PROVIDER})
_OPERATORS = frozenset({Role.OPERATOR})

# Method -> roles allowed. A method missing here is refused for every role (deny by default).
METHOD_ROLES: Mapping[str, frozenset[Role]] = {
    **{
        f"/pointex.v1.CommandService/{rpc}": _PARTNERS
        for rpc in (
            "OpenAccount",
            "IssuePoints",
            "RedeemPoints",
            "TransferPoints",
            "FreezeAccount",
            "UnfreezeAccount",
            "CloseAccount",
            "PlaceOrder",
            "CancelOrder",
            "ExecuteBulk",
        )
    },
    "/pointex.v1.CommandService/MintPoints": _OPERATORS,
    "/pointex.v1.CommandService/BurnPoints": _OPERATORS,
    "/pointex.v1.CommandService/ConfirmPayment": _PROVIDERS,
    "/pointex.v1.CommandService/FailPayment": _PROVIDERS,
    "/pointex.v1.EventFeed/Subscribe": frozenset({Role.OPERATOR, Role.QUERY_SERVER}),
    # Reads: partners see their own accounts (checked per object by the query server).
    **{
        f"/pointex.v1.QueryService/{rpc}": _PARTNERS
        for rpc in (
            "GetAccount",
            "ListAccounts",
            "GetAccountHistory",
            "GetOrder",
            "ListOrders",
            "GetTrade",
            "ListTrades",
            "ListMarkets",
            "GetOrderBook",
            "ListRecentTrades",
            "GetMarketStats",
            "WatchNotifications",
        )
    },
    "/pointex.v1.QueryService/CheckInvariants": _OPERATORS,
    "/pointex.v1.QueryService/RebuildProjections": _OPERATORS,
    "/pointex.v1.QueryService/GetProjectionStatus": _OPERATORS,
}

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("pointex_principal")


class TokenFileError(ValueError):
    """The tokens file cannot be used; the message names the line."""


def current_principal() -> Principal:
    """Return the principal of the call being handled (set by the interceptor)."""
    return _current.get()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    """Token digests -> principals."""

    def __init__(self, entries: Mapping[bytes, Principal]) -> None:
        """Hold the given digest -> principal entries."""
        self._entries = dict(entries)
        # Headers already proven valid, so that a caller's every call does not hash and
        # compare again. Only successes are kept: an unknown token always takes the
        # constant-time path. Bounded, since one token can be sent with other spacing.
        self._proven: dict[str, Principal] = {}

    @classmethod
    def from_file(cls, path: Path) -> TokenTable:
        """Read `<role> <principal_id> <token>` lines; `#` starts a comment."""
        entries: dict[bytes, Principal] = {}
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3:  # noqa: PLR2004 - role, principal, token.
                raise TokenFileError(f"{path}:{number}: expected <role> <principal_id> <token>")
            role_name, principal_id, token = parts
            try:
                role = Role(role_name.upper())
            except ValueError:
                raise TokenFileError(f"{path}:{number}: unknown role {role_name!r}") from None
            if len(token) < 16:  # noqa: PLR2004 - a short token is guessable.
                raise TokenFileError(f"{path}:{number}: a token needs 16 or more characters")
            if _digest(token) in entries:
                raise TokenFileError(f"{path}:{number}: this token is listed twice")
            entries[_digest(token)] = Principal(principal_id, role)
        if not entries:
            raise TokenFileError(f"{path}: no tokens")
        return cls(entries)

    def authenticate(self, metadata: Any) -> Principal:
        """Return the principal whose bearer token the metadata carries."""
        # Metadata is a sequence of (key, value) pairs; keys are lower-case on the wire.
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if not isinstance(header, str) or not header.startswith("Bearer "):
            raise Unauthenticated("TOKEN_MISSING", "send authorization: Bearer <token>")
        proven = self._proven.get(header)
        if proven is not None:
            return proven
        digest = _digest(header.removeprefix("Bearer ").strip())
        found = None
        for known, principal in self._entries.items():
            # Digests are compared in constant time; the loop visits every entry.
            if hmac.compare_digest(known, digest):
                found = principal
        if found is None:
            raise Unauthenticated("TOKEN_INVALID", "the token is not valid")
        if len(self._proven) < limits.proven_tokens_max:
            self._proven[header] = found
        return found


def authorize(method: str, principal: Principal) -> None:
    """Raise PermissionDenied unless the principal's role may call `method`."""
    if principal.role not in METHOD_ROLES.get(method, frozenset()):
        raise PermissionDenied("ROLE_FORBIDDEN", f"role {principal.role.value} may not call this")


def guard_for(tokens: TokenTable, method: str) -> Callable[[Any], None] | None:
    """Return the check to run before `method`'s handler, or None for open services."""
    if method.startswith(_OPEN_SERVICES):
        return None

    def guard(context: grpc.aio.ServicerContext[Any, Any]) -> None:
        principal = tokens.authenticate(context.invocation_metadata())
        authorize(method, principal)
        _current.set(principal)

    return guard
