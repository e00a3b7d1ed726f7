"""The projection replay scenario: a fresh query server catches up, then rebuilds from 0.

Pointex only: the other contenders keep no projections, so their rows say `n/a`. Against a
running Pointex command server, for each read store in turn (one query server at a time, so
that they do not compete for the CPU):

1. read the log's head from the command server's EventFeed, once it stops moving (the last
   steps of the load's transfers); if the log holds fewer than
   `replay_log_events_min` events, first append transfers with ExecuteBulk until it does
   (the row says how many events were added);
2. start `python -m pointex.server.query.main` on a fresh read store and time its live
   subscription's catch-up from position 0 to the head (GetProjectionStatus with
   `min_position`);
3. call RebuildProjections and poll GetProjectionStatus until the rebuild ends; the replay
   speed is the server's own: events applied / (finished_at - started_at).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import AsyncIterator
from typing import Final, Protocol

import grpc

from bench import limits
from bench.accounts import auth_metadata, member_id, request_id
from bench.contenders import Contender, Plan, Running, StartFailed, new_schema, start
from bench.report import Row
from pointex.client.positions import decode_global, encode_global
from pointex.v1 import command_service_pb2 as cs
from pointex.v1 import (
    command_service_pb2_grpc,
    common_pb2,
    event_feed_pb2,
    event_feed_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
)

QUERY_MODULE: Final = "pointex.server.query.main"
SCENARIO: Final = "replay"
_NS_PER_S: Final = 1_000_000_000
# One GetProjectionStatus call waits at most this long for `min_position` (the server's own
# bound is 30 s); the caller asks again until `replay_wait_s_max`.
_STATUS_WAIT_S: Final = 25


class ReplayOptions(Protocol):
    """What a replay needs of the runner's options."""

    @property
    def members(self) -> int:
        """Members set up on the contender (the top-up transfers between them)."""

    @property
    def pg_dsn(self) -> str:
        """Where a PostgreSQL read store gets its schema."""

    @property
    def replay_events_min(self) -> int:
        """The smallest log the replay runs on; a smaller one is topped up first."""

    @property
    def replay_one_read_store(self) -> bool:
        """Whether each contender replays into one read store only (the quick run)."""


class ReplayFailed(RuntimeError):
    """The query server did not catch up or the rebuild failed; the message says which."""


def not_applicable(contender: Contender) -> Row:
    """Return the replay row of a contender without projections."""
    return {
        "contender": contender.name,
        "store": contender.store,
        "scenario": SCENARIO,
        "status": "n/a",
        "note": "no projections to replay",
    }


def read_stores(contender: Contender, plan: Plan, options: ReplayOptions) -> dict[str, str]:
    """Return the fresh read stores to replay into, by kind: SQLite, and PostgreSQL too."""
    sqlite = f"sqlite:///{plan.scratch / f'replay-read-{secrets.token_hex(4)}.db'}"
    if contender.store != "postgres":
        return {"sqlite": sqlite}
    postgres = f"{options.pg_dsn}?schema={new_schema(plan)}"
    if options.replay_one_read_store:
        return {"postgres": postgres}
    return {"sqlite": sqlite, "postgres": postgres}


async def log_head(target: str, token: str) -> int:
    """Return the command server's head: the first batch of a feed from 0 carries it."""
    async with grpc.aio.insecure_channel(target) as channel:
        feed = event_feed_pb2_grpc.EventFeedStub(channel)
        request = event_feed_pb2.SubscribeRequest(max_batch_size=1)
        call = feed.Subscribe(
            request, metadata=auth_metadata(token), timeout=limits.replay_head_wait_s_max
        )
        try:
            async for message in call:
                if message.HasField("events"):
                    return decode_global(message.events.head.token)
                return decode_global(message.heartbeat.head.token)
        finally:
            call.cancel()
    return 0


