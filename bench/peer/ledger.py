"""The peer contender's store: an eventsourcing `Application` on the library's PostgreSQL module.

This is how a user who picked the eventsourcing library instead of Pointex would write the
benchmark's commands. Every command reads its aggregates from the application's repository,
calls their command methods, and saves every changed aggregate plus the command's `Request`
in one `app.save(...)`: one atomic insert, checked by the library's optimistic concurrency
(the `(originator_id, originator_version)` primary key). A version conflict raises the
library's `IntegrityError`; the command is then tried again on fresh reads, up to
`peer_attempts_max` attempts, and every conflict and retry is counted.

An ExecuteBulk batch is one unit of work, as the library's multi-aggregate `save` invites:
the batch's commands are applied in order to the aggregates read once, and everything is
saved at once. When that save conflicts (an account changed meanwhile, or a request id was
seen before), the batch falls back to one command at a time, each with its own retries.

The library is synchronous, so `PeerLedger` runs each command (or batch) in a bounded thread
pool and awaits it from the grpc.aio front the lock-based contender uses. The position in a
reply is the notification id the library assigned to the command's `Request` event.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, PersistenceError

from bench import limits
from bench.lockbased.store import Movement, Rejected, Result
from bench.peer.domain import Account, Request, account_uuid, request_uuid

_CONFLICT: Final = "version conflict"
# Reported from the start, so that a run's delta shows a zero rather than no key.
_COUNTERS: Final = (
    "commands_ok", "rejected", "conflicts", "retries", "aborts", "replays", "batch_fallbacks",
)  # fmt: skip


class PointsLedger(Application[UUID]):
    """The eventsourcing application: accounts and requests in one events table.

    Its class name is the library's table prefix: events go to `pointsledger_events` in the
    schema named by POSTGRES_SCHEMA.
    """


def postgres_env(dsn: str, schema: str) -> dict[str, str]:
    """Return the library's settings for the PostgreSQL module, from a DSN and a schema."""
    url = urlsplit(dsn)
    assert url.scheme in {"postgresql", "postgres"}, "a postgresql:// DSN"
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_SCHEMA": schema,
        # One connection per worker thread: a command holds at most one at a time.
        "POSTGRES_POOL_SIZE": str(limits.peer_threads_max),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_CONNECT_TIMEOUT": str(limits.peer_pool_wait_s_max),
        "POSTGRES_LOCK_TIMEOUT": str(limits.peer_lock_wait_s_max),
        # Keep every account in memory; each read still fast-forwards it from the table,
        # which keeps reads correct while many threads write the same account.
        "AGGREGATE_CACHE_MAXSIZE": str(limits.peer_aggregate_cache_max),
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }


class Counters:
    """What the peer counts, for the benchmark report; shared by the worker threads."""

    def __init__(self) -> None:
        """Start every counter at zero."""
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter(dict.fromkeys(_COUNTERS, 0))

    def add(self, name: str, count: int = 1) -> None:
        """Add `count` to counter `name`."""
        with self._lock:
            self._counts[name] += count

    def as_json(self) -> dict[str, int]:
        """Return the counters as a JSON-ready mapping."""
        with self._lock:
            return dict(self._counts)


class PeerLedger:
    """The benchmark's commands over a PointsLedger, run in a bounded thread pool."""

    def __init__(self, app: PointsLedger) -> None:
        """Run commands on `app`."""
        self._app = app
        self._threads = ThreadPoolExecutor(limits.peer_threads_max, "peer-ledger")
        self.counts = Counters()

    def counters(self) -> dict[str, int]:
        """Return the ledger's counters for the stats file."""
        return self.counts.as_json()

    def close(self) -> None:
        """Finish the running commands, then close the application's connection pool."""
        self._threads.shutdown(wait=True)
        self._app.close()

    async def open_account(self, request_id: str, account_id: str, kind: str, owner: str) -> int:
        """Open an account with zero points; return the position of the opening."""
        movement = Movement(request_id, "open", None, account_id, 0, None, kind)
        body = _Command(self._app, movement, self.counts)
        return (await self._run(lambda: body.run(lambda: body.open(owner)))).ledger_id

    async def move(self, movement: Movement) -> Result:
        """Move points between two accounts (or mint into one) in one `app.save`."""
        body = _Command(self._app, movement, self.counts)
        return await self._run(lambda: body.run(body.move))

    async def move_batch(self, movements: Sequence[Movement]) -> list[Result | Rejected]:
        """Apply a bulk batch's movements in order, saved at once; return each outcome."""
        batch = _Batch(self._app, movements, self.counts)
        outcomes = await asyncio.get_running_loop().run_in_executor(self._threads, batch.run)
        for outcome in outcomes:
            self._count(outcome)
        return outcomes

    def _count(self, outcome: Result | Rejected) -> None:
        if isinstance(outcome, Result):
            self.counts.add("commands_ok")
            return
        self.counts.add(f"errors_{outcome.code}")
        if outcome.code == "ABORTED":
            self.counts.add("aborts")  # Out of attempts: every one met a version conflict.
        elif outcome.code != "UNAVAILABLE":
            self.counts.add("rejected")  # Refused by a check, as the lock-based one counts.

    async def _run(self, call: Callable[[], Result]) -> Result:
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._threads, call)
        except Rejected as error:
            self._count(error)
            raise
        self._count(result)
        return result


