"""`pointex watch`: a live stream of notifications that resumes where it left off.

Every notification carries a cursor; reconnecting with the last one resumes with nothing
lost and nothing repeated, so the stream reconnects by itself after a retryable failure
(a query server restart, SLOW_CONSUMER), and `--cursor-file` carries the place over to the
next run. It stops on Ctrl-C or SIGTERM, or after `--limit` notifications.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Final

from rich.text import Text

from pointex.cli import formatting
from pointex.cli.errors import EXIT_OK, UsageError
from pointex.cli.output import Output, to_json
from pointex.cli.registry import Subcommands, add_after, bounded_int, enum_type, leaf
from pointex.cli.session import Session
from pointex.client.aio import WATCH_RETRY
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qry

_KIND = qry.NotificationKind.DESCRIPTOR
_MOVEMENT = common_pb2.MovementKind.DESCRIPTOR
_STATUS = common_pb2.AccountStatus.DESCRIPTOR
_ROLE = common_pb2.Role.DESCRIPTOR
_ORDER_STATUS = common_pb2.OrderStatus.DESCRIPTOR
_TRADE_STATUS = common_pb2.TradeStatus.DESCRIPTOR
_SIDE = common_pb2.OrderSide.DESCRIPTOR
_NOTIFICATIONS_MAX = 2**31 - 1
# The longest kind label (ACCOUNT_UNFROZEN, PAYMENT_REQUIRED): the columns line up.
_KIND_COLUMNS = 16


def register(group: Subcommands) -> None:
    """Add `watch`."""
    watch = leaf(
        group,
        "watch",
        "stream notifications live until Ctrl-C; reconnects from the last cursor by itself",
        _watch,
    )
    watch.add_argument(
        "--account", action="append", default=[], help="only this account (repeatable)"
    )
    watch.add_argument(
        "--kind", type=enum_type(_KIND), action="append", default=[], help="e.g. points_received"
    )
    start = watch.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning", action="store_true", help="start at the first notification"
    )
    start.add_argument("--cursor", help="resume right after this cursor (printed on exit)")
    watch.add_argument(
        "--cursor-file",
        type=Path,
        help="resume from the cursor saved in this file, and save each new one there",
    )
    watch.add_argument(
        "--limit",
        type=bounded_int(1, _NOTIFICATIONS_MAX),
        default=None,
        help="stop after this many notifications",
    )
    add_after(watch)


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while watching, so a supervisor's stop is a clean exit."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _watch(session: Session, out: Output, args: argparse.Namespace) -> int:
    cursor = _start_cursor(args)
    if cursor and args.from_beginning:
        raise UsageError("--from-beginning cannot resume from a saved cursor")
    watcher = _Watcher(session, out, args, cursor)
    if not out.json_mode:
        out.note("watching notifications; Ctrl-C stops")
    with _sigterm_stops():
        try:
            watcher.run()
        except KeyboardInterrupt:
            watcher.cancel()
    if watcher.cursor:
        out.note(f"resume with: pointex watch --cursor {formatting.cursor_text(watcher.cursor)}")
    return EXIT_OK


def _start_cursor(args: argparse.Namespace) -> bytes:
    if args.cursor:
        return formatting.parse_cursor(args.cursor)
    path: Path | None = args.cursor_file
    if path is not None and path.is_file():
        text = path.read_text().strip()
        return formatting.parse_cursor(text) if text else b""
    return b""


class _Watcher:
    """One `watch` run: the SDK's resuming notification stream, shown and its cursor kept."""

    def __init__(
        self, session: Session, out: Output, args: argparse.Namespace, cursor: bytes
    ) -> None:
        self._session = session
        self._out = out
        self._args = args
        self.cursor = cursor
        self._received = 0
        self._stream: Generator[qry.Notification, None, None] | None = None

    def run(self) -> None:
        """Read notifications until the limit, reconnecting at most --retries times in a row.

        Not bounded in length on purpose: a watch runs until it is stopped, reconnecting as
        often as a long life needs. What is bounded is the failures in a row (--retries).

        Raises:
            PointexError: the stream failed with a refusal, or kept failing.
        """
        retries = self._session.settings.retries
        self._stream = self._session.client.notifications(
            account_ids=self._args.account,
            kinds=self._args.kind,
            cursor=self.cursor,
            from_beginning=self._args.from_beginning,
            min_position=self._args.after,
            retry=replace(WATCH_RETRY, attempts_max=retries + 1),
        )
        for notification in self._stream:
            if self._show(notification):
                self.cancel()
                return

    def cancel(self) -> None:
        """End the stream, if one is open."""
        if self._stream is not None:
            self._stream.close()

    def _show(self, notification: qry.Notification) -> bool:
        """Print a notification and keep its cursor; return whether the limit is reached."""
        self.cursor = notification.cursor
        if self._out.json_mode:
            record = to_json(notification)
            record["cursor"] = formatting.cursor_text(notification.cursor)
            self._out.json_line(record)
        else:
            self._out.line(notification_line(notification))
        path: Path | None = self._args.cursor_file
        if path is not None:
            _save_cursor(path, notification.cursor)
        self._received += 1
        limit: int | None = self._args.limit
        return limit is not None and self._received >= limit


