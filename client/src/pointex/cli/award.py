"""`pointex points award FILE`: a merchant awards points to members from a CSV file.

The file has a header and the columns `member`, `amount` and (optionally) `reason`. It is
read twice, streaming, so a file of millions of rows takes bounded memory:

1. Check every row. A bad row (a missing member, an amount that is not a positive integer, a
   wrong number of columns) is reported by its line number and nothing is awarded: a file is
   never half-applied because of a typo on line 900,000.
2. Award the rows through ExecuteBulk (the SDK's `bulk`: bounded window, resumed after a
   broken stream), with a progress bar, then print a summary.

Safe to rerun: each row's request id is derived from the merchant, the file's contents and
the row's line number. Running the same file again (after a crash, a lost connection, or by
mistake) awards each row once: rows already awarded return their original result.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from pointex.cli import formatting
from pointex.cli.errors import EXIT_OK, EXIT_REFUSED, UsageError
from pointex.cli.output import Output
from pointex.cli.registry import Subcommands, bounded_int, leaf
from pointex.cli.session import Session
from pointex.client import builders
from pointex.client.bulk import BULK_BATCH_COMMANDS_MAX, BulkOutcome
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2

COLUMNS: Final = ("member", "amount", "reason")
# Bad rows listed by line number before the count of the rest.
bad_rows_shown_max: Final = 20
# Failed awards listed by line number in the summary before the count of the rest.
failed_rows_shown_max: Final = 20
_AMOUNT_MAX: Final = 10**12  # The server's default per-command maximum, checked early.
_READ_CHUNK_BYTES: Final = 1 << 20
_ID_HASH_HEX: Final = 24  # 96 bits of the file's hash: no two files share request ids.


def register(actions: Subcommands) -> None:
    """Add `points award`."""
    award = leaf(
        actions,
        "award",
        "award points to members from a CSV file (member,amount,reason); safe to rerun",
        _award,
    )
    award.add_argument("file", type=Path, metavar="FILE.csv")
    award.add_argument("--merchant", required=True, help="the merchant account that pays")
    award.add_argument(
        "--batch",
        type=bounded_int(1, BULK_BATCH_COMMANDS_MAX),
        default=500,
        help="awards per bulk message (default 500)",
    )
    award.add_argument(
        "--window",
        type=bounded_int(1, 64),
        default=4,
        help="bulk messages in flight at once (default 4)",
    )


@dataclass
class _Tally:
    """What an award run did, for the summary."""

    rows: int = 0
    awarded: int = 0
    points: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    failed_lines: list[tuple[int, str, str]] = field(default_factory=list)
    # The position after the last award, for reads that must see them all (`--after`).
    position: str = ""

    def add(self, line: int, member: str, amount: int, outcome: BulkOutcome) -> None:
        self.rows += 1
        if outcome.error is None:
            self.awarded += 1
            self.points += amount
            return
        reason = outcome.error.reason or outcome.error.code.name
        self.failures[reason] += 1
        if len(self.failed_lines) < failed_rows_shown_max:
            self.failed_lines.append((line, member, outcome.error.line()))


@dataclass(frozen=True)
class _Row:
    line: int
    member: str
    amount: int
    reason: str


def _award(session: Session, out: Output, args: argparse.Namespace) -> int:
    path: Path = args.file
    rows, digest = _check(path, args.merchant)
    run_id = f"award-{digest}"
    tally = _Tally()
    started = time.monotonic()
    with _progress(out) as progress:
        task = progress.add_task("awarding", total=rows)
        parsed: dict[int, _Row] = {}

        def commands() -> Iterator[pb.BulkCommand]:
            for index, row in enumerate(_rows(path)):
                parsed[index] = row
                yield builders.issue(
                    args.merchant,
                    row.member,
                    row.amount,
                    row.reason,
                    request_id=f"{run_id}-{row.line}",
                )

        outcomes = session.client.bulk(
            commands(), batch_commands=args.batch, window_batches=args.window
        )
        for outcome in outcomes:
            row = parsed.pop(outcome.index)
            tally.add(row.line, row.member, row.amount, outcome)
            progress.advance(task)
    tally.position = formatting.position_token(
        session.client.last_position or common_pb2.Position()
    )
    _summary(out, path, tally, time.monotonic() - started)
    return EXIT_OK if not tally.failures else EXIT_REFUSED


def _check(path: Path, merchant: str) -> tuple[int, str]:
    """Check every row; return the row count and the hash the request ids derive from.

    Raises:
        UsageError: the file cannot be read, has no or a wrong header, or has bad rows.
    """
    digest = hashlib.sha256(f"pointex-award-v1\n{merchant}\n".encode())
    try:
        with path.open("rb") as raw:
            while chunk := raw.read(_READ_CHUNK_BYTES):
                digest.update(chunk)
        bad: list[str] = []
        bad_count = 0
        rows = 0
        for problem in _problems(path):
            if not problem:
                rows += 1
                continue
            bad_count += 1
            if len(bad) < bad_rows_shown_max:
                bad.append(problem)
    except UnicodeDecodeError as error:
        raise UsageError(f"cannot read {path}: not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    if bad_count:
        more = f"\n  … and {bad_count - len(bad)} more" if bad_count > len(bad) else ""
        listed = "\n  ".join(bad)
        raise UsageError(f"{path}: {bad_count} bad row(s), nothing awarded:\n  {listed}{more}")
    if rows == 0:
        raise UsageError(f"{path}: no rows to award")
    return rows, digest.hexdigest()[:_ID_HASH_HEX]


def _problems(path: Path) -> Iterator[str]:
    """Yield one entry per data row: "" for a good row, else "line N: what is wrong"."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        _check_header(path, header)
        width = len(header or ())
        for fields in reader:
            if not fields:
                continue
            yield _row_problem(reader.line_num, fields, width)


