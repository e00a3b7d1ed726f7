"""Pointex server: the command server, the query server, the event store and the domain."""
