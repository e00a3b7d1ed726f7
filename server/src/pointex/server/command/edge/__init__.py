"""The command server's gRPC edge: servicers that turn requests into application calls.

Each servicer validates and converts a request (grpc_edge/convert.py), calls the application
layer (command/app) and turns its result into the reply; errors become statuses in one table
(grpc_edge/status.py). Nothing here decides a business rule.
"""
