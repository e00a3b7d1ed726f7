"""The sandbox payment provider's own API (pointex.sandbox.v1), for tests, demos and benchmarks."""
