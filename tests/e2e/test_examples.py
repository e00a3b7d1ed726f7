"""The scripts under examples/ run green against the whole stack, as a partner would run them."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from pointex.client.aio import AsyncPointexClient
from pointex.client.connection import Targets
from pointex.v1 import common_pb2
from tests.e2e.conftest import OPERATOR_TOKEN, Stack

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_TIMEOUT_S = 60


@dataclass(frozen=True)
class Ran:
    """What one example run did."""

    code: int
    stdout: str
    stderr: str


async def _run(stack: Stack, script: str, *args: str) -> Ran:
    """Run `python examples/<script> args...` with the stack's environment."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **stack.env()},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT_S)
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


def _operator(stack: Stack) -> AsyncPointexClient:
    return AsyncPointexClient(Targets(stack.command.target, stack.query.target), OPERATOR_TOKEN)


async def _open(client: AsyncPointexClient, kind: str, name: str) -> str:
    account_id = f"acme:{name}-{uuid.uuid4().hex[:8]}"
    await client.open_account(
        account_id, "merchant" if kind == "merchant" else "member", owner_partner_id="acme"
    )
    return account_id


async def test_merchant_award_awards_each_row_once_even_when_run_twice(
    tmp_path: Path, stack: Stack
) -> None:
    """The award example pays every row; running the same file again changes nothing."""
    async with _operator(stack) as operator:
        merchant = await _open(operator, "merchant", "shop")
        await operator.mint(merchant, 10_000)
        members = [await _open(operator, "member", f"m{n}") for n in range(5)]
        rows = [f"{member},{10 * (n + 1)},welcome" for n, member in enumerate(members)]
        awards = tmp_path / "awards.csv"
        awards.write_text("member,amount,reason\n" + "\n".join(rows) + "\n")
        first = await _run(stack, "merchant_award.py", merchant, str(awards))
        assert first.code == 0, first.stderr
        assert "awarded 5 rows, refused 0" in first.stdout
        again = await _run(stack, "merchant_award.py", merchant, str(awards))
        assert again.code == 0, again.stderr
        balances = [
            (await operator.get_account(m, consistent=True)).available_points for m in members
        ]
        shop = await operator.get_account(merchant, consistent=True)
    assert balances == [10, 20, 30, 40, 50]
    assert shop.available_points == 10_000 - 150
    assert f"{merchant} has 9850 points left" in again.stdout


async def _resting_sell(operator: AsyncPointexClient, quantity: int, price: int) -> str:
    """Open a funded seller with a resting SELL order; return the seller's id."""
    merchant = await _open(operator, "merchant", "shop")
    seller = await _open(operator, "member", "seller")
    await operator.mint(merchant, quantity)
    await operator.issue(merchant, seller, quantity)
    await operator.place_order(seller, "sell", quantity, price)
    return seller


async def test_member_buys_points_and_follows_its_trade_until_settled(stack: Stack) -> None:
    """The buying example matches a resting SELL, sees the sandbox pay, and the points land."""
    async with _operator(stack) as operator:
        await _resting_sell(operator, 50, 125)
        buyer = await _open(operator, "member", "buyer")
        ran = await _run(stack, "member_buys_points.py", buyer, "30", "125")
        assert ran.code == 0, ran.stderr
        bought = await operator.get_account(buyer, consistent=True)
    assert "1 trade(s) to pay" in ran.stdout
    assert "TRADE_STATUS_SETTLED" in ran.stdout
    assert f"{buyer} has 30 points" in ran.stdout
    assert bought.available_points == 30


@pytest.mark.parametrize("payment_delay_ms", [600_000])  # The sandbox never pays first.
async def test_payment_provider_adapter_signs_a_callback_that_settles_once(stack: Stack) -> None:
    """The adapter's signed confirmation settles the trade; its redelivery is a duplicate."""
    async with _operator(stack) as operator:
        seller = await _resting_sell(operator, 20, 300)
        buyer = await _open(operator, "member", "buyer")
        placed = await operator.place_order(buyer, "buy", 20, 300)
        trade = placed.trades[0]
        async with asyncio.timeout(SCRIPT_TIMEOUT_S):
            while not trade.payment_id:  # The payment is requested from the sandbox first.
                await asyncio.sleep(0.05)
                trade = await operator.get_trade(trade.trade_id, consistent=True)
        args = (
            trade.trade_id,
            trade.payment_id,
            str(trade.amount_due_minor),
            trade.currency,
            f"evt-{uuid.uuid4().hex}",
        )
        first = await _run(stack, "payment_provider_adapter.py", "confirm", *args)
        again = await _run(stack, "payment_provider_adapter.py", "confirm", *args)
        settled = await operator.get_trade(trade.trade_id, consistent=True)
        seller_now = await operator.get_account(seller, consistent=True)
    assert first.code == 0, first.stderr
    assert "TRADE_STATUS_SETTLED duplicate=False" in first.stdout
    assert "TRADE_STATUS_SETTLED duplicate=True" in again.stdout
    assert settled.status == common_pb2.TRADE_STATUS_SETTLED
    assert seller_now.held_points == 0


async def test_the_tour_that_the_partner_guide_quotes_runs_green(stack: Stack) -> None:
    """Every Python snippet of docs/partners.md comes from this script, which must work."""
    ran = await _run(stack, "tour.py")
    assert ran.code == 0, ran.stderr
    assert "tour complete" in ran.stdout
    assert "FAILED_PRECONDITION INSUFFICIENT_POINTS" in ran.stdout
    assert "ACCOUNT_NOT_FOUND" in ran.stdout
    assert "alice received 10" in ran.stdout
    # The fee snippet: no fee schedule in this stack, so a quote of 0 the transfer holds to.
    assert "bob gives 20 and pays 0 more: 20 in all" in ran.stdout
    assert "fee paid 0, bob has 85 left" in ran.stdout  # 80 given, 25 referral, 20 back.
