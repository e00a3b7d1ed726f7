"""Authentication and role checks: bearer token -> Principal, method -> allowed roles.

Callers send `authorization: Bearer <token>`. Tokens are configured in a file
(`pointex.client.token_file`: one `<role> <principal_id> sha256:<digest>` a line, written
by `pointex admin token`), read again when it changes, so tokens are rotated and revoked
without a restart. Tokens are compared by their SHA-256 digest with `hmac.compare_digest`,
never logged. A peer that fails to authenticate too often is refused for a while
(RESOURCE_EXHAUSTED / AUTH_RATE_LIMITED), unless it presents a token already proven.

Which role may call which method is THE table below; object-level checks (is this the
partner's account?) happen in the domain, which receives the principal as a `Caller`.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

from pointex.client import token_file
from pointex.client.token_file import TokenFileError
from pointex.server import limits
from pointex.server.domain.errors import PermissionDenied, Unauthenticated
from pointex.server.domain.values import Principal, Role
from pointex.server.overload import Overloaded

__all__ = ["METHOD_ROLES", "TokenFileError", "TokenTable", "current_principal", "guard_for"]

log = logging.getLogger(__name__)

# Health, reflection, and what command servers ask each other (command/edge/peer_servicer.py:
# a step a process's record says is due, which the process takes anyway).
_OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/pointex.cluster.v1.PeerService/",
)
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
            "SetAccountTier",
            "ReverseIssue",
            "ReverseRedeem",
            "RefundPurchase",
        )
    },
    "/pointex.v1.CommandService/MintPoints": _OPERATORS,
    "/pointex.v1.CommandService/SetProgramRules": _OPERATORS,
    "/pointex.v1.CommandService/ListSliceLeases": _OPERATORS,
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
            "GetProgramRules",
            "QuoteTransfer",
            "QuoteOrder",
        )
    },
    "/pointex.v1.QueryService/CheckInvariants": _OPERATORS,
    "/pointex.v1.QueryService/RebuildProjections": _OPERATORS,
    "/pointex.v1.QueryService/GetProjectionStatus": _OPERATORS,
}

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("pointex_principal")


def current_principal() -> Principal:
    """Return the principal of the call being handled (set by the interceptor)."""
    return _current.get()


def _stamp(path: Path) -> tuple[int, int, int]:
    """Return what tells that a file changed: its modification time, size and inode."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _load(path: Path) -> dict[bytes, Principal]:
    entries = token_file.read(path)
    clear = sum(1 for entry in entries if not entry.hashed)
    if clear:
        log.warning(
            "tokens stored in clear text; replace them with `pointex admin token create`",
            extra={"tokens_file": str(path), "clear_tokens": clear},
        )
    return {e.digest: Principal(e.principal_id, Role(e.role.upper())) for e in entries}


class _PeerFailures:
    """Failed authentications per peer address in a sliding window, for a bounded set of peers."""

    def __init__(self) -> None:
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, peer: str, now: float) -> list[float]:
        window_s = limits.auth_failure_window_ms / 1000
        times = [t for t in self._failures.get(peer, ()) if now - t < window_s]
        if times:
            self._failures[peer] = times
        else:
            self._failures.pop(peer, None)
        return times

    def blocked_for_ms(self, peer: str, now: float) -> int:
        """Return how long `peer` stays refused (0: it is not)."""
        times = self._recent(peer, now)
        if len(times) < limits.auth_failures_per_peer_max:
            return 0
        return max(1, int((times[0] + limits.auth_failure_window_ms / 1000 - now) * 1000))

    def failed(self, peer: str, now: float) -> None:
        """Count one failure of `peer`."""
        times = self._recent(peer, now)
        times.append(now)
        self._failures[peer] = times
        self._failures.move_to_end(peer)
        while len(self._failures) > limits.auth_peers_tracked_max:
            self._failures.popitem(last=False)  # The peer quiet the longest is forgotten.


