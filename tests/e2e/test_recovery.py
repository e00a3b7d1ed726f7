"""Recovery after SIGKILL restores an open process of every kind the command server runs.

The command server is killed with a trade pending payment and an issue whose points are
pending for a moment more. While it is down, the first step of a transfer (the source's
debit with TransferInitiated) and of a SELL order's placement (the seller's hold) are
committed on its store, exactly as a server that died right after those steps would have
left them. The restarted server must finish all four: credit the transfer, place the order,
cancel the trade whose payment deadline it watches again, and activate the pending points,
whose time passed while it was down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pointex.client.aio import AsyncPointexClient
from pointex.client.connection import Targets
from pointex.server import limits
from pointex.server.actors.stream_actor import Decide
from pointex.server.command.app.market_handlers import order_id_for
from pointex.server.command.app.recovery import PROCESS_KINDS
from pointex.server.command.bootstrap import start_core
from pointex.server.domain import streams
from pointex.server.domain.commands import HoldPoints
from pointex.server.domain.events import NEVER, AccountEvent, PointsActivated, TransferCompleted
from pointex.server.domain.market_events import OrderPlaced, TradeCancelled
from pointex.server.domain.processes import transfer as process
from pointex.server.domain.program import FeeQuote
from pointex.server.domain.values import (
    Caller,
    Instant,
    Role,
    TimeInForce,
    TradeCancelReason,
    TransferKind,
)
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, RecordedEvent, StreamAppend
from tests.e2e.conftest import (
    OPERATOR_TOKEN,
    StartCommandServer,
    sandbox_provider,
)
from tests.e2e.test_crash import opened_store

ACME = Caller(Role.PARTNER, "acme")
PAYMENT_WINDOW_MS = 5_000
ACTIVATION_DELAY_MS = 1_000
RECOVERY_TIMEOUT_S = 20
SECRET = "whsec_" + uuid.uuid4().hex


@dataclass(frozen=True)
class Terms:
    """The terms of the transfer whose first step the dead server committed."""

    request_id: str
    kind: TransferKind
    from_account_id: str
    to_account_id: str
    amount_points: int
    memo: str
    activates_at: Instant = NEVER
    fee_quote: FeeQuote | None = None


@dataclass(frozen=True)
class Opened:
    """What the dead server left open, one of each kind, by the id the log names it by."""

    transfer_id: str
    order_id: str
    trade_id: str
    pending_issue_id: str = ""


def _markets_file(tmp_path: Path) -> Path:
    """Write a markets file with a short payment window."""
    markets = tmp_path / "markets.toml"
    markets.write_text(
        f'[markets.PTS-CNY]\nprovider_id = "sandbox"\npayment_window_ms = {PAYMENT_WINDOW_MS}\n'
    )
    return markets


async def _trade_pending(client: AsyncPointexClient, suffix: str) -> tuple[str, str, str]:
    """Fund a shop, two members and a third; match a SELL with a BUY; return ids."""
    shop, seller, buyer = (f"acme:{name}-{suffix}" for name in ("shop", "seller", "buyer"))
    await client.open_account(shop, "merchant", owner_partner_id="acme")
    await client.mint(shop, 1_000)
    for member in (seller, buyer):
        await client.open_account(member, "member", owner_partner_id="acme")
        await client.issue(shop, member, 200)
    await client.place_order(seller, "sell", 30, 100)
    placed = await client.place_order(buyer, "buy", 30, 100, time_in_force="ioc")
    assert len(placed.trades) == 1, placed
    return seller, buyer, placed.trades[0].trade_id


async def _leave_first_steps_open(store: EventStore, seller: str, buyer: str) -> Opened:
    """Commit the first step of a transfer and of a placement, as a dying server would."""
    core = start_core(store, resident_max=limits.actors_resident_max)
    key = uuid.uuid4().hex
    terms = Terms("r-open", TransferKind.TRANSFER, buyer, seller, 15, "in flight")

    def initiate(_state: object, events: list[AccountEvent]) -> tuple[tuple[StreamAppend], None]:
        initiated = process.initiated_of(terms, key, events[0])
        return (StreamAppend(streams.transfer(key), 0, (codec.encode(initiated),)),), None

    await core.actors.ask(buyer, Decide(process.debit_of(ACME, terms, key), initiate))
    order_id = order_id_for(uuid.uuid4().hex)
    hold = HoldPoints(ACME, seller, order_id, "PTS-CNY", 20, 500, TimeInForce.GTC, "")
    await core.actors.ask(seller, Decide(hold))
    await core.lookup.stop()
    await core.committer.stop()
    return Opened(key, order_id, "")  # The trade is the one the server left pending.


async def _log(store: EventStore) -> list[RecordedEvent]:
    events: list[RecordedEvent] = []
    while page := await store.read_all(len(events), limits.read_batch_events_max):
        events.extend(page)
    return events


async def _until(store: EventStore, done: Callable[[list[object]], bool]) -> list[object]:
    """Read the log until `done` holds for its decoded events, within RECOVERY_TIMEOUT_S."""
    async with asyncio.timeout(RECOVERY_TIMEOUT_S):
        while True:
            decoded = [codec.decode(event) for event in await _log(store)]
            if done(decoded):
                return decoded
            await asyncio.sleep(0.1)


async def test_recovery_after_sigkill_finishes_an_open_process_of_every_kind(
    tmp_path: Path, unused_tcp_port: int, start_command_server: StartCommandServer
) -> None:
    """Kill -9 with a trade pending; leave a debit and a hold open; the restart ends all three."""
    assert set(PROCESS_KINDS) == {"transfer", "placement", "trade", "activation", "expiry"}, (
        "a kind without a case"
    )
    command_target = f"127.0.0.1:{unused_tcp_port}"
    async with sandbox_provider(  # It never pays within the test.
        tmp_path, command_target, SECRET, POINTEX_PAYMENT_DELAY_MS="3600000"
    ) as (_, providers):
        markets = _markets_file(tmp_path)
        url = f"sqlite:///{tmp_path / 'events.db'}"
        env = {
            "POINTEX_LISTEN": command_target,
            "POINTEX_PAYMENT_PROVIDERS_FILE": str(providers),
            "POINTEX_MARKETS_FILE": str(markets),
        }
        first = await start_command_server(url, extra_env=env)
        client = AsyncPointexClient(Targets(first.target, first.target), OPERATOR_TOKEN)
        seller, buyer, trade_id = await _trade_pending(client, uuid.uuid4().hex[:8])
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=ACTIVATION_DELAY_MS)
        shop = seller.replace(":seller-", ":shop-")
        pending = await client.issue(shop, buyer, 7, activates_at=soon)
        await client.close()
        first.process.kill()  # SIGKILL: nothing is drained, nothing is saved.
        await first.process.wait()
        async with opened_store(url) as store:
            decoded = [codec.decode(event) for event in await _log(store)]
            assert not any(isinstance(e, TradeCancelled) for e in decoded), "ended too soon"
            opened = await _leave_first_steps_open(store, seller, buyer)
        opened = Opened(opened.transfer_id, opened.order_id, trade_id, pending.transfer_id)
        await asyncio.sleep(ACTIVATION_DELAY_MS / 1000)  # The activation time passes while down.
        await start_command_server(url, extra_env=env)
        async with opened_store(url) as store:
            decoded = await _until(store, lambda events: _all_ended(events, opened))
    cancelled = [e for e in decoded if isinstance(e, TradeCancelled) and e.trade_id == trade_id]
    assert [e.reason for e in cancelled] == [TradeCancelReason.PAYMENT_DEADLINE_PASSED]


def _all_ended(events: list[object], opened: Opened) -> bool:
    """Tell whether the transfer completed, the order was placed and the trade cancelled."""
    completed = TransferCompleted(opened.transfer_id) in events
    placed = any(isinstance(e, OrderPlaced) and e.order_id == opened.order_id for e in events)
    cancelled = any(isinstance(e, TradeCancelled) and e.trade_id == opened.trade_id for e in events)
    activated = any(
        isinstance(e, PointsActivated) and e.transfer_id == opened.pending_issue_id for e in events
    )
    return completed and placed and cancelled and activated
