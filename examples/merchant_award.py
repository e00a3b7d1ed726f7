"""A merchant awards points to its members from a CSV file (member,amount,reason).

    python examples/merchant_award.py MERCHANT FILE.csv

Reads POINTEX_COMMAND_TARGET, POINTEX_QUERY_TARGET and POINTEX_PARTNER_TOKEN (the merchant's
partner token). Each row's request id comes from the file's hash and the row's number, so
running the same file twice awards each row once. Prints one line per refused row and a
total; exits 1 if any row was refused.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

# -- snippet: connect --
from pointex.client import PointexClient, Targets

targets = Targets.from_env()  # POINTEX_COMMAND_TARGET, POINTEX_QUERY_TARGET
token = os.environ["POINTEX_PARTNER_TOKEN"]
# -- end of snippet --

from pointex.client import builders  # noqa: E402 - kept beside the snippet it belongs to.
from pointex.v1 import command_service_pb2 as pb  # noqa: E402


def awards(merchant: str, path: Path) -> Iterator[pb.BulkCommand]:
    """Yield one IssuePoints command per row, with a request id stable across runs."""
    file_id = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
    with path.open(newline="", encoding="utf-8") as file:
        for number, row in enumerate(csv.DictReader(file), 1):
            # -- snippet: bulk --
            yield builders.issue(
                merchant,
                row["member"],
                int(row["amount"]),
                row.get("reason", ""),
                request_id=f"award-{file_id}-{number}",  # The same row, the same id.
            )
            # -- end of snippet --


def main() -> int:
    """Award every row of the file; return the exit code."""
    merchant, path = sys.argv[1], Path(sys.argv[2])
    awarded = refused = 0
    with PointexClient(targets, token) as client:
        # -- snippet: bulk-run --
        for outcome in client.bulk(awards(merchant, path), batch_commands=500):
            if outcome.ok:
                awarded += 1
            else:
                refused += 1
                print(f"row {outcome.index + 1}: {outcome.error}", file=sys.stderr)
        # -- end of snippet --
        balance = client.get_account(merchant, consistent=True).available_points
    print(f"awarded {awarded} rows, refused {refused}; {merchant} has {balance} points left")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
