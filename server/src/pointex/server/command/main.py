"""Console script `pointex-command-server`: config, bootstrap, serve, drain on SIGTERM.

`pointex-command-server migrate` applies the event store's migrations instead, and exits.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from pointex.server import limits
from pointex.server.command.bootstrap import create_server
from pointex.server.config import MigrateConfig, command_config, migrate_config
from pointex.server.eventstore.factory import open_store
from pointex.server.process import run_server, run_task


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command server until it is signalled to stop, or run `migrate`."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["migrate"]:
        return run_task("pointex-command-server migrate", migrate_config, migrate, arguments[1:])
    # Objects from start-up (modules, tables) live for good: the collector never walks them.
    gc.freeze()
    gc.set_threshold(
        limits.gc_young_allocations_max,
        limits.gc_young_collections_max,
        limits.gc_middle_collections_max,
    )
    return run_server("command", command_config, create_server, arguments)


async def migrate(config: MigrateConfig) -> str:
    """Apply the event store's pending migrations; return the line reporting its version.

    Opening the store migrates it (as the server does at start when its role may); run as
    the schema's owner role, this is the one step that needs DDL privileges.
    """
    store = open_store(config.store_url, allow_unsafe_durability=config.allow_unsafe_durability)
    await store.open()
    try:
        version = await store.schema_version()
    finally:
        await store.close()
    return f"pointex event store at schema version {version}"


if __name__ == "__main__":
    raise SystemExit(main())
