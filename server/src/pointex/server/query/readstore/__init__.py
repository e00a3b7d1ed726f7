"""The query server's read store: one port, a SQLite and a PostgreSQL adapter."""
