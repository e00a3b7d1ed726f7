"""Helpers that declare subcommands and the arguments several of them share."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeAlias, TypeVar

from google.protobuf import descriptor
from google.protobuf.message import Message

from pointex.cli import formatting
from pointex.cli.errors import EXIT_OK, UsageError
from pointex.cli.options import add_global_options
from pointex.cli.output import Cell, Output, rows_caption, to_json_list
from pointex.cli.session import Session, new_request_id
from pointex.v1 import common_pb2

Handler = Callable[[Session, Output, argparse.Namespace], int]
# argparse exposes no public name for the object `add_subparsers` returns, and it is generic
# only in the type stubs, hence a string.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # noqa: SLF001
T = TypeVar("T")

# The server's largest page; asking for more rows than a page holds fetches several pages.
page_size_max: Final = 1000
# A listing stops after this many rows even with a larger --limit: a person reads a screen,
# and a script wanting everything should page with the SDK.
list_rows_max: Final = 100_000
DEFAULT_LIST_ROWS: Final = 100

_HELP_COLUMNS: Final = 90
RETRY_HELP: Final = textwrap.fill(
    "A mutating command sends a request id (a fresh UUID unless --request-id is given) and, "
    "when the outcome is unclear (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED) or the server is "
    "overloaded (RESOURCE_EXHAUSTED), retries with the same id. That is safe: the command "
    "server keeps every request id with its result in the event store, so a retry of a "
    "command that was applied returns the original reply and changes nothing, and one that "
    "was not applied runs now. A command is never applied twice.",
    width=_HELP_COLUMNS,
)


def leaf(
    group: Subcommands, name: str, help_text: str, handler: Handler, *, mutating: bool = False
) -> argparse.ArgumentParser:
    """Add subcommand `name` running `handler`, with the shared options after it too."""
    parser: argparse.ArgumentParser = group.add_parser(
        name,
        help=help_text,
        description=help_text + ("\n\n" + RETRY_HELP if mutating else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    if mutating:
        parser.add_argument(
            "--request-id",
            default=None,
            help="the idempotency key (default: a new UUID); give the id an earlier run "
            "printed to find out what happened to it without applying it twice",
        )
    add_global_options(parser, suppress=True)
    return parser


def request_id(args: argparse.Namespace) -> str:
    """Return the command's request id: the one given, or a fresh UUID."""
    given: str | None = args.request_id
    return given or new_request_id()


def add_after(parser: argparse.ArgumentParser) -> None:
    """Add `--after TOKEN`: read only once the query server includes that position."""
    parser.add_argument(
        "--after",
        metavar="POSITION",
        type=_position_argument,
        default=common_pb2.Position(),
        help="answer only once the query server has applied this position (a token a "
        "command printed): read your own writes",
    )


def _position_argument(text: str) -> common_pb2.Position:
    """Read `--after` for argparse, which reports only its own error type as a usage error."""
    try:
        return formatting.parse_position(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_limit(parser: argparse.ArgumentParser) -> None:
    """Add `--limit N`: how many rows a listing fetches, over as many pages as needed."""
    parser.add_argument(
        "--limit",
        type=bounded_int(1, list_rows_max),
        default=DEFAULT_LIST_ROWS,
        help="most rows to list (default %(default)s)",
    )


def enum_type(enum: descriptor.EnumDescriptor) -> Callable[[str], int]:
    """Return an argparse type that reads an enum value by its lower-case label."""
    choices = formatting.enum_choices(enum)

    def parse(text: str) -> int:
        number = choices.get(text.lower().replace("-", "_"))
        if number is None:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not one of: {', '.join(sorted(choices))}"
            )
        return number

    parse.__name__ = enum.name  # argparse names the type in its error messages.
    return parse


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """Return an argparse type for a whole number in [low, high] (`1_000` is accepted)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low:,} and {high:,}")
        return value

    parse.__name__ = "whole number"
    return parse


positive_int = bounded_int(1, 2**63 - 1)


def fee_and_version(text: str, quoted_by: str, example: str) -> tuple[int, int]:
    """Read a `--fee-quote FEE:VERSION` as `quoted_by` prints it: two whole numbers, 0 or more."""
    fee, colon, version = text.partition(":")
    if not (colon and fee.isdecimal() and version.isdecimal()):
        message = f"expected FEE:VERSION as `{quoted_by}` prints it (e.g. {example}), not {text!r}"
        raise argparse.ArgumentTypeError(message)
    return int(fee), int(version)


def pages(fetch: Callable[[str, int], tuple[list[T], str]], limit: int) -> Iterator[T]:
    """Yield up to `limit` items of a paged listing; `fetch(token, size)` reads one page."""
    assert 1 <= limit <= list_rows_max, limit  # argparse checked --limit already.
    token = ""
    remaining = limit
    # Each page returns at least one row or ends the listing, so `limit` pages are a bound.
    for _ in range(limit):
        items, token = fetch(token, min(remaining, page_size_max))
        yield from items[:remaining]
        remaining -= min(len(items), remaining)
        if not token or remaining == 0 or not items:
            return


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """How a paged QueryService listing is read and shown."""

    rpc: str  # The QueryService method.
    items: str  # The reply's repeated field; also the key of the JSON output.
    doing: str  # Shown while the pages are read, e.g. "listing accounts".
    columns: tuple[str, ...]  # A trailing "#" right-aligns a column.
    row: Callable[[T], Sequence[Cell]]


def show_pages(
    session: Session,
    out: Output,
    listing: Listing[Any],
    request: Callable[[str, int], Message],
    *,
    limit: int,
    title: str,
) -> int:
    """Read up to `limit` items of `listing` and show them; `request(token, size)` asks a page.

    The table's caption (and the JSON's `as_of`) is the position of the last page read.
    """
    as_of = common_pb2.Position()

    def fetch(token: str, size: int) -> tuple[list[Any], str]:
        nonlocal as_of
        reply = session.read(getattr(session.queries, listing.rpc), request(token, size))
        as_of = reply.as_of
        return list(getattr(reply, listing.items)), reply.next_page_token

    with out.errors.status(listing.doing):
        items = list(pages(fetch, limit))
    if out.json_mode:
        out.json({"as_of": formatting.position_token(as_of), listing.items: to_json_list(items)})
        return EXIT_OK
    rows = [listing.row(item) for item in items]
    out.table(title, listing.columns, rows, caption=rows_caption(len(rows), as_of))
    return EXIT_OK
