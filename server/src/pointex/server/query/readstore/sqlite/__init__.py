"""The SQLite read store (aiosqlite): the embedded default."""

from pointex.server.query.readstore.sqlite.store import SqliteReadStore

__all__ = ["SqliteReadStore"]
