"""Bugs the simulation found and the product has not fixed yet, and how runs step around them.

None at present. Such a bug has a test that fails while the bug is there
(tests/simulation/test_found_bugs.py, marked xfail strict: once the bug is fixed it passes,
the mark fails the suite, and the entry here goes with the mark). A run may step around
one at its trigger (`SeededFaults.spared`, in tests/simulation/memory_store.py).

- `KNOWN_ASSERTIONS`: assertions of the command side that the simulation trips (none at
  present), each recognised by the function it fails in. A client meeting one counts it and
  retries, as a client answered INTERNAL would; the command side's log of it is counted,
  not reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class KnownAssertion:
    """An assertion of the command side that fails in a known bug, where it fails."""

    name: str
    file: str
    function: str


# None at present: the two the simulation found are fixed (test_found_bugs.py).
KNOWN_ASSERTIONS: tuple[KnownAssertion, ...] = ()


def known_assertion(error: BaseException | None) -> KnownAssertion | None:
    """Return the known bug whose assertion `error` is, if it is one."""
    if not isinstance(error, AssertionError) or error.__traceback__ is None:
        return None
    last = error.__traceback__
    while last.tb_next is not None:
        last = last.tb_next
    code = last.tb_frame.f_code
    for known in KNOWN_ASSERTIONS:
        if code.co_name == known.function and Path(code.co_filename).name == known.file:
            return known
    return None
