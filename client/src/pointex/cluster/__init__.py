"""What the command servers of a cluster ask each other (pointex.cluster.v1); not a partner API."""