class TokenTable:
    """Token digests -> principals, read from the tokens file and again when it changes."""

    def __init__(self, entries: Mapping[bytes, Principal], path: Path | None = None) -> None:
        """Hold the given digest -> principal entries (read from `path`, if given)."""
        self._entries = dict(entries)
        self._path = path
        self._stamp = _stamp(path) if path is not None else None
        # Headers already proven valid, so that a caller's every call does not hash and
        # compare again. Only successes are kept: an unknown token always takes the
        # constant-time path. Bounded, since one token can be sent with other spacing.
        self._proven: dict[str, Principal] = {}
        self._peers = _PeerFailures()
        self.failures = 0  # Failed authentications, for metrics.
        self.rate_limited = 0  # Calls refused because their peer failed too often.
        self.reloads = 0  # Times the file was read again.

    @classmethod
    def from_file(cls, path: Path) -> TokenTable:
        """Read the tokens file at `path` (see pointex.client.token_file)."""
        return cls(_load(path), path)

    @property
    def path(self) -> Path | None:
        """Return the tokens file this table follows, if any."""
        return self._path

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Read the file again if it changed (or `force`); keep the tokens in use if unusable."""
        if self._path is None:
            return False
        try:
            stamp = _stamp(self._path)
        except OSError as error:
            log.error("tokens file unreadable; keeping the tokens in use: %s", error.strerror)  # noqa: TRY400 - the message says it all.
            return False
        if stamp == self._stamp and not force:
            return False
        self._stamp = stamp
        try:
            entries = _load(self._path)
        except TokenFileError as error:
            log.error("tokens file not reloaded; keeping the tokens in use: %s", error)  # noqa: TRY400 - the message says it all.
            return False
        self._entries = entries
        self._proven = {}  # A revoked token must not stay remembered.
        self.reloads += 1
        log.info("tokens file reloaded", extra={"tokens": len(entries)})
        return True

    def authenticate(self, metadata: Any, peer: Callable[[], str] = str) -> Principal:
        """Return the principal whose bearer token the metadata carries.

        `peer` returns the caller's address (asked only when the token is not one already
        proven): one that failed too often is refused for a while.
        """
        # Metadata is a sequence of (key, value) pairs; keys are lower-case on the wire.
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if isinstance(header, str):
            proven = self._proven.get(header)
            if proven is not None:
                return proven
        address = peer().rsplit(":", 1)[0]  # "ipv4:127.0.0.1:5123" -> without the port
        now = time.monotonic()
        blocked_ms = self._peers.blocked_for_ms(address, now)
        if blocked_ms:
            self.rate_limited += 1
            raise Overloaded(
                "AUTH_RATE_LIMITED", "too many failed authentications; retry later", blocked_ms
            )
        try:
            found = self._find(header)
        except Unauthenticated:
            self.failures += 1
            self._peers.failed(address, now)
            raise
        if len(self._proven) < limits.proven_tokens_max:
            self._proven[header] = found  # type: ignore[index]  # A str: _find checked it.
        return found

    def _find(self, header: object) -> Principal:
        if not isinstance(header, str) or not header.startswith("Bearer "):
            raise Unauthenticated("TOKEN_MISSING", "send authorization: Bearer <token>")
        digest = token_file.digest(header.removeprefix("Bearer ").strip())
        found = None
        for known, principal in self._entries.items():
            # Digests are compared in constant time; the loop visits every entry.
            if hmac.compare_digest(known, digest):
                found = principal
        if found is None:
            raise Unauthenticated("TOKEN_INVALID", "the token is not valid")
        return found


def authorize(method: str, principal: Principal) -> None:
    """Raise PermissionDenied unless the principal's role may call `method`."""
    if principal.role not in METHOD_ROLES.get(method, frozenset()):
        raise PermissionDenied("ROLE_FORBIDDEN", f"role {principal.role.value} may not call this")


def guard_for(tokens: TokenTable, method: str) -> Callable[[Any], Principal] | None:
    """Return the check to run before `method`'s handler (it returns the caller), or None."""
    if method.startswith(_OPEN_SERVICES):
        return None

    def guard(context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        principal = tokens.authenticate(context.invocation_metadata(), context.peer)
        authorize(method, principal)
        _current.set(principal)
        return principal

    return guard
