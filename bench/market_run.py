"""The market scenario's processes: a fresh contender wired to a real sandbox provider.

The market runs on a store of its own (a fresh PostgreSQL schema or SQLite file), so its
books hold only its own orders and the end-of-run check reads little. For each contender:

1. reserve a free loopback port for the sandbox provider (the two processes must know each
   other's address at start, and only one of them can take port 0);
2. start the contender with the sandbox as its payment provider (Pointex: a providers
   file; the lock-based contender: `--sandbox-target` and the secret file);
3. start `python -m pointex.server.payments.sandbox.main` on the reserved port, calling the
   contender back with a `payment_provider` token and the shared secret;
4. open and fund one member per caller (untimed), drive the load, then wait until every
   trade has been paid or cancelled and check the books (bench/market_check.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import grpc

from bench import limits
from bench.accounts import SetupFailed, setup_accounts
from bench.contenders import (
    Contender,
    Plan,
    Running,
    StartFailed,
    new_schema,
    read_counters,
    start,
)
from bench.loadgen import LoadFailed, LoadSpec, run_load
from bench.market_check import Books, judge, read_lockbased, read_pointex, settled_books, settled_in
from bench.market_load import is_seller, traders_count
from bench.recorder import Recorded
from bench.report import Row, counters_delta, summarize

PROVIDER_ID: Final = "sandbox"
KEY_ID: Final = "bench-1"
SANDBOX_MODULE: Final = "pointex.server.payments.sandbox.main"
QUERY_MODULE: Final = "pointex.server.query.main"


class MarketOptions(Protocol):
    """What a market run needs of the runner's options."""

    @property
    def callers(self) -> int:
        """Closed-loop callers: one trader account each."""

    @property
    def processes(self) -> int:
        """Load-generator processes."""

    @property
    def warmup_s(self) -> int:
        """Warm-up seconds before the measured window."""

    @property
    def measure_s(self) -> int:
        """Measured seconds."""


@dataclass
class Window:
    """When the measured window opened (Unix ms) and how the contender's counters grew."""

    start_ms: int = 0
    before: Counter[str] = field(default_factory=Counter)
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MarketWiring:
    """The credentials and files one market run shares between its processes."""

    tokens_file: Path
    operator_token: str
    provider_token: str
    feed_token: str
    secret_file: Path
    sandbox_port: int

    @property
    def sandbox_target(self) -> str:
        """Return the sandbox provider's loopback host:port."""
        return f"127.0.0.1:{self.sandbox_port}"


