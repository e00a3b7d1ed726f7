"""Rounds of SIGKILL under transfer load: every acknowledged transfer once, nothing doubled.

Each round runs sixteen clients moving points between members, kills the command server
with SIGKILL, starts a new one on the same store, and has the clients retry every attempt
that was not acknowledged with its request id, until each one is known. The log, read
directly, must then hold every acknowledged transfer exactly once and completed, no
transfer open, no leg without its process, and the points conserved (I1). The transfers in
the log at the end are exactly the acknowledged ones.
"""

from __future__ import annotations

from pointex.server.domain.values import TransferKind
from tests.e2e.chaos.conftest import Report, scale
from tests.e2e.conftest import StartCommandServer
from tests.e2e.test_crash import (
    Attempt,
    assert_acknowledged_once,
    assert_conserved,
    assert_settled_once,
    load_then_kill,
    open_funded_members,
    opened_store,
    read_ledger,
    read_settled_ledger,
    retry_all_at_once,
    retry_unknown_one_by_one,
)

CLIENTS = 16


async def test_sigkill_rounds_under_load_lose_and_double_nothing(
    store_url: str, start_command_server: StartCommandServer, chaos_report: Report
) -> None:
    """Kill, restart, retry, check; again. The ledger holds exactly the acknowledged transfers."""
    postgres = store_url.startswith("postgres")
    rounds = scale(2, 10) if postgres else scale(1, 3)
    server = await start_command_server(store_url, markets=False)
    members = await open_funded_members(server.target)
    attempts: list[Attempt] = []
    for _ in range(rounds):
        round_attempts = await load_then_kill(server, members, CLIENTS)
        attempts += round_attempts
        server = await start_command_server(store_url, markets=False)
        await retry_all_at_once(server.target, round_attempts)
        await retry_unknown_one_by_one(server.target, round_attempts)
        async with opened_store(store_url) as store:
            ledger = await read_settled_ledger(store)
            assert_settled_once(ledger)
            assert_conserved(ledger)
            assert_acknowledged_once(ledger, attempts)
    async with opened_store(store_url) as store:
        ledger, _ = await read_ledger(store)
    in_log = {
        initiated.request_id
        for [initiated] in ledger.initiated.values()
        if initiated.kind is TransferKind.TRANSFER
    }
    acknowledged = {a.request.request_id for a in attempts if a.final.reply is not None}
    assert in_log == acknowledged
    first_time = sum(1 for a in attempts if a.first.reply is not None)
    unknown_at_kill = sum(1 for a in attempts if a.first.unknown)
    chaos_report(
        "every acknowledged transfer in the log once and completed, none open, I1 holds, "
        "the log's transfers are exactly the acknowledged ones",
        f"{'PostgreSQL' if postgres else 'SQLite'}: {rounds} kills, {CLIENTS} clients, "
        f"{len(attempts)} attempts, {first_time} acknowledged at once, {unknown_at_kill} cut "
        f"by a kill and retried, {len(acknowledged)} transfers in the log; 0 lost, 0 doubled",
    )
