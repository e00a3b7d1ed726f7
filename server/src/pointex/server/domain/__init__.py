"""The pure domain: decide(state, command) -> events and evolve(state, event) -> state.

Nothing here performs I/O, reads a clock or draws random numbers; an import-linter
contract in `make lint` enforces that.
"""