def reserve_port() -> int:
    """Return a loopback port that was free a moment ago (the sandbox binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def new_wiring(plan: Plan, operator_token: str) -> MarketWiring:
    """Write a tokens file with the three roles and a fresh callback secret for one run."""
    run = secrets.token_hex(4)
    provider_token, feed_token = secrets.token_hex(24), secrets.token_hex(24)
    tokens_file = plan.scratch / f"market-tokens-{run}"
    tokens_file.write_text(
        f"operator bench-operator {operator_token}\n"
        f"payment_provider {PROVIDER_ID} {provider_token}\n"
        f"query_server bench-query {feed_token}\n"
    )
    secret_file = plan.scratch / f"market-secret-{run}"
    secret_file.write_text(secrets.token_urlsafe(32) + "\n")
    return MarketWiring(
        tokens_file, operator_token, provider_token, feed_token, secret_file, reserve_port()
    )


def _providers_file(plan: Plan, wiring: MarketWiring) -> Path:
    path = plan.scratch / f"providers-{wiring.sandbox_port}.toml"
    path.write_text(
        f"[providers.{PROVIDER_ID}]\n"
        'kind = "sandbox"\n'
        f'target = "{wiring.sandbox_target}"\n'
        f"[[providers.{PROVIDER_ID}.keys]]\n"
        f'key_id = "{KEY_ID}"\n'
        f'secret_file = "{wiring.secret_file.name}"\n'
    )
    return path


def _replace_arg(args: tuple[str, ...], flag: str, value: str) -> tuple[str, ...]:
    index = args.index(flag)
    return (*args[: index + 1], value, *args[index + 2 :])


def market_contender(contender: Contender, plan: Plan, wiring: MarketWiring) -> Contender:
    """Return `contender` on a fresh store, with the sandbox as its payment provider."""
    if contender.name == "pointex":
        if contender.store == "postgres":
            url = f"{plan.pg_dsn}?schema={new_schema(plan)}"
        else:
            url = f"sqlite:///{plan.scratch / f'market-{secrets.token_hex(4)}.db'}"
        env = {
            **dict(contender.env),
            "POINTEX_AUTH_TOKENS_FILE": str(wiring.tokens_file),
            "POINTEX_PAYMENT_PROVIDERS_FILE": str(_providers_file(plan, wiring)),
        }
        args = _replace_arg(contender.args, "--store-url", url)
        return dataclasses.replace(contender, args=args, env=tuple(env.items()), setup_key=url)
    assert contender.name.startswith("lockbased"), contender.name
    schema = new_schema(plan)
    args = (
        *_replace_arg(contender.args, "--schema", schema),
        "--sandbox-target", wiring.sandbox_target,
        "--provider-id", PROVIDER_ID,
        "--provider-secret-file", str(wiring.secret_file),
    )  # fmt: skip
    return dataclasses.replace(contender, args=args, setup_key=f"lockbased:{schema}")


def market_schema(contender: Contender) -> str | None:
    """Return the PostgreSQL schema of a lock-based market contender (None for Pointex)."""
    if "--schema" not in contender.args or contender.name == "pointex":
        return None
    return contender.args[contender.args.index("--schema") + 1]


def sandbox_process(wiring: MarketWiring, command_port: int) -> Contender:
    """Return the sandbox provider process calling the contender on `command_port` back."""
    env = {
        "POINTEX_COMMAND_TARGET": f"127.0.0.1:{command_port}",
        "POINTEX_PROVIDER_ID": PROVIDER_ID,
        "POINTEX_PROVIDER_KEY_ID": KEY_ID,
        "POINTEX_PROVIDER_SECRET_FILE": str(wiring.secret_file),
        "POINTEX_CALLBACK_TOKEN": wiring.provider_token,
        "POINTEX_PAYMENT_DELAY_MS": str(limits.market_payment_delay_ms),
        "POINTEX_PAYMENT_FAILURE_RATE_BPS": str(limits.market_payment_failure_rate_bps),
        "POINTEX_LOG_FORMAT": "json",
        "POINTEX_LOG_LEVEL": "WARNING",
    }
    args = ("--listen", wiring.sandbox_target)
    return Contender("sandbox", "memory", SANDBOX_MODULE, args, (), env=tuple(env.items()))


def query_process(plan: Plan, wiring: MarketWiring, command_port: int) -> Contender:
    """Return a Pointex query server following the contender's feed (the end-of-run check)."""
    read_store = plan.scratch / f"read-{secrets.token_hex(4)}.db"
    env = {
        "POINTEX_AUTH_TOKENS_FILE": str(wiring.tokens_file),
        "POINTEX_COMMAND_TARGET": f"127.0.0.1:{command_port}",
        "POINTEX_FEED_TOKEN": wiring.feed_token,
        "POINTEX_READ_STORE_URL": f"sqlite:///{read_store}",
        "POINTEX_LOG_FORMAT": "json",
        "POINTEX_LOG_LEVEL": "WARNING",
    }
    args = ("--listen", "127.0.0.1:0")
    return Contender("pointex-query", "sqlite", QUERY_MODULE, args, (), env=tuple(env.items()))


async def start_pair(
    contender: Contender, plan: Plan, wiring: MarketWiring, env: dict[str, str]
) -> tuple[Running, Running]:
    """Start the contender, then the sandbox provider calling it back; return both."""
    running = await start(contender, plan.scratch, env)
    try:
        sandbox = await start(sandbox_process(wiring, running.port), plan.scratch, env)
    except BaseException:
        await running.stop()
        raise
    return running, sandbox


def _reader(
    running: Running, query: Running | None, plan: Plan, token: str, traders: int
) -> Callable[[], Awaitable[Books]]:
    schema = market_schema(running.contender)
    if query is not None:
        return lambda: read_pointex(running.target, query.target, token, traders)
    assert schema is not None, running.contender
    return lambda: read_lockbased(plan.pg_dsn, schema, traders)


