"""The eventsourcing-library peer contender (`python -m bench.peer.server`)."""