async def settled_head(target: str, token: str) -> int:
    """Return the head once it stops moving.

    A transfer's reply can come before its last step is appended (the credit follows the
    debit), so right after a load or a top-up the log may still grow for a moment; the replay
    must start from the log's final length.
    """
    head = await log_head(target, token)
    for _ in range(limits.replay_settle_polls_max):
        await asyncio.sleep(limits.replay_poll_interval_ms / 1000)
        later = await log_head(target, token)
        if later == head:
            return head
        head = later
    raise ReplayFailed(f"the log was still growing after {limits.replay_settle_polls_max} reads")


async def top_up(target: str, token: str, members: int, events_min: int) -> int:
    """Append 1-point transfers in bulk until the head reaches `events_min`; return it."""
    assert members >= 2, "a transfer needs two members"
    head = await log_head(target, token)
    batch = limits.bulk_batch_commands_max
    async with grpc.aio.insecure_channel(target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        for message_index in range(limits.replay_top_up_messages_max):
            if head >= events_min:
                return head
            first = message_index * batch
            transfers = [
                cs.BulkCommand(
                    transfer_points=cs.TransferPointsRequest(
                        request_id=request_id(),
                        from_account_id=member_id(k % members),
                        to_account_id=member_id((k + 1) % members),
                        amount_points=1,
                    )
                )
                for k in range(first, first + batch)
            ]
            head = max(head, await _bulk_once(stub, token, transfers))
    raise ReplayFailed(f"the log held {head} events after the top-up's last message")


async def _bulk_once(
    stub: command_service_pb2_grpc.CommandServiceAsyncStub,
    token: str,
    commands: list[cs.BulkCommand],
) -> int:
    """Send one ExecuteBulk message; return the highest position its commands reached."""

    async def one_message() -> AsyncIterator[cs.ExecuteBulkRequest]:
        yield cs.ExecuteBulkRequest(commands=commands)

    head = 0
    call = stub.ExecuteBulk(
        one_message(), metadata=auth_metadata(token), timeout=limits.call_deadline_s
    )
    async for response in call:
        for result in response.results:
            if not result.HasField("ok"):
                raise ReplayFailed(f"top-up transfer failed: {result.error.reason}")
            head = max(head, decode_global(result.ok.transfer_points.position.token))
    return head


def query_process(command_target: str, plan: Plan, token: str, read_store: str) -> Contender:
    """Return a query server following the feed of `command_target` with a fresh read store."""
    env = (
        ("POINTEX_COMMAND_TARGET", command_target),
        ("POINTEX_AUTH_TOKENS_FILE", str(plan.tokens_file)),
        # The operator may read the feed too: the run's one credential drives everything.
        ("POINTEX_FEED_TOKEN", token),
        ("POINTEX_READ_STORE_URL", read_store),
        ("POINTEX_LOG_FORMAT", "json"),
        ("POINTEX_LOG_LEVEL", "WARNING"),
    )
    return Contender(
        "pointex-query", "replay", QUERY_MODULE, ("--listen", "127.0.0.1:0"), (), env=env
    )


async def wait_caught_up(
    stub: query_service_pb2_grpc.QueryServiceAsyncStub, token: str, head: int
) -> None:
    """Return once the projections' checkpoint has reached `head`."""
    request = query_service_pb2.GetProjectionStatusRequest(
        min_position=common_pb2.Position(token=encode_global(head))
    )
    deadline_s = time.monotonic() + limits.replay_wait_s_max
    while True:
        try:
            await stub.GetProjectionStatus(
                request, metadata=auth_metadata(token), timeout=_STATUS_WAIT_S
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            if time.monotonic() > deadline_s:
                raise ReplayFailed(
                    f"no catch-up to {head} in {limits.replay_wait_s_max} s"
                ) from None
        else:
            return


async def rebuild(
    stub: query_service_pb2_grpc.QueryServiceAsyncStub, token: str
) -> query_service_pb2.RebuildStatus:
    """Start a full rebuild, poll until it ends, and return its final status."""
    metadata = auth_metadata(token)
    started = await stub.RebuildProjections(
        query_service_pb2.RebuildProjectionsRequest(), metadata=metadata
    )
    rebuild_id = started.rebuild.rebuild_id
    deadline_s = time.monotonic() + limits.replay_wait_s_max
    while time.monotonic() < deadline_s:
        await asyncio.sleep(limits.replay_poll_interval_ms / 1000)
        status = await stub.GetProjectionStatus(
            query_service_pb2.GetProjectionStatusRequest(), metadata=metadata
        )
        current = status.rebuild
        if (
            current.rebuild_id == rebuild_id
            and current.state != query_service_pb2.REBUILD_STATE_RUNNING
        ):
            if current.state != query_service_pb2.REBUILD_STATE_COMPLETED:
                raise ReplayFailed(f"rebuild failed: {current.error_message}")
            return current
    raise ReplayFailed(f"rebuild not finished in {limits.replay_wait_s_max} s")


def _seconds(status: query_service_pb2.RebuildStatus) -> float:
    elapsed_ns = status.finished_at.ToNanoseconds() - status.started_at.ToNanoseconds()
    return elapsed_ns / _NS_PER_S


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def replay_once(
    running: Running, plan: Plan, token: str, env: dict[str, str], *, kind: str, read_store: str
) -> Row:
    """Catch a fresh query server up with the log, rebuild its projections, return the row."""
    head = await settled_head(running.target, token)
    query = await start(query_process(running.target, plan, token, read_store), plan.scratch, env)
    # Timed from the announced port: the process's imports are not part of the catch-up.
    listening_s = time.monotonic()
    try:
        async with grpc.aio.insecure_channel(query.target) as channel:
            stub = query_service_pb2_grpc.QueryServiceStub(channel)
            await wait_caught_up(stub, token, head)
            catch_up_s = time.monotonic() - listening_s
            status = await rebuild(stub, token)
    except (ReplayFailed, grpc.aio.AioRpcError) as error:
        raise ReplayFailed(f"{error}\n{query.log_tail()}") from None
    finally:
        await query.stop()
    replay_s = _seconds(status)
    if replay_s <= 0:
        raise ReplayFailed(f"the rebuild of {status.events_applied} events reported no duration")
    return {
        "contender": running.contender.name,
        "store": running.contender.store,
        "scenario": SCENARIO,
        "read_store": kind,
        "status": "ok",
        "log_events": head,
        "catch_up_s": round(catch_up_s, 2),
        "catch_up_events_per_s": round(head / catch_up_s, 1),
        "events_at_start": status.events_at_start,
        "events_replayed": status.events_applied,
        "replay_s": round(replay_s, 2),
        "events_per_s": round(status.events_applied / replay_s, 1),
    }


async def run_replay(
    running: Running, options: ReplayOptions, plan: Plan, token: str, env: dict[str, str]
) -> list[Row]:
    """Run the replay scenario against a running Pointex command server: one row per read store."""
    contender = running.contender
    rows: list[Row] = []
    for kind, read_store in read_stores(contender, plan, options).items():
        try:
            before = await settled_head(running.target, token)
            await top_up(running.target, token, options.members, options.replay_events_min)
            row = await replay_once(running, plan, token, env, kind=kind, read_store=read_store)
        except (ReplayFailed, StartFailed, grpc.aio.AioRpcError) as error:
            _say(f"{contender.name}/{contender.store} replay into {kind}: {error}")
            note = str(error).splitlines()[0][:120]
            rows.append(
                {**not_applicable(contender), "read_store": kind, "status": "pending", "note": note}
            )
            continue
        # Against the settled head, which counts the top-up's last transfer steps too.
        row["topped_up_events"] = row["log_events"] - before
        _say(
            f"{contender.name}/{contender.store} replay into {kind}: {row['events_replayed']:,} "
            f"events at {row['events_per_s']:,.0f} events/s; live catch-up {row['catch_up_s']} s"
        )
        rows.append(row)
    return rows