def _apply(movement: Movement, get: Callable[[str], Account]) -> tuple[int, list[Account]]:
    """Check and apply one movement to the accounts `get` returns.

    Return the reply's balance and the accounts it changed. Every check runs before the
    first event, so a refused movement leaves no pending event behind.
    """
    destination = get(movement.to_account_id)
    destination.check_kind(movement.to_kind)
    destination.check_open()
    if movement.from_account_id is None:
        destination.credit(movement.amount_points, movement.request_id)
        return destination.available_points, [destination]
    assert movement.from_kind is not None
    source = get(movement.from_account_id)
    source.check_kind(movement.from_kind)
    source.debit(movement.amount_points, movement.request_id)
    destination.credit(movement.amount_points, movement.request_id)
    return source.available_points, [source, destination]


def _request(movement: Movement, balance_points: int) -> Request:
    return Request(
        request_id=movement.request_id,
        command=movement.command,
        from_account_id=movement.from_account_id,
        to_account_id=movement.to_account_id,
        amount_points=movement.amount_points,
        result_available_points=balance_points,
    )


def _get_account(app: PointsLedger, account_id: str) -> Account:
    try:
        account: Account = app.repository.get(account_uuid(account_id))
    except AggregateNotFoundError:
        raise Rejected("NOT_FOUND", "ACCOUNT_NOT_FOUND", f"no account {account_id}") from None
    return account


class _Command:
    """One command's attempts, on a worker thread."""

    def __init__(self, app: PointsLedger, movement: Movement, counts: Counters) -> None:
        self._app = app
        self._movement = movement
        self._counts = counts

    def run(self, attempt: Callable[[], Result]) -> Result:
        """Make up to `peer_attempts_max` attempts; translate the library's errors."""
        try:
            for attempt_index in range(limits.peer_attempts_max):
                if attempt_index:
                    self._counts.add("retries")
                try:
                    return attempt()
                except IntegrityError:
                    replayed = self._replay()
                    if replayed is not None:
                        return replayed
                    self._counts.add("conflicts")
        except PersistenceError as error:
            raise Rejected("UNAVAILABLE", "STORE_UNAVAILABLE", str(error)) from None
        raise Rejected("ABORTED", "CONCURRENT_MODIFICATION", _CONFLICT)

    def open(self, owner: str) -> Result:
        """Create the account and its request record in one save."""
        movement = self._movement
        account = Account(movement.to_account_id, movement.to_kind, owner)
        try:
            return self._save(account, balance_points=0)
        except IntegrityError:
            replayed = self._replay()
            if replayed is not None:
                return replayed
        # Not this request: the account's `Opened` event (version 1) exists already.
        raise Rejected("ALREADY_EXISTS", "ACCOUNT_ALREADY_EXISTS", "account exists")

    def move(self) -> Result:
        """Read the accounts, debit and credit them, and save them with the request record."""
        balance_points, changed = _apply(self._movement, lambda i: _get_account(self._app, i))
        return self._save(*changed, balance_points=balance_points)

    def _save(self, *changed: Account, balance_points: int) -> Result:
        request = _request(self._movement, balance_points)
        recordings = self._app.save(*changed, request)
        return Result(recordings[-1].notification.id, balance_points)

    def _replay(self) -> Result | None:
        """Return the original result if the conflict was this request id, recorded before."""
        movement = self._movement
        try:
            original: Request = self._app.repository.get(request_uuid(movement.request_id))
        except AggregateNotFoundError:
            return None
        same = (
            original.command == movement.command
            and original.from_account_id == movement.from_account_id
            and original.to_account_id == movement.to_account_id
            and original.amount_points == movement.amount_points
        )
        if not same:
            raise Rejected("ALREADY_EXISTS", "IDEMPOTENCY_KEY_REUSED", "request_id reused")
        self._counts.add("replays")
        # The original's own position is not kept; the latest one is at least as late, which
        # is all a position promises (reads at it see the original command).
        position = self._app.recorder.max_notification_id() or 0
        return Result(position, original.result_available_points)


class _Batch:
    """One ExecuteBulk batch, on a worker thread: all at once, else one command at a time."""

    def __init__(self, app: PointsLedger, movements: Sequence[Movement], counts: Counters) -> None:
        self._app = app
        self._movements = movements
        self._counts = counts

    def run(self) -> list[Result | Rejected]:
        """Return each movement's outcome, in order."""
        try:
            return self._at_once()
        except IntegrityError:
            # An account changed since it was read, or a request id repeats: the slow path
            # gives each command its own conflict retries and its own replay.
            self._counts.add("batch_fallbacks")
        except PersistenceError as error:
            unavailable = Rejected("UNAVAILABLE", "STORE_UNAVAILABLE", str(error))
            return [unavailable for _ in self._movements]
        return [self._one(movement) for movement in self._movements]

    def _one(self, movement: Movement) -> Result | Rejected:
        command = _Command(self._app, movement, self._counts)
        try:
            return command.run(command.move)
        except Rejected as error:
            return error

    def _at_once(self) -> list[Result | Rejected]:
        accounts: dict[str, Account] = {}

        def get(account_id: str) -> Account:
            if account_id not in accounts:
                accounts[account_id] = _get_account(self._app, account_id)
            return accounts[account_id]

        outcomes: list[Request | Rejected] = []
        changed: dict[str, Account] = {}
        for movement in self._movements:
            try:
                balance_points, touched = _apply(movement, get)
            except Rejected as error:
                outcomes.append(error)
                continue
            changed.update((account.account_id, account) for account in touched)
            outcomes.append(_request(movement, balance_points))
        requests = [outcome for outcome in outcomes if isinstance(outcome, Request)]
        if not requests:
            # Every command was refused: nothing to save.
            return [outcome for outcome in outcomes if isinstance(outcome, Rejected)]
        recordings = self._app.save(*changed.values(), *requests)
        positions = {r.domain_event.originator_id: r.notification.id for r in recordings}
        return [
            outcome
            if isinstance(outcome, Rejected)
            else Result(positions[outcome.id], outcome.result_available_points)
            for outcome in outcomes
        ]
