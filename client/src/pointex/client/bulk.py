"""The bookkeeping of a bulk run, shared by both clients' `bulk`.

Batches go out in order; each answer is matched to the oldest unanswered batch (the server
answers in order). A command refused retryably is sent again in a batch of its own before
the outcomes behind it are released, so outcomes come out in input order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf import message

from pointex.client import builders
from pointex.client.errors import PointexError, from_bulk_error
from pointex.client.retry import retryable
from pointex.v1 import command_service_pb2 as pb

BULK_BATCH_COMMANDS_MAX = 1000  # The server's limit on one ExecuteBulk message.
# A command refused retryably (overloaded, unavailable) is sent again at most this often.
bulk_command_retries_max = 5
_MS_PER_S = 1000
_NS_PER_MS = 1_000_000
Batch = list[tuple[int, str, pb.BulkCommand]]  # (input index, request id, command)


class Outgoing(Protocol):
    """Where a bulk run queues the request messages to send (an asyncio or a thread queue)."""

    def put_nowait(self, item: pb.ExecuteBulkRequest | None, /) -> None:
        """Queue a message to send; None ends the stream's sending side."""


@dataclass(frozen=True)
class BulkOutcome:
    """The result of one bulk command, in the order the commands were given.

    Attributes:
        index: the command's 0-based place in the input.
        request_id: the request id it ran under (retrying with it is always safe).
        response: the unary response of a command that succeeded, else None.
        error: the typed error of a command that failed, else None.
    """

    index: int
    request_id: str
    response: message.Message | None
    error: PointexError | None

    @property
    def ok(self) -> bool:
        """Return whether the command succeeded."""
        return self.error is None


class BulkRun:
    """What one `bulk` call has sent, what is answered, and what is sent again."""

    def __init__(
        self, commands: Iterable[pb.BulkCommand], batch_commands: int, window_batches: int
    ) -> None:
        """Read `commands` lazily, `batch_commands` a batch, `window_batches` unanswered."""
        assert 1 <= batch_commands <= BULK_BATCH_COMMANDS_MAX, batch_commands
        assert window_batches >= 1, window_batches
        self._source = enumerate(commands)
        self._batch_commands = batch_commands
        self._window = window_batches
        self._exhausted = False
        self._unanswered: list[Batch] = []  # In sending order.
        self._held: dict[int, BulkOutcome] = {}  # Answered, waiting for an earlier index.
        self._retry_rounds: dict[int, int] = {}
        self._next_index = 0

    def done(self) -> bool:
        """Return whether every command was read, answered and released."""
        return self._exhausted and not self._unanswered and not self._held

    def restart(self, outgoing: Outgoing) -> None:
        """Send again every batch a broken stream left unanswered, then fill the window."""
        for batch in self._unanswered:
            outgoing.put_nowait(_request(batch))
        self._fill(outgoing)

    def answered(self, response: pb.ExecuteBulkResponse, outgoing: Outgoing) -> list[BulkOutcome]:
        """Record the answer to the oldest batch; return the outcomes now due, in order."""
        batch = self._unanswered.pop(0)
        assert len(response.results) == len(batch), "one result per command"
        retry: Batch = []
        for (index, request_id, command), result in zip(batch, response.results, strict=True):
            outcome = _outcome(index, request_id, result)
            rounds = self._retry_rounds.get(index, 0)
            if outcome.error is not None and _retry_command(outcome.error, rounds):
                self._retry_rounds[index] = rounds + 1
                retry.append((index, request_id, command))
            else:
                self._held[index] = outcome
        if retry:
            self._unanswered.append(retry)
            outgoing.put_nowait(_request(retry))
        self._fill(outgoing)
        due = []
        while self._next_index in self._held:
            due.append(self._held.pop(self._next_index))
            self._retry_rounds.pop(self._next_index, None)
            self._next_index += 1
        if self.done():
            outgoing.put_nowait(None)
        return due

    def _fill(self, outgoing: Outgoing) -> None:
        while not self._exhausted and len(self._unanswered) < self._window:
            batch: Batch = []
            for index, command in self._source:
                batch.append((index, builders.bulk_request_id(command), command))
                if len(batch) == self._batch_commands:
                    break
            else:
                self._exhausted = True
            if batch:
                self._unanswered.append(batch)
                outgoing.put_nowait(_request(batch))
        if self.done():
            outgoing.put_nowait(None)


def _retry_command(error: PointexError, rounds: int) -> bool:
    return rounds < bulk_command_retries_max and retryable(error)


def _request(batch: Batch) -> pb.ExecuteBulkRequest:
    return pb.ExecuteBulkRequest(commands=[command for _, _, command in batch])


def _outcome(index: int, request_id: str, result: pb.BulkResult) -> BulkOutcome:
    if result.HasField("ok"):
        kind = result.ok.WhichOneof("response")
        response = getattr(result.ok, kind) if kind else None
        return BulkOutcome(index, request_id, response, None)
    error = result.error
    delay_ms = (
        error.retry_delay.seconds * _MS_PER_S + error.retry_delay.nanos // _NS_PER_MS
        if error.HasField("retry_delay")
        else None
    )
    typed = from_bulk_error(
        error.code,
        error.reason,
        error.message,
        dict(error.metadata),
        delay_ms,
        request_id=request_id,
    )
    return BulkOutcome(index, request_id, None, typed)
