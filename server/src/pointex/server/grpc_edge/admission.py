"""Per-partner admission: no partner takes more of a server than its share.

Each partner may have at most `partner_calls_in_flight_max` unary calls and
`partner_streams_max` streams (notification watches, bulk streams) open on one server at
once; past that its call is shed at once with RESOURCE_EXHAUSTED / OVERLOADED and a
RetryInfo delay, before any work, while other partners go on. Operators, payment
providers and the query server are not counted: they are few and trusted, and the
server's own bounds (mailboxes, commit queue, `grpc_concurrent_rpcs_max`) cover them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pointex.server import limits
from pointex.server.domain.values import Principal, Role
from pointex.server.overload import Overloaded


class PartnerAdmission:
    """Counts each partner's calls and streams in flight; sheds what exceeds its share."""

    def __init__(self) -> None:
        """Start with nothing in flight."""
        # Partner id -> calls (streams) in flight. An entry leaves when its count is zero, so
        # the maps hold at most one entry per call in flight.
        self._calls: dict[str, int] = {}
        self._streams: dict[str, int] = {}
        self.shed = 0  # Calls refused, for metrics.

    def enter(self, principal: Principal | None, *, stream: bool) -> str | None:
        """Take a place for the call; return the partner to give it back to (None: not counted).

        Raises Overloaded when the partner has no place left.
        """
        if principal is None or principal.role is not Role.PARTNER:
            return None
        counts = self._streams if stream else self._calls
        allowed = limits.partner_streams_max if stream else limits.partner_calls_in_flight_max
        partner = principal.principal_id
        held = counts.get(partner, 0)
        if held >= allowed:
            self.shed += 1
            what = "streams" if stream else "calls"
            raise Overloaded(
                "OVERLOADED",
                f"too many {what} in flight for this partner; retry later",
                limits.overload_retry_after_ms,
            )
        counts[partner] = held + 1
        return partner

    def leave(self, partner: str | None, *, stream: bool) -> None:
        """Give back the place `enter` took."""
        if partner is None:
            return
        counts = self._streams if stream else self._calls
        left = counts[partner] - 1
        if left:
            counts[partner] = left
        else:
            del counts[partner]

    @contextlib.contextmanager
    def admitted(self, principal: Principal | None, *, stream: bool) -> Iterator[None]:
        """Hold a place for the call while it runs; raise Overloaded when there is none."""
        partner = self.enter(principal, stream=stream)
        try:
            yield
        finally:
            self.leave(partner, stream=stream)
