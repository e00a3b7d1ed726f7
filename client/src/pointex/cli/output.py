"""Everything `pointex` prints: rich tables and colours for people, JSON for scripts.

Results go to standard output; notes, retries and errors go to standard error, so a script
reading `--json` output never sees them. Colours follow the terminal: none when the output
is piped, and none when NO_COLOR is set.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Final, cast

from google.protobuf import json_format, message
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pointex.cli import formatting
from pointex.v1 import common_pb2

# Without a terminal rich would wrap tables at 80 columns and split long ids; a wide fixed
# width keeps each row on one line in files and pipes.
_PIPE_WIDTH: Final = 240
_STATUS_STYLES: Final = {
    "OPEN": "green",
    "SERVING": "green",
    "SETTLED": "green",
    "FILLED": "green",
    "PARTIALLY_FILLED": "cyan",
    "PENDING_PAYMENT": "yellow",
    "FROZEN": "yellow",
    "NOT_SERVING": "red",
    "CLOSED": "dim",
    "CANCELLED": "dim",
    "REFUNDING": "yellow",
    "REFUNDED": "dim",
    "REJECTED": "red",
    "UNREACHABLE": "bold red",
}

Cell = str | Text


def status_text(label: str) -> Text:
    """Return a status label coloured by what it means (green: fine, yellow: waiting...)."""
    return Text(label, style=_STATUS_STYLES.get(label, ""))


def to_json(value: message.Message) -> dict[str, Any]:
    """Return a message in the proto3 JSON mapping, with positions as `pointex` prints them.

    Position tokens become the hex text `--after` accepts rather than base64, so a script can
    pass a reply's position on unchanged.
    """
    data = json_format.MessageToDict(
        value, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return cast("dict[str, Any]", _positions_as_hex(data))


def to_json_list(messages: Iterable[message.Message]) -> list[dict[str, Any]]:
    """Return messages in the JSON form of `to_json`."""
    return [to_json(item) for item in messages]


def rows_caption(count: int, as_of: common_pb2.Position) -> str:
    """Return the caption of a listing: how many rows, and the position they reflect."""
    noun = "row" if count == 1 else "rows"
    return f"{count} {noun}, as of {formatting.position_text(as_of)}"


def _positions_as_hex(data: object) -> object:
    if isinstance(data, dict):
        if set(data) == {"token"} and isinstance(data["token"], str):
            # Only pointex.v1.Position has a single field named `token`.
            token = base64.b64decode(data["token"])
            return formatting.position_token(common_pb2.Position(token=token))
        return {key: _positions_as_hex(item) for key, item in data.items()}
    if isinstance(data, list):
        return [_positions_as_hex(item) for item in data]
    return data


class Output:
    """Where and how results are printed, per the `--json` option."""

    def __init__(self, *, json_mode: bool) -> None:
        """Create consoles for standard output and standard error."""
        self.json_mode = json_mode
        width = None if sys.stdout.isatty() else _PIPE_WIDTH
        self.console = Console(width=width, highlight=False, soft_wrap=False)
        # Soft wrapping keeps an error on one line however narrow the terminal: scripts and
        # people grep for it.
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True)

    def json(self, value: object) -> None:
        """Print a JSON document (indented) on standard output."""
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def json_line(self, value: object) -> None:
        """Print one JSON object on one line (a stream of results, JSON Lines)."""
        sys.stdout.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def line(self, text: Cell) -> None:
        """Print one line of text on standard output."""
        self.console.print(text)

    def note(self, text: str) -> None:
        """Print a side remark on standard error (dimmed)."""
        self.errors.print(Text(text, style="dim"))

    def error(self, text: str) -> None:
        """Print an error line on standard error (red)."""
        self.errors.print(Text(f"error: {text}", style="bold red"))

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Cell]],
        caption: str | None = None,
    ) -> None:
        """Print rows as a table; columns whose name ends with `#` are right-aligned numbers."""
        table = Table()
        for column in columns:
            numeric = column.endswith("#")
            table.add_column(
                column.removesuffix("#"), justify="right" if numeric else "left", no_wrap=True
            )
        for row in rows:
            table.add_row(*row)
        self._titled(title, table, caption)

    def fields(self, title: str, pairs: Sequence[tuple[str, Cell]]) -> None:
        """Print one record as a two-column table of names and values."""
        table = Table(show_header=False)
        table.add_column(style="bold")
        table.add_column(no_wrap=True)
        for name, value in pairs:
            table.add_row(name, value)
        self._titled(title, table, None)

    def _titled(self, title: str, table: Table, caption: str | None) -> None:
        # Title and caption are lines of their own: rich would wrap them to the table's width,
        # splitting a long id in a narrow table.
        self.console.print(Text(title, style="bold"))
        self.console.print(table)
        if caption:
            self.console.print(Text(caption, style="dim"))

    def position(self, position: common_pb2.Position, request_id: str) -> None:
        """Print a command's position (to pass on with `--after`) and its request id."""
        self.console.print(
            Text.assemble(
                ("position ", "dim"),
                formatting.position_token(position),
                ("  request id ", "dim"),
                request_id,
            )
        )
