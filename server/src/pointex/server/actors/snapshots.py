"""Account snapshots: a cache of an account's state at a stream version.

An actor activates from its latest snapshot plus the events after it, so a long-lived hot
account does not replay its whole history. Snapshots are only a cache: deleting them (all,
or one) loses nothing, the events are replayed instead; a snapshot of a schema this
release does not know is ignored the same way.
"""

from __future__ import annotations

import json
from typing import Final

from pointex.server.domain.account import Account, PendingIssue
from pointex.server.domain.account_state import Purchase
from pointex.server.domain.lots import Lot
from pointex.server.domain.program import LimitedOperation
from pointex.server.domain.usage import Usage
from pointex.server.domain.values import AccountKind, AccountStatus, Instant, Role
from pointex.server.eventstore.port import Snapshot

SNAPSHOT_TYPE: Final = "AccountSnapshot"
# 2: buying_points; 3: tier; 4: usage; 5: pending; 6: lots; 7: purchases
SNAPSHOT_SCHEMA_VERSION: Final = 7


def to_snapshot(stream_id: str, state: Account, version: int, position: int) -> Snapshot:
    """Return the snapshot of `state`, the account as of stream `version` (at `position`)."""
    data = {
        "account_id": state.account_id,
        "kind": state.kind.value,
        "owner_partner_id": state.owner_partner_id,
        "status": state.status.value,
        "available_points": state.available_points,
        "held_points": state.held_points,
        "buying_points": state.buying_points,
        "tier": state.tier,
        "pending": [
            [issue.transfer_id, issue.amount_points, issue.activates_at.unix_ms]
            for issue in state.pending
        ],
        "usage": {
            "hours": [[op.value, hour, points] for op, hour, points in state.usage.hours],
            "years": [[op.value, year, points] for op, year, points in state.usage.years],
        },
        "lots": _lots_data(state.lots),
        "noticed_through_ms": state.noticed_through_ms,
        "purchases": [
            [
                p.trade_id,
                p.amount_points,
                p.refundable_until.unix_ms,
                _lots_data(p.lots),
                p.spent,
            ]
            for p in state.purchases
        ],
        "frozen_by_role": state.frozen_by_role.value if state.frozen_by_role else None,
        "position": position,
    }
    encoded = json.dumps(data, separators=(",", ":")).encode()
    return Snapshot(stream_id, version, SNAPSHOT_TYPE, SNAPSHOT_SCHEMA_VERSION, encoded)


def from_snapshot(snapshot: Snapshot) -> tuple[Account, int, int] | None:
    """Return (state, version, position) from a snapshot, or None if it cannot be used."""
    if snapshot.type != SNAPSHOT_TYPE or snapshot.schema_version != SNAPSHOT_SCHEMA_VERSION:
        return None
    data = json.loads(snapshot.data)
    frozen_by = data["frozen_by_role"]
    state = Account(
        account_id=data["account_id"],
        kind=AccountKind(data["kind"]),
        owner_partner_id=data["owner_partner_id"],
        status=AccountStatus(data["status"]),
        available_points=int(data["available_points"]),
        held_points=int(data["held_points"]),
        frozen_by_role=Role(frozen_by) if frozen_by else None,
        buying_points=int(data["buying_points"]),
        tier=str(data["tier"]),
        pending=tuple(
            PendingIssue(str(transfer_id), int(points), Instant(int(at_ms)))
            for transfer_id, points, at_ms in data["pending"]
        ),
        usage=Usage(
            tuple((LimitedOperation(op), int(h), int(p)) for op, h, p in data["usage"]["hours"]),
            tuple((LimitedOperation(op), int(y), int(p)) for op, y, p in data["usage"]["years"]),
        ),
        lots=_lots_of(data["lots"]),
        noticed_through_ms=int(data["noticed_through_ms"]),
        purchases=tuple(
            Purchase(str(trade_id), int(points), Instant(int(until)), _lots_of(lots), bool(spent))
            for trade_id, points, until, lots, spent in data["purchases"]
        ),
    )
    state.check()
    return state, snapshot.stream_version, int(data["position"])


def _lots_data(lots: tuple[Lot, ...]) -> list[list[int]]:
    return [[lot.earned_at.unix_ms, lot.expires_at.unix_ms, lot.amount_points] for lot in lots]


def _lots_of(data: list[list[int]]) -> tuple[Lot, ...]:
    return tuple(
        Lot(Instant(int(earned)), Instant(int(expires)), int(points))
        for earned, expires, points in data
    )
