"""An entity another command server owns: its call goes to that server (docs/scale-out.md).

With slice ranges split across command servers, each writes only the entities of the ranges
it holds. A command that reaches an entity of another server's range before it changed
anything raises `Elsewhere`; the edge then forwards the call to the range's owner
(grpc_edge/forwarding.py). Nothing is written before it is raised.
"""

from __future__ import annotations

from pointex.server.slices import range_of


class Elsewhere(Exception):
    """A call reached an entity whose slice range another command server owns."""

    def __init__(self, stream_id: str) -> None:
        """Name the entity's stream; its range says where the call goes."""
        super().__init__(f"{stream_id} is owned by another command server")
        self.stream_id = stream_id
        self.slice_range = range_of(stream_id)
