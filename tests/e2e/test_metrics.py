"""Prometheus metrics: both servers count RPCs by method and code and expose their gauges."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

import grpc
import pytest

from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc, common_pb2
from tests.e2e.conftest import (
    ACME_TOKEN,
    ServerProcess,
    StartCommandServer,
    StartQueryServer,
    bearer,
)

METRICS_ON = {"POINTEX_METRICS_LISTEN": "127.0.0.1:0"}


def metrics_port(server: ServerProcess) -> int:
    """Return the port the server logged for its /metrics endpoint."""
    for line in server.log().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if "metrics_port" in record:
            return int(record["metrics_port"])
    raise AssertionError(f"no metrics port in the log:\n{server.log()}")


async def scrape(server: ServerProcess) -> str:
    """Return the server's /metrics page."""
    url = f"http://127.0.0.1:{metrics_port(server)}/metrics"

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return str(reply.read().decode())

    return await asyncio.to_thread(fetch)


async def test_command_and_query_servers_expose_their_metrics(
    store_url: str,
    start_command_server: StartCommandServer,
    start_query_server: StartQueryServer,
) -> None:
    """An accepted and a refused command are counted by code; the query server shows its lag."""
    command = await start_command_server(store_url, markets=False, extra_env=METRICS_ON)
    query = await start_query_server(command.target, extra_env=METRICS_ON)
    async with grpc.aio.insecure_channel(command.target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        opened = pb.OpenAccountRequest(
            request_id=uuid.uuid4().hex,
            account_id=f"acme:m-{uuid.uuid4().hex[:8]}",
            kind=common_pb2.ACCOUNT_KIND_MERCHANT,
        )
        await stub.OpenAccount(opened, metadata=bearer(ACME_TOKEN), timeout=10)
        minted = pb.MintPointsRequest(
            request_id=uuid.uuid4().hex, merchant_account_id=opened.account_id, amount_points=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.MintPoints(minted, metadata=bearer(ACME_TOKEN), timeout=10)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    page = await scrape(command)
    assert (
        'pointex_rpcs_total{code="OK",method="/pointex.v1.CommandService/OpenAccount"} 1.0' in page
    ), page
    assert (
        'pointex_rpcs_total{code="PERMISSION_DENIED",'
        'method="/pointex.v1.CommandService/MintPoints"} 1.0' in page
    ), page
    assert (
        'pointex_rpc_duration_seconds_count{method="/pointex.v1.CommandService/OpenAccount"}'
        in page
    )
    assert "pointex_actors_resident 1.0" in page
    # Every in-memory map of the processes and markets has its gauge; nothing is open here.
    for gauge in (
        "pointex_transfers_open",
        "pointex_reversals_under_way",
        "pointex_pending_issues_watched",
        "pointex_trades_open",
        "pointex_trade_deadlines_watched",
        "pointex_process_steps_running",
        "pointex_market_orders_resting",
        "pointex_market_orders_finished_kept",
    ):
        assert f"{gauge} 0.0" in page, gauge
    # Opening the account was one unit, committed by at least one group commit (the
    # server's own start-up may commit more before it).
    totals = {
        line.split()[0]: float(line.split()[1])
        for line in page.splitlines()
        if line.startswith("pointex_group_commit")
    }
    assert totals["pointex_group_commits_total"] >= 1, page
    assert totals["pointex_group_commit_units_total"] >= totals["pointex_group_commits_total"]
    assert totals["pointex_group_commit_events_total"] >= totals["pointex_group_commit_units_total"]
    query_page = await scrape(query)
    assert "pointex_projection_position" in query_page
    assert "pointex_projection_lag_events" in query_page
