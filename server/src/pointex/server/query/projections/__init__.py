"""Projections: pure functions from committed events (and the rows they touch) to row changes.

`project_batch` is the entry point; it never performs I/O, reads a clock or draws a random
number, so a replay from position 0 produces exactly the rows the live feed produced.
"""

from pointex.server.query.projections.batch import (
    account_ids_of,
    keys_of,
    order_ids_of,
    project_batch,
)

__all__ = ["account_ids_of", "keys_of", "order_ids_of", "project_batch"]