def market_row(
    running: Running, options: MarketOptions, recorded: Recorded, books: Books, window: Window
) -> Row:
    """Return the market row: order throughput and latency, settlements, the check."""
    traders = traders_count(options.callers)
    summary = summarize(recorded, options.measure_s)
    check = judge(books, traders)
    settled = settled_in(books, window.start_ms, window.start_ms + options.measure_s * 1000)
    created = recorded.counts["trades_created"]
    sellers = sum(1 for k in range(traders) if is_seller(k))
    errors: dict[str, int] = summary["errors"]
    unserved = summary["ok"] == 0 and all(k.startswith("UNIMPLEMENTED") for k in errors)
    status = "inconsistent" if not check["ok"] else "pending" if unserved else "ok"
    row: Row = {
        "contender": running.contender.name,
        "store": running.contender.store,
        "scenario": "market",
        "concurrency": options.callers,
        "load": f"{options.callers} callers: {sellers} sellers, {traders - sellers} buyers",
        "status": status,
        **summary,
        "trades_created": created,
        "trades_per_s": round(created / options.measure_s, 1),
        "trades_settled": settled,
        "settled_per_s": round(settled / options.measure_s, 1),
        "cancels": recorded.counts["cancels"],
        "cancels_too_late": recorded.counts["cancels_too_late"],
        "deadlocks": window.counters.get("deadlocks"),
        "conflicts": None,
        "retries": None,
        "server_counters": window.counters,
        "sandbox": {
            "payment_delay_ms": limits.market_payment_delay_ms,
            "payment_failure_rate_bps": limits.market_payment_failure_rate_bps,
        },
        "check": check,
    }
    if status != "ok":
        row["note"] = "; ".join(check["failures"]) or "no PlaceOrder succeeded"
    return row


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def _measure(
    running: Running, plan: Plan, options: MarketOptions, wiring: MarketWiring, env: dict[str, str]
) -> tuple[Recorded, Books, Window]:
    """Set the traders up, drive the load, wait for the last payments, read the books."""
    traders = traders_count(options.callers)
    token = wiring.operator_token
    await setup_accounts(running.target, token, traders)
    spec = LoadSpec(
        running.target, "market", options.callers, options.processes, options.warmup_s,
        options.measure_s, token, members=traders,
    )  # fmt: skip
    window = Window()

    def at_window_start() -> None:
        window.start_ms = time.time_ns() // 1_000_000
        window.before.update(read_counters(running.contender))

    recorded = await asyncio.to_thread(run_load, spec, at_window_start)
    query = None
    if running.contender.name == "pointex":
        # Started only now: following the feed during the load would take CPU from Pointex.
        query = await start(query_process(plan, wiring, running.port), plan.scratch, env)
    try:
        books = await settled_books(_reader(running, query, plan, token, traders))
    finally:
        if query is not None:
            await query.stop()
    # Counters over the window and the settling after it (the last callbacks' work).
    window.counters = counters_delta(window.before, read_counters(running.contender))
    return recorded, books, window


def _pending(contender: Contender, options: MarketOptions, note: str) -> Row:
    return {
        "contender": contender.name,
        "store": contender.store,
        "scenario": "market",
        "concurrency": options.callers,
        "status": "pending",
        "note": note,
    }


async def run_market(
    contender: Contender, options: MarketOptions, plan: Plan, token: str, env: dict[str, str]
) -> Row:
    """Run the market scenario once against a fresh `contender` and its sandbox provider."""
    wiring = new_wiring(plan, token)
    market = market_contender(contender, plan, wiring)
    _say(f"starting {market.name}/{market.store} and the sandbox provider (market)")
    try:
        running, sandbox = await start_pair(market, plan, wiring, env)
    except StartFailed as error:
        _say(str(error))
        return _pending(contender, options, "did not start")
    try:
        recorded, books, window = await _measure(running, plan, options, wiring, env)
    except (SetupFailed, LoadFailed, StartFailed, grpc.aio.AioRpcError) as error:
        _say(f"{market.name}/{market.store} market: {error}\n{running.log_tail()}")
        return _pending(contender, options, str(error).splitlines()[0][:120])
    finally:
        await sandbox.stop()
        await running.stop()
    row = market_row(running, options, recorded, books, window)
    _say(
        f"{market.name}/{market.store} market: {row['ops_per_s']:,.0f} orders/s, "
        f"{row['trades_per_s']:,.0f} trades/s, {row['settled_per_s']:,.0f} settled/s, "
        f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, errors {row['errors']}, "
        f"check {'ok' if row['check']['ok'] else row['check']['failures']}"
    )
    return row
