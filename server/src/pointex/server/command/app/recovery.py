"""The recovery scan: one read of the log at start restores every open process of every kind.

Each kind of process (transfers, order placements and releases, trades) keeps a tracker:
the event types that open and end its steps, what it saw open, and how to resume it. The
scan reads the log once from the checkpoint, decodes each event of a tracked type once and
hands it to its tracker; then each tracker resumes what is still open, before the server
takes a command. The checkpoint (a snapshot) is the position before the oldest step still
open after the scan, with what a kind keeps of its own (`KeptSteps`: the expiry calendar).
Deleting it costs one scan of the whole log at the next start, and loses nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from pointex.server import limits
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, Snapshot, StoreError

log = logging.getLogger(__name__)

# Every kind of multi-step process the command server runs, each with a tracker below.
PROCESS_KINDS = ("transfer", "placement", "trade", "activation", "expiry")
CHECKPOINT = "recovery-processes"
# 1: the position alone (data: its digits); 2: JSON, the position and what kinds keep. A
# checkpoint of schema 1 was written by a release without lots: nothing before it has any.
_CHECKPOINT_SCHEMA = 2
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


@runtime_checkable
class KeptSteps(Protocol):
    """A kind that keeps state in the checkpoint, so the scan need not read before it."""

    def restore(self, saved: object) -> None:
        """Take what the checkpoint kept (before the scan)."""

    def saved(self) -> Any:
        """Return what the checkpoint keeps, as JSON values (after `resume`)."""


@runtime_checkable
class KeptByRange(KeptSteps, Protocol):
    """A kind whose kept state splits by slice range (a checkpoint of each range keeps its own)."""

    def saved_by(self, key: Callable[[str], int]) -> dict[int, Any]:
        """Return what the checkpoints keep, split by `key` of each account id."""


def range_checkpoint(slice_range: int) -> str:
    """Return the name of one slice range's checkpoint (servers that balance the ranges)."""
    return f"{CHECKPOINT}-range-{slice_range}"


def checkpoint_of(ranges: Sequence[int], every: int) -> str:
    """Return the checkpoint's name for a server of `ranges` (of `every` slice ranges).

    A server of every range keeps `CHECKPOINT`; one of part of them a checkpoint of its own
    (`recovery-processes-0-31`), since what is open, and what the expiry calendar keeps,
    are its ranges' alone.
    """
    if len(ranges) == every:
        return CHECKPOINT
    runs: list[list[int]] = []
    for r in sorted(ranges):
        if runs and runs[-1][1] == r - 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    return CHECKPOINT + "-" + "+".join(f"{a}-{b}" for a, b in runs)


async def recover(
    store: EventStore, kinds: Sequence[OpenSteps], checkpoint: str = CHECKPOINT
) -> dict[str, int]:
    """Scan the log once, resume every open step of every kind; return the open count of each.

    Every kind the server runs must be given: the checkpoint saved afterwards assumes that
    nothing open before it belongs to a kind left out. `checkpoint` names it (checkpoint_of).
    """
    after, kept = await _checkpoint(store, checkpoint)
    for steps in kinds:
        if isinstance(steps, KeptSteps) and steps.kind in kept:
            steps.restore(kept[steps.kind])
    after = await _scan(store, kinds, after)
    found = {steps.kind: steps.open_count() for steps in kinds}
    for steps in kinds:
        await steps.resume()
    oldest = [p for p in (steps.oldest() for steps in kinds) if p is not None]
    keep = {steps.kind: steps.saved() for steps in kinds if isinstance(steps, KeptSteps)}
    await _save_checkpoint(store, checkpoint, min(oldest, default=after + 1) - 1, keep)
    return found


async def recover_ranges(
    store: EventStore,
    kinds: Sequence[OpenSteps],
    ranges: Sequence[int],
    range_of_account: Callable[[str], int],
    serve: Callable[[], None],
) -> dict[str, int]:
    """Scan the log for the open steps of the slice ranges just taken; serve; resume them.

    `kinds` track the accounts of `ranges` only. The scan starts at the earliest of the
    ranges' checkpoints (`range_checkpoint`; a range without one: the whole server's, else
    the log's start), since a checkpoint stays a safe start forever: nothing opened before
    it was open then, and what opened since is after it. `serve` is called once the scan
    found what is open, before it is resumed. Each range's checkpoint is saved afterwards.
    """
    checkpoints = [await _saved(store, range_checkpoint(r)) for r in ranges]
    if None in checkpoints:
        checkpoints.append(await _checkpoint(store, CHECKPOINT))
    for found in filter(None, checkpoints):
        for steps in kinds:
            if isinstance(steps, KeptSteps) and steps.kind in found[1]:
                steps.restore(found[1][steps.kind])
    after = await _scan(store, kinds, min(found[0] for found in checkpoints if found))
    found_open = {steps.kind: steps.open_count() for steps in kinds}
    serve()
    for steps in kinds:
        await steps.resume()
    oldest = [p for p in (steps.oldest() for steps in kinds) if p is not None]
    safe = min(oldest, default=after + 1) - 1
    kept = {
        steps.kind: steps.saved_by(range_of_account)
        for steps in kinds
        if isinstance(steps, KeptByRange)
    }
    for slice_range in ranges:
        own = {kind: by_range.get(slice_range, []) for kind, by_range in kept.items()}
        await _save_checkpoint(store, range_checkpoint(slice_range), safe, own)
    return found_open


async def _scan(store: EventStore, kinds: Sequence[OpenSteps], after: int) -> int:
    """Hand every event of a tracked type after `after` to its kinds; return the last read."""
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
    return after


async def _saved(store: EventStore, name: str) -> tuple[int, dict[str, Any]] | None:
    """Return a checkpoint of the current schema, None if there is none."""
    return _current(await store.load_snapshot(name))


def _current(snapshot: Snapshot | None) -> tuple[int, dict[str, Any]] | None:
    """Return a checkpoint's position and what kinds kept, if it is of the current schema."""
    if snapshot is None or snapshot.schema_version != _CHECKPOINT_SCHEMA:
        return None
    data = json.loads(snapshot.data)
    return int(data["position"]), dict(data["kept"])


async def _checkpoint(store: EventStore, name: str) -> tuple[int, dict[str, Any]]:
    """Return the position up to which the log holds no open step, and what kinds kept."""
    snapshot = await store.load_snapshot(name)
    current = _current(snapshot)
    if current is not None:
        return current
    if snapshot is not None and snapshot.schema_version == 1:
        return int(snapshot.data), {}
    if snapshot is not None:
        log.warning(
            "recovery checkpoint of unknown schema %d: scanning the whole log",
            snapshot.schema_version,
        )
        return 0, {}
    if name != CHECKPOINT:
        return 0, {}
    earlier = [await store.load_snapshot(name) for name in _EARLIER_CHECKPOINTS]
    if all(snapshot is not None for snapshot in earlier):
        return min(int(snapshot.data) for snapshot in earlier if snapshot is not None), {}
    return 0, {}


async def _save_checkpoint(store: EventStore, name: str, safe: int, kept: dict[str, Any]) -> None:
    try:
        data = json.dumps({"position": max(safe, 0), "kept": kept}, separators=(",", ":"))
        checkpoint = Snapshot(
            name, max(safe, 1), "RecoveryCheckpoint", _CHECKPOINT_SCHEMA, data.encode()
        )
        await store.save_snapshot(checkpoint)
    except StoreError as error:
        log.warning("could not save the recovery checkpoint: %s", error)
