"""Slices and slice ranges: how the log is partitioned, fixed forever (docs/scale-out.md).

Every event is stored with its stream's slice, CRC-32 of the entity id modulo `SLICES`, and
slices are owned by command servers in `SLICE_RANGES` ranges of equal width. Both numbers
are part of the stored data: changing either would re-slice history.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from typing import Final

# Slices partition the log for a scaled-out command side. A slice is stored with every event.
SLICES: Final = 1024
# Slices are owned in ranges of equal width; each event is stored with the epoch of its range,
# and the database maps a slice to its range (migration 0003).
SLICE_RANGES: Final = 64
SLICES_PER_RANGE: Final = SLICES // SLICE_RANGES


def stream_entity_id(stream_id: str) -> str:
    """Return the entity id of a stream: the text after the first ``-``."""
    _, _, entity_id = stream_id.partition("-")
    return entity_id


def stream_slice(stream_id: str) -> int:
    """Return the slice of a stream: CRC-32 of its entity id (UTF-8) modulo `SLICES`.

    CRC-32 rather than ``hash()``: Python salts string hashes per process, and the slice is
    stored forever.
    """
    return zlib.crc32(stream_entity_id(stream_id).encode()) % SLICES


def range_of(stream_id: str) -> int:
    """Return the slice range of a stream (the unit of ownership)."""
    return stream_slice(stream_id) // SLICES_PER_RANGE


def shares(members: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Return each member's ranges when `members` balance them among themselves.

    Rendezvous hashing, bounded: each range goes to the member that ranks highest for it (a
    hash of the member and the range) among those with room left, the ranges taken in order;
    each member has room for 64 / n ranges, rounded down, and the first 64 mod n members to
    fill up take one more. Every member computes the same shares from the same members, a
    member's share differs by at most one range from another's, and a member joining or
    leaving moves few ranges besides those it takes or leaves.
    """
    if not members:
        return {}
    fair, extra = divmod(SLICE_RANGES, len(members))  # `extra` members take one more.
    taken: dict[str, list[int]] = {member: [] for member in members}
    for slice_range in range(SLICE_RANGES):
        ranked = sorted(members, key=lambda member: _rank(member, slice_range), reverse=True)
        winner = next(
            member
            for member in ranked
            if len(taken[member]) < fair or (len(taken[member]) == fair and extra)
        )
        if len(taken[winner]) == fair:
            extra -= 1
        taken[winner].append(slice_range)
    return {member: tuple(ranges) for member, ranges in taken.items()}


def _rank(member: str, slice_range: int) -> bytes:
    return hashlib.blake2b(f"{member}/{slice_range}".encode(), digest_size=8).digest()
