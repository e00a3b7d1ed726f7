"""Generated protobuf and gRPC modules of the pointex.v1 contract (see protos/).

Everything else in this folder is produced by `make proto`; never edit it by hand.
"""
