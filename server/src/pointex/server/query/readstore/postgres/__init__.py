"""The PostgreSQL read store (asyncpg), in a schema of its own."""

from pointex.server.query.readstore.postgres.store import PostgresReadStore

__all__ = ["PostgresReadStore"]
