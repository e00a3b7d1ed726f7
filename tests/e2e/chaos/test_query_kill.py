"""The query server killed under load: it catches up exactly; a watcher misses nothing.

Eight clients issue points to two members while a watcher follows one member's
notifications through the SDK (which resumes from its last cursor when the stream breaks).
The query server is killed with SIGKILL mid-load, perhaps mid-transaction of its read
store, and started again on the same read store. Once it has caught up with the last
acknowledged command, a compare-only rebuild from the log must find no row that differs,
and the watcher must have seen exactly one notification per acknowledged issue to its
member, each once.
"""

from __future__ import annotations

import asyncio
import random

import grpc

from pointex.client.aio import AsyncPointexClient
from pointex.client.connection import Targets
from pointex.v1 import query_service_pb2 as qpb
from tests.e2e.chaos.conftest import Report, scale
from tests.e2e.conftest import OPERATOR_TOKEN, Stack, StartQueryServer
from tests.e2e.test_query import Queries, rebuild
from tests.e2e.test_sdk import FAST_RETRY, _funded

CLIENTS = 8
LOAD_S = 1.0
RECEIVED = qpb.NOTIFICATION_KIND_POINTS_RECEIVED


async def test_a_killed_query_server_catches_up_exactly_and_a_watcher_loses_nothing(
    stack: Stack, start_query_server: StartQueryServer, chaos_report: Report
) -> None:
    """SIGKILL the query server under load; the rebuild agrees; each notification comes once."""
    kills = scale(1, 5)
    targets = Targets(stack.command.target, stack.query.target)
    async with AsyncPointexClient(targets, OPERATOR_TOKEN, retry=FAST_RETRY) as operator:
        merchant, alice, bob = await _funded(operator, 10_000_000)
        cursors: list[bytes] = []
        amounts: list[int] = []

        async def watch() -> None:
            notes = operator.notifications(
                account_ids=[alice], kinds=[RECEIVED], from_beginning=True
            )
            async for note in notes:
                cursors.append(note.cursor)
                amounts.append(note.points_moved.amount_points)

        watcher = asyncio.create_task(watch())
        to_alice: list[int] = []
        acknowledged = 0
        stop = asyncio.Event()

        async def load(rng: random.Random) -> None:
            # Commands go to the command server, which is not touched: each one is answered.
            nonlocal acknowledged
            while not stop.is_set():
                member = rng.choice((alice, bob))
                amount = rng.randint(1, 9)
                await operator.issue(merchant, member, amount)
                acknowledged += 1
                if member == alice:
                    to_alice.append(amount)

        loads = [asyncio.create_task(load(random.Random(n))) for n in range(CLIENTS)]
        query = stack.query
        for _ in range(kills):
            await asyncio.sleep(LOAD_S)
            query.process.kill()
            await query.process.wait()
            query = await start_query_server(
                stack.command.target, extra_env={"POINTEX_LISTEN": query.target}
            )
        await asyncio.sleep(LOAD_S)
        stop.set()
        await asyncio.gather(*loads)
        last = (await operator.issue(merchant, bob, 1)).position
        async with asyncio.timeout(30):
            while sorted(amounts) != sorted(to_alice):
                assert len(amounts) <= len(to_alice), "a notification came twice"
                await asyncio.sleep(0.1)
        watcher.cancel()
    assert len(set(cursors)) == len(cursors)
    async with grpc.aio.insecure_channel(query.target) as channel:
        queries = Queries(channel, OPERATOR_TOKEN)
        await queries.all_accounts(last)  # Caught up with the last command.
        compared = await rebuild(queries, compare_only=True)
    assert compared.mismatch_count == 0
    chaos_report(
        "the read models equal a rebuild from the log; the watcher gets each notification once",
        f"{kills} SIGKILL of the query server, {acknowledged} issues acknowledged "
        f"({len(to_alice)} to the watched member), {len(amounts)} notifications, 0 lost, "
        f"0 repeated, {compared.events_applied} events rebuilt, 0 rows differ",
    )
