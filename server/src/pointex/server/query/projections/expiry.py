"""Program expiry in the projections: points that lapsed, and the notice that they soon will.

A member's earned points are kept in lots by the command side (domain/lots.py). When lots
reach their expiry, the account decides `PointsExpired`: its available points go down by the
lapsed amount and those points leave circulation, as a burn's do. The batch counts them apart
from burns (`expired_points`), and conservation (I1) subtracts both from the minted points.
`PointsExpiringSoon` tells the member of lots lapsing within the program's notice period; it
moves no points, so it writes no movement, only a notification (and the account's version).

The lots the other events carry (debits, credits, sales...) are the command side's to keep;
the query side checks only what an expiry states about itself.
"""

from __future__ import annotations

import dataclasses

from pointex.server.query.projections import notifications
from pointex.server.query.projections.state import (
    BatchState,
    Move,
    apply_move,
    at_us,
    next_version,
    notify_moved,
    position_of,
)
from pointex.v1 import events_pb2, query_service_pb2


def expired(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsExpired) -> None:
    """Take lapsed points out of the account's available points and out of circulation."""
    assert p.amount_points > 0, p
    # Paired with the amount: the lots named are exactly the points that lapsed, each due by
    # the moment the expiry was decided.
    assert sum(lot.amount_points for lot in p.lots) == p.amount_points, p
    assert all(lot.amount_points > 0 for lot in p.lots), p
    decided_ms = p.decided_at.ToMilliseconds()
    assert all(0 < lot.expires_at.ToMilliseconds() <= decided_ms for lot in p.lots), p
    # Only available points lapse (held ones once released), never more than the account has.
    assert p.available_points >= 0, p
    move = Move("EXPIRED", -p.amount_points, available_after=p.available_points)
    account = apply_move(batch, event, p.account_id, move)
    batch.expired_points += p.amount_points
    notify_moved(batch, "POINTS_EXPIRED", account, move)


def expiring_soon(
    batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsExpiringSoon
) -> None:
    """Tell the account's owner that points lapse soon; no balance changes."""
    first_ms = p.first_expires_at.ToMilliseconds()
    assert p.amount_points > 0, p
    assert 0 < first_ms <= p.last_expires_at.ToMilliseconds(), p
    old = batch.account(p.account_id)
    # The lots told of are points the account has: available or held, never pending.
    assert p.amount_points <= old.available_points + old.held_points, (old, p)
    account = dataclasses.replace(old, version=next_version(event, old), updated_at_us=at_us(event))
    batch.put(account)
    position = position_of(event)
    details = query_service_pb2.PointsExpiringSoonDetails(
        amount_points=p.amount_points,
        first_expires_at=p.first_expires_at,
        last_expires_at=p.last_expires_at,
    )
    batch.notify(
        notifications.points_expiring_soon(
            account=account,
            position=position,
            index=batch.next_index(position),
            at_us=at_us(event),
            details=details,
        )
    )
