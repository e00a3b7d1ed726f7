"""The recovery scan: one read of the log at start restores every open process of every kind.

Each kind of process (transfers, order placements and releases, trades) keeps a tracker:
the event types that open and end its steps, what it saw open, and how to resume it. The
scan reads the log once from the checkpoint, decodes each event of a tracked type once and
hands it to its tracker; then each tracker resumes what is still open, before the server
takes a command. The checkpoint (a snapshot, deletable at any time) is the position before
the oldest step still open after the scan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from pointex.server import limits
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, Snapshot, StoreError

log = logging.getLogger(__name__)

# Every kind of multi-step process the command server runs, each with a tracker below.
PROCESS_KINDS = ("transfer", "placement", "trade", "activation")
CHECKPOINT = "recovery-processes"
# The checkpoints of earlier releases, one per kind: a store written by one is scanned from
# the older of the two the first time, then only the one checkpoint is kept.
_EARLIER_CHECKPOINTS = ("recovery-transfers", "recovery-market")


class OpenSteps(Protocol):
    """What the recovery scan needs of one kind of process."""

    kind: str  # The kind's name, for logs (`transfer`, `trade`…).
    types: frozenset[str]  # The stored event types that open or end a step of this kind.

    def see(self, position: int, event: object) -> None:
        """Take one decoded event of `types`, in log order."""

    def oldest(self) -> int | None:
        """Return the position where the oldest open step opened, or None if none is open."""

    def open_count(self) -> int:
        """Return how many steps are open."""

    async def resume(self) -> None:
        """Finish, compensate or re-arm every open step (before any command is taken)."""


async def recover(store: EventStore, kinds: Sequence[OpenSteps]) -> dict[str, int]:
    """Scan the log once, resume every open step of every kind; return the open count of each.

    Every kind the server runs must be given: the checkpoint saved afterwards assumes that
    nothing open before it belongs to a kind left out.
    """
    after = await _checkpoint(store)
    by_type: dict[str, list[OpenSteps]] = {}
    for steps in kinds:
        for type_name in steps.types:
            by_type.setdefault(type_name, []).append(steps)
    while page := await store.read_all(after, limits.read_batch_events_max):
        for recorded in page:
            trackers = by_type.get(recorded.type)
            if trackers:
                event = codec.decode(recorded)
                for steps in trackers:
                    steps.see(recorded.position, event)
        after = page[-1].position
    found = {steps.kind: steps.open_count() for steps in kinds}
    for steps in kinds:
        await steps.resume()
    oldest = [p for p in (steps.oldest() for steps in kinds) if p is not None]
    await _save_checkpoint(store, min(oldest, default=after + 1) - 1)
    return found


async def _checkpoint(store: EventStore) -> int:
    """Return the position up to which the log is known to hold no open step."""
    snapshot = await store.load_snapshot(CHECKPOINT)
    if snapshot is not None:
        return int(snapshot.data)
    earlier = [await store.load_snapshot(name) for name in _EARLIER_CHECKPOINTS]
    if all(snapshot is not None for snapshot in earlier):
        return min(int(snapshot.data) for snapshot in earlier if snapshot is not None)
    return 0


async def _save_checkpoint(store: EventStore, safe: int) -> None:
    try:
        data = str(max(safe, 0)).encode()
        await store.save_snapshot(Snapshot(CHECKPOINT, max(safe, 1), "RecoveryCheckpoint", 1, data))
    except StoreError as error:
        log.warning("could not save the recovery checkpoint: %s", error)
