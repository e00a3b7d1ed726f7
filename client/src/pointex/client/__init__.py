"""Pointex SDK: a typed client over the generated pointex.v1 stubs."""
