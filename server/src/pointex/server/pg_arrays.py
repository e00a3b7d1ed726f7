"""PostgreSQL array literals, sent as one text parameter that the statement casts.

asyncpg encodes a Python list as an array by checking every element against `Iterable`,
`Sized` and `Mapping`, whatever its type: for the wide batches both stores write, building
the literal ("{1,2,3}", '{"a","b"}') and letting PostgreSQL parse it (`$1::text::bigint[]`)
costs the client about a third as much.
"""

from __future__ import annotations

from collections.abc import Sequence


def int_array(values: Sequence[int]) -> str:
    """Return a PostgreSQL array literal of integers ("{1,2,3}")."""
    return "{" + ",".join(map(str, values)) + "}"


def text_array(values: Sequence[str]) -> str:
    """Return a PostgreSQL array literal of strings, each quoted ('{"a","b"}').

    Quoted, a string cannot be taken for NULL or split at a comma; a backslash or a double
    quote in it is escaped.
    """
    return "{" + ",".join(f'"{_escaped(value)}"' for value in values) + "}"


def _escaped(value: str) -> str:
    if "\\" in value or '"' in value:
        return value.replace("\\", "\\\\").replace('"', '\\"')
    return value
