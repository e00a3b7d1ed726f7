"""Slices and slice ranges: how the log is partitioned, fixed forever (docs/scale-out.md).

Every event is stored with its stream's slice, CRC-32 of the entity id modulo `SLICES`, and
slices are owned by command servers in `SLICE_RANGES` ranges of equal width. Both numbers
are part of the stored data: changing either would re-slice history.
"""

from __future__ import annotations

import zlib
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
