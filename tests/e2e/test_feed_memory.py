"""EventFeed flow control with a real command server: a stalled subscriber costs bounded memory.

Subscribers that never read are opened from position 0 over a log of tens of thousands of
events, and more events are committed while they stall. The command server's resident
memory (VmRSS) may grow only by a fixed bound, however long the log; afterwards one stalled
subscriber reads on and gets every event once, in order: it was held back, not dropped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from pointex.client.positions import decode_global
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc, common_pb2, event_feed_pb2, event_feed_pb2_grpc
from tests.e2e.conftest import OPERATOR_TOKEN, QUERY_TOKEN, ServerProcess, bearer
from tests.e2e.test_commands import MERCHANT, Client, rid

MERCHANTS = 20
MINTS_PER_BULK = 1_000
# Each mint commits two events (PointsMinted and its CommandRecorded).
BULKS_BEFORE = 10  # 20,000 events before the subscribers stall
BULKS_WHILE_STALLED = 10  # 20,000 more while they stall
STALLED_SUBSCRIBERS = 3
RSS_GROWTH_BYTES_MAX = 48 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Return the resident set size of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


async def mint_in_bulk(channel: grpc.aio.Channel, merchants: list[str], bulks: int) -> int:
    """Mint 1 point `MINTS_PER_BULK` times per bulk message; return the last position."""
    stub = command_service_pb2_grpc.CommandServiceStub(channel)

    async def requests() -> AsyncIterator[pb.ExecuteBulkRequest]:
        for _ in range(bulks):
            yield pb.ExecuteBulkRequest(
                commands=[
                    pb.BulkCommand(
                        mint_points=pb.MintPointsRequest(
                            request_id=rid(),
                            merchant_account_id=merchants[i % len(merchants)],
                            amount_points=1,
                        )
                    )
                    for i in range(MINTS_PER_BULK)
                ]
            )

    call = stub.ExecuteBulk(requests(), metadata=bearer(OPERATOR_TOKEN), timeout=120)
    last = 0
    async for response in call:
        assert all(result.WhichOneof("outcome") == "ok" for result in response.results)
        positions = [decode_global(r.ok.mint_points.position.token) for r in response.results]
        last = max(last, *positions)
    return last


async def test_stalled_feed_subscribers_keep_command_server_memory_bounded(
    command_server: ServerProcess,
) -> None:
    """RSS grows less than the bound while stalled subscribers face 40,000 events."""
    async with grpc.aio.insecure_channel(command_server.target) as channel:
        operator = Client(channel, OPERATOR_TOKEN)
        merchants = [f"ops:m-{uuid.uuid4().hex[:8]}" for _ in range(MERCHANTS)]
        for merchant in merchants:
            await operator.call(
                "OpenAccount",
                pb.OpenAccountRequest(
                    request_id=rid(), account_id=merchant, kind=MERCHANT, owner_partner_id="ops"
                ),
            )
        await mint_in_bulk(channel, merchants, BULKS_BEFORE)
        pid = command_server.process.pid
        before = rss_bytes(pid)
        stalled = [
            grpc.aio.insecure_channel(command_server.target) for _ in range(STALLED_SUBSCRIBERS)
        ]
        calls = [
            event_feed_pb2_grpc.EventFeedStub(each).Subscribe(
                event_feed_pb2.SubscribeRequest(from_position=common_pb2.Position()),
                metadata=bearer(QUERY_TOKEN),
                timeout=300,
            )
            for each in stalled
        ]
        try:
            for call in calls:
                await call.initial_metadata()
            total = await mint_in_bulk(channel, merchants, BULKS_WHILE_STALLED)
            await asyncio.sleep(2)
            growth = rss_bytes(pid) - before
            print(f"command server RSS: {before / 2**20:.1f} MiB, +{growth / 2**20:.1f} MiB")  # noqa: T201
            assert growth < RSS_GROWTH_BYTES_MAX
            positions: list[int] = []
            async for response in calls[0]:
                positions += [decode_global(e.position.token) for e in response.events.events]
                if len(positions) >= total:
                    break
            assert positions == list(range(1, total + 1))
        finally:
            for call in calls:
                call.cancel()
            for each in stalled:
                await each.close(grace=None)
