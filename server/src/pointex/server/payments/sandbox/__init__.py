"""The sandbox payment provider: a separate process that behaves like a third-party gateway."""
