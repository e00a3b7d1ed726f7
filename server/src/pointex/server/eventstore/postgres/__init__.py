"""The PostgreSQL event store (asyncpg)."""

from pointex.server.eventstore.postgres.store import PostgresEventStore

__all__ = ["PostgresEventStore"]
