"""Position tokens: the opaque, versioned form of a position on the wire.

A `pointex.v1.Position` wraps bytes whose first byte names the format. Format 1 is one
global position as an 8-byte big-endian unsigned integer. Clients compare tokens and pass
them back (`min_position`, `from_position`); they never do arithmetic on them, so a later
partitioned store can introduce a per-slice format without breaking anyone.
"""

from __future__ import annotations

from typing import Final

from pointex.v1 import common_pb2

FORMAT_GLOBAL: Final = 1
_GLOBAL_TOKEN_BYTES: Final = 9
_POSITION_MAX: Final = 2**64 - 1


class InvalidPositionError(ValueError):
    """A position token is malformed or of a format this release does not know."""


def encode_global(position: int) -> bytes:
    """Return the format-1 token of a global position (0 = before the first event)."""
    assert 0 <= position <= _POSITION_MAX, position
    return bytes([FORMAT_GLOBAL]) + position.to_bytes(8, "big")


def decode_global(token: bytes) -> int:
    """Return the global position in `token`; an empty token means 0 (the beginning)."""
    if not token:
        return 0
    if token[0] != FORMAT_GLOBAL:
        raise InvalidPositionError(f"unknown position format {token[0]}")
    if len(token) != _GLOBAL_TOKEN_BYTES:
        raise InvalidPositionError(f"a format-1 position has 9 bytes, not {len(token)}")
    return int.from_bytes(token[1:], "big")


def position_message(position: int) -> common_pb2.Position:
    """Return the `pointex.v1.Position` of a global position; 0 travels as an empty token."""
    return common_pb2.Position(token=encode_global(position) if position else b"")


def later(current: common_pb2.Position | None, seen: common_pb2.Position) -> common_pb2.Position:
    """Return whichever of two positions is further along (the one just seen if not comparable).

    A client keeps the furthest position it has seen to read its own writes; positions of a
    format this release does not know cannot be compared, and the newest one seen is kept.
    """
    if current is None or not current.token:
        return seen
    try:
        return seen if decode_global(seen.token) >= decode_global(current.token) else current
    except InvalidPositionError:
        return seen
