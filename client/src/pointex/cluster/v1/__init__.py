"""Generated protobuf and gRPC modules of the pointex.cluster.v1 API (see protos/).

Everything else in this folder is produced by `make proto`; never edit it by hand.
"""