def _save_cursor(path: Path, cursor: bytes) -> None:
    """Write the cursor through a temporary file, so a crash never leaves half a cursor."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(formatting.cursor_text(cursor) + "\n")
    temporary.replace(path)


def notification_line(notification: qry.Notification) -> Text:
    """Return one notification as a line: when, what, which account, the details."""
    return Text.assemble(
        (formatting.timestamp(notification.occurred_at), "dim"),
        "  ",
        (formatting.enum_label(_KIND, notification.kind).ljust(_KIND_COLUMNS), "bold cyan"),
        "  ",
        (notification.account_id, "bold"),
        "  ",
        _details(notification),
    )


def _details(notification: qry.Notification) -> str:
    which = notification.WhichOneof("details")
    describe = _DESCRIBE.get(which) if which else None
    return describe(notification) if describe else ""


def _points_moved(notification: qry.Notification) -> str:
    moved = notification.points_moved
    other = f" with {moved.counterparty_account_id}" if moved.counterparty_account_id else ""
    memo = f" ({moved.memo})" if moved.memo else ""
    return (
        f"{formatting.enum_label(_MOVEMENT, moved.movement_kind)} "
        f"{formatting.points(moved.amount_points)} points{other}{memo}; "
        f"available {formatting.points(moved.available_points)}"
    )


def _order(notification: qry.Notification) -> str:
    order = notification.order
    return (
        f"order {order.order_id} {formatting.enum_label(_SIDE, order.side)} "
        f"{formatting.enum_label(_ORDER_STATUS, order.status)}: filled "
        f"{formatting.points(order.filled_quantity_points)} of "
        f"{formatting.points(order.quantity_points)}"
    )


def _trade(notification: qry.Notification) -> str:
    trade = notification.trade
    return (
        f"trade {trade.trade_id} {formatting.enum_label(_TRADE_STATUS, trade.status)}: "
        f"{formatting.points(trade.quantity_points)} points at "
        f"{formatting.money(trade.price_minor, trade.currency)}"
    )


def _payment_required(notification: qry.Notification) -> str:
    due = notification.payment_required
    return (
        f"pay {formatting.money(due.amount_due.amount_minor, due.amount_due.currency)} "
        f"for trade {due.trade_id} at {due.checkout_url} before "
        f"{formatting.timestamp(due.payment_deadline)}"
    )


def _account_status(notification: qry.Notification) -> str:
    change = notification.account_status
    reason = f": {change.reason}" if change.reason else ""
    return (
        f"{formatting.enum_label(_STATUS, change.status)} by "
        f"{formatting.enum_label(_ROLE, change.changed_by_role)}{reason}"
    )


def _points_expiring_soon(notification: qry.Notification) -> str:
    soon = notification.points_expiring_soon
    until = ""
    if soon.last_expires_at != soon.first_expires_at:
        until = f" to {formatting.timestamp(soon.last_expires_at)}"
    return (
        f"{formatting.points(soon.amount_points)} points lapse from "
        f"{formatting.timestamp(soon.first_expires_at)}{until}"
    )


def _trade_refund(notification: qry.Notification) -> str:
    refund = notification.trade_refund
    trade = refund.trade
    amount = formatting.money(refund.amount.amount_minor, refund.amount.currency)
    outcome = ""
    if refund.provider_refund_id:
        outcome = f"; provider refund {refund.provider_refund_id}"
    elif refund.declined_reason:
        outcome = f"; declined: {refund.declined_reason}"
    return (
        f"trade {trade.trade_id} {formatting.enum_label(_TRADE_STATUS, trade.status)}: refund "
        f"{refund.refund_id} of {amount} "
        f"for {formatting.points(trade.quantity_points)} points{outcome}"
    )


_DESCRIBE: Final[dict[str, Callable[[qry.Notification], str]]] = {
    "points_moved": _points_moved,
    "order": _order,
    "trade": _trade,
    "payment_required": _payment_required,
    "account_status": _account_status,
    "points_expiring_soon": _points_expiring_soon,
    "trade_refund": _trade_refund,
}
