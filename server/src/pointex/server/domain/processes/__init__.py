"""The multi-step processes as pure state machines: given a state and what happened, decide.

Each module decides the next step of one kind of process from its state (rebuilt from its
process stream) and an input (a reply, a callback, a timer, a restart). The command side's
process runner carries the step out and feeds what came of it back in. Nothing here does
I/O; every pair of state and input is unit-tested.
"""