def _check_header(path: Path, header: list[str] | None) -> None:
    names = [name.strip().lower() for name in header or ()]
    if names not in (list(COLUMNS[:2]), list(COLUMNS)):
        raise UsageError(
            f"{path}: the first line must be the header member,amount[,reason], not {header}"
        )


def _row_problem(line: int, fields: list[str], width: int) -> str:
    if len(fields) != width:
        return f"line {line}: {len(fields)} columns, expected {width}"
    if not fields[0].strip():
        return f"line {line}: no member"
    amount = fields[1].strip()
    if not amount.isdigit() or not 0 < int(amount) <= _AMOUNT_MAX:
        return f"line {line}: amount {amount!r} is not a whole number from 1 to {_AMOUNT_MAX:,}"
    return ""


def _rows(path: Path) -> Iterator[_Row]:
    """Yield the file's data rows (already checked), with their line numbers."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        next(reader)
        for fields in reader:
            if not fields:
                continue
            reason = fields[2].strip() if len(fields) > 2 else ""  # noqa: PLR2004 - optional.
            yield _Row(reader.line_num, fields[0].strip(), int(fields[1]), reason)


class _RateColumn(ProgressColumn):
    """Rows per second, once there is a rate to show."""

    def render(self, task: Task) -> Text:
        """Return the task's speed as whole rows per second."""
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="cyan")


def _progress(out: Output) -> Progress:
    """Return a progress bar with rows/s and the time left (on standard error)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=out.errors,
        disable=out.json_mode,
        transient=False,
    )


def _summary(out: Output, path: Path, tally: _Tally, elapsed_s: float) -> None:
    rate = tally.rows / elapsed_s if elapsed_s > 0 else 0.0
    if out.json_mode:
        out.json(
            {
                "file": str(path),
                "rows": tally.rows,
                "awarded": tally.awarded,
                "points": tally.points,
                "failed": sum(tally.failures.values()),
                "failures_by_reason": dict(tally.failures),
                "failed_rows": [
                    {"line": line, "member": member, "error": error}
                    for line, member, error in tally.failed_lines
                ],
                "elapsed_ms": int(elapsed_s * 1000),
                "position": tally.position,
            }
        )
        return
    pairs = [
        ("file", str(path)),
        ("rows", f"{tally.rows:,}"),
        ("awarded", f"{tally.awarded:,}"),
        ("points", formatting.points(tally.points)),
        ("failed", f"{sum(tally.failures.values()):,}"),
        ("elapsed", f"{elapsed_s:.1f} s ({rate:,.0f} rows/s)"),
        ("position", tally.position),
    ]
    out.fields("award summary", pairs)
    if tally.failures:
        rows = [(reason, f"{count:,}") for reason, count in tally.failures.most_common()]
        out.table("failures by reason", ("reason", "rows#"), rows)
        lines = [(str(line), member, error) for line, member, error in tally.failed_lines]
        caption = f"{len(lines)} of {sum(tally.failures.values()):,} failed rows shown"
        out.table("failed rows", ("line#", "member", "error"), lines, caption)
