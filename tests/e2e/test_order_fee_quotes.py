"""Order fee quotes end to end: quoted on the query server, held to by the command server.

Real processes on SQLite: the sandbox provider (it never pays during the test), a command
server serving PTS-CNY from a markets file, and a query server following it, driven through
the SDK. A partner quotes a SELL and a BUY, places both with their quotes, and the trade pays
the quoted buyer's fee. The command server is then restarted with a dearer seller's fee, as
an operator changes a market's fees: the market records the new configuration, the read side
shows fee schedule version 2, and a SELL holding a quote of version 1 is refused with
FEE_SCHEDULE_CHANGED and its ErrorInfo, holding nothing; quoted again, it is placed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pointex.client.aio import AsyncPointexClient
from pointex.client.connection import Targets
from pointex.client.errors import Refused
from pointex.v1 import common_pb2
from tests.e2e.conftest import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    ServerProcess,
    StartCommandServer,
    StartQueryServer,
    sandbox_provider,
    wait_serving,
)

SECRET = "whsec_" + uuid.uuid4().hex
# 1% + 0.05 to the buyer, 0.5% to the seller; then the seller's part goes up to 0.8%.
MARKET = (
    '[markets.PTS-CNY]\nprovider_id = "sandbox"\nbuyer_fee_bps = 100\n'
    "buyer_fee_fixed_minor = 5\nseller_fee_bps = {seller_bps}\n"
)


@dataclass
class Servers:
    """The command server (restartable on the same address) and the query server."""

    command: ServerProcess
    query: ServerProcess
    store_url: str
    env: dict[str, str]
    markets_file: Path
    start_command_server: StartCommandServer

    async def restart_command(self, seller_bps: int) -> None:
        """Stop the command server and start it again with another seller's fee."""
        await self.command.terminate()
        self.markets_file.write_text(MARKET.format(seller_bps=seller_bps))
        self.command = await self.start_command_server(self.store_url, extra_env=self.env)
        await wait_serving(self.command.target)

    def client(self, token: str) -> AsyncPointexClient:
        """Return an SDK client of both servers."""
        return AsyncPointexClient(Targets(self.command.target, self.query.target), token)


@pytest.fixture
async def servers(
    tmp_path: Path,
    unused_tcp_port: int,
    start_command_server: StartCommandServer,
    start_query_server: StartQueryServer,
) -> AsyncIterator[Servers]:
    """Start the sandbox, the command server it calls back, then the query server."""
    command_target = f"127.0.0.1:{unused_tcp_port}"
    async with sandbox_provider(  # It never pays within the test.
        tmp_path, command_target, SECRET, POINTEX_PAYMENT_DELAY_MS="3600000"
    ) as (_, providers):
        markets = tmp_path / "markets.toml"
        markets.write_text(MARKET.format(seller_bps=50))
        env = {
            "POINTEX_LISTEN": command_target,
            "POINTEX_PAYMENT_PROVIDERS_FILE": str(providers),
            "POINTEX_MARKETS_FILE": str(markets),
        }
        url = f"sqlite:///{tmp_path / 'events.db'}"
        command = await start_command_server(url, extra_env=env)
        query = await start_query_server(command.target)
        yield Servers(command, query, url, env, markets, start_command_server)


async def _traders(servers: Servers) -> tuple[str, str, common_pb2.Position]:
    """Open acme's shop, a seller with 200 points and a buyer with none; return the position."""
    suffix = uuid.uuid4().hex[:8]
    shop, seller, buyer = (f"acme:{name}-{suffix}" for name in ("shop", "seller", "buyer"))
    async with servers.client(OPERATOR_TOKEN) as operator:
        await operator.open_account(shop, "merchant", owner_partner_id="acme")
        await operator.mint(shop, 1_000)
        for member in (seller, buyer):
            await operator.open_account(member, "member", owner_partner_id="acme")
        issued = await operator.issue(shop, seller, 200)
    return seller, buyer, issued.position


async def test_a_quote_binds_the_fee_schedule_across_a_reconfiguration(servers: Servers) -> None:
    """Quoted orders pay their quotes; after a fee change an old quote is refused, holds nothing."""
    seller, buyer, funded = await _traders(servers)
    async with servers.client(ACME_TOKEN) as acme:
        sell = await acme.quote_order(seller, "sell", 30, 100, min_position=funded)
        # ceil(3000 * 50 / 10000) = 15 deducted from the proceeds, schedule version 1.
        assert (sell.quote.fee_minor, sell.quote.schedule_version, sell.total_minor) == (
            15,
            1,
            2985,
        )
        await acme.place_order(seller, "sell", 30, 100, fee_quote=sell.quote)
        buy = await acme.quote_order(buyer, "buy", 10, 100, consistent=True)
        assert (buy.quote.fee_minor, buy.total_minor) == (10 + 5, 1015)
        bought = await acme.place_order(buyer, "buy", 10, 100, fee_quote=buy.quote)
        (trade,) = bought.trades
        assert (trade.buyer_fee_minor, trade.amount_due_minor) == (15, 1015)
        stale = await acme.quote_order(seller, "sell", 20, 100, consistent=True)
        assert stale.quote == common_pb2.OrderFeeQuote(fee_minor=10, schedule_version=1)

    await servers.restart_command(seller_bps=80)
    async with servers.client(ACME_TOKEN) as acme:
        with pytest.raises(Refused) as caught:
            await acme.place_order(
                seller, "sell", 20, 100, client_order_id="stale", fee_quote=stale.quote
            )
        assert caught.value.reason == "FEE_SCHEDULE_CHANGED"
        # ceil(2000 * 80 / 10000) = 16 under schedule 2.
        assert caught.value.metadata == {"schedule_version": "2", "fee_minor": "16"}
        # A write after the restart: reads at its position see the market's new configuration.
        await acme.open_account(f"acme:later-{uuid.uuid4().hex[:8]}", "member")
        markets = await acme.list_markets(consistent=True)
        assert [(m.market_id, m.fee_schedule_version) for m in markets] == [("PTS-CNY", 2)]
        fresh = await acme.quote_order(seller, "sell", 20, 100, consistent=True)
        assert fresh.quote == common_pb2.OrderFeeQuote(fee_minor=16, schedule_version=2)
        placed = await acme.place_order(
            seller, "sell", 20, 100, client_order_id="fresh", fee_quote=fresh.quote
        )
        account = await acme.get_account(seller, consistent=True)
        # 200 - 30 - 20: the refused order held nothing (else 130 available, 70 held).
        assert (account.available_points, account.held_points) == (150, 50)
        orders = [order async for order in acme.list_orders(account_id=seller, consistent=True)]
        assert sorted(order.client_order_id for order in orders) == ["", "fresh"]
    async with servers.client(OPERATOR_TOKEN) as operator:
        checked = await operator.check_invariants(min_position=placed.position)
        assert not checked.violations, checked
