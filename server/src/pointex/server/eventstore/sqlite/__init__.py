"""The SQLite event store (aiosqlite), the embedded default."""

from pointex.server.eventstore.sqlite.store import SqliteEventStore

__all__ = ["SqliteEventStore"]
