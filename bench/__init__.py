"""Pointex benchmark harness: contenders, one load generator, and the runner (`make bench`)."""
