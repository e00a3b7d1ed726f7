"""Project a batch of feed events into the row changes of one read-store transaction.

The caller loads the accounts the batch touches (`account_ids_of`) and passes them in; the
batch works on copies and returns every change at once (`Changes`). Events this release does
not project (market, trade, idempotency records) still count: the checkpoint passes them.

Account streams carry the balances after each event, so every movement's balance is also
checked against the event (paired assertions): a mismatch is a bug, and the projection stops
at that position rather than serve wrong numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pointex.server.query.projections.handlers import HANDLERS
from pointex.server.query.projections.state import ACCOUNT_CATEGORY, BatchState, position_of
from pointex.server.query.readstore.port import AccountRow, Changes
from pointex.v1 import events_pb2

# The schema version of every payload type this code projects.
_SCHEMA_VERSION = 1


class UnknownSchemaVersion(Exception):
    """An event has a payload schema newer than this release projects; upgrade to go on."""


def account_ids_of(events: Sequence[events_pb2.Event]) -> list[str]:
    """Return the accounts whose rows projecting `events` needs, without repeats."""
    ids = {
        event.stream_id.removeprefix(ACCOUNT_CATEGORY): None
        for event in events
        if event.stream_id.startswith(ACCOUNT_CATEGORY)
    }
    return list(ids)


def project_batch(
    events: Sequence[events_pb2.Event], accounts: Mapping[str, AccountRow], after_position: int
) -> Changes:
    """Return the changes `events` (consecutive, after `after_position`) make to the rows."""
    assert events, "an empty batch changes nothing"
    batch = BatchState(accounts=dict(accounts))
    expected = after_position
    for event in events:
        position = position_of(event)
        # The feed is gap-free and in order when unfiltered; a hole here is a bug upstream.
        assert position == expected + 1, (expected, position)
        expected = position
        field_name = event.WhichOneof("payload")
        handler = HANDLERS.get(field_name or "")
        if handler is None:
            continue
        if event.schema_version != _SCHEMA_VERSION:
            raise UnknownSchemaVersion(f"{event.type} v{event.schema_version} at {position}")
        handler(batch, event, getattr(event, field_name or ""))
    changes = Changes(
        after_position=after_position,
        position=expected,
        events=len(events),
        accounts=tuple(batch.accounts[account_id] for account_id in batch.changed),
        movements=tuple(batch.movements),
        notifications=tuple(batch.notifications),
        in_flight_added=tuple(batch.in_flight_added.values()),
        in_flight_removed=tuple(batch.in_flight_removed),
        minted_points=batch.minted_points,
        burned_points=batch.burned_points,
    )
    changes.check()
    return changes
