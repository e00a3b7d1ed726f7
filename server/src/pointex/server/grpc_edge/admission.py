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

    @contextlib.contextmanager
    def admitted(self, principal: Principal | None, *, stream: bool) -> Iterator[None]:
        """Hold a place for the call while it runs; raise Overloaded when there is none."""
        if principal is None or principal.role is not Role.PARTNER:
            yield
            return
        counts = self._streams if stream else self._calls
        allowed = limits.partner_streams_max if stream else limits.partner_calls_in_flight_max
        partner = principal.principal_id
        if counts.get(partner, 0) >= allowed:
            self.shed += 1
            what = "streams" if stream else "calls"
            raise Overloaded(
                "OVERLOADED",
                f"too many {what} in flight for this partner; retry later",
                limits.overload_retry_after_ms,
            )
        counts[partner] = counts.get(partner, 0) + 1
        try:
            yield
        finally:
            counts[partner] -= 1
            if not counts[partner]:
                del counts[partner]
