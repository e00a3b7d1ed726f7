"""The event store: one port (`port.EventStore`), a PostgreSQL and a SQLite adapter.

Import the records and errors from `pointex.server.eventstore.port`, and build a store with
`pointex.server.eventstore.factory.open_store`.
"""
