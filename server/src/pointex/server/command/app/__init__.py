"""The command server's application layer: commands, processes, idempotency, recovery.

It runs commands on the actors, drives the transfer, placement and trade processes (whose
decisions are the pure state machines of domain/processes), records replies for retries
and restores open processes at start. It knows no gRPC: an import-linter contract keeps
grpc, protobuf and the edge out of it, but for the imports it lists as still to remove.
"""
