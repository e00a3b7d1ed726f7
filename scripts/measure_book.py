"""Measure a market's restart after many orders: start-up time and memory, by history length.

For each order count it creates a SQLite event store in a temporary directory and has the
market's actor take that many orders, as the command server does (in-process, without
gRPC): IOC BUY orders that find nothing to match (each placed and cancelled at once, so the
market's history grows while its book does not), after a few resting bids. The actor writes
its snapshots as it goes. Then a fresh Python process opens the store, activates the
market's actor (its latest snapshot plus the events after it) and reports how long that
took and its peak memory (ru_maxrss), with the book's sizes.

Usage: .venv/bin/python scripts/measure_book.py [--orders 1000,1000000] [--output FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pointex.server import limits
from pointex.server.actors.market_actor import MarketActors
from pointex.server.actors.stream_actor import Decide, Decided, Inspect
from pointex.server.command.bootstrap import start_core
from pointex.server.domain.market_commands import ConfigureMarket, PlaceOrder
from pointex.server.domain.order_book import OrderBook
from pointex.server.domain.values import OrderSide, TimeInForce
from pointex.server.eventstore.factory import open_store
from pointex.server.markets import default_markets

MARKET = "PTS-CNY"
RESTING_BIDS = 100
# Orders told to the market's actor before their replies are awaited (below its mailbox bound).
IN_FLIGHT = 2_000
assert limits.mailbox_messages_max >= IN_FLIGHT


def _order(number: int, *, resting: bool) -> PlaceOrder:
    tif = TimeInForce.GTC if resting else TimeInForce.IOC
    price = 50 if resting else 100
    return PlaceOrder(
        f"ord-{number}", f"acme:m{number % 1000}", MARKET, OrderSide.BUY, 1, price, tif, ""
    )


async def fill(url: str, orders: int) -> float:
    """Have the market take `orders` orders; return the seconds it took."""
    store = open_store(url)
    await store.open()
    core = start_core(store, resident_max=limits.actors_resident_max)
    markets = MarketActors(store, core.committer, default_markets().values())
    actor = markets.actor(MARKET)
    started = time.monotonic()
    await actor.tell(Decide(ConfigureMarket(default_markets()[MARKET])))
    for number in range(RESTING_BIDS):
        await actor.tell(Decide(_order(number, resting=True)))
    for first in range(RESTING_BIDS, orders, IN_FLIGHT):
        last = min(first + IN_FLIGHT, orders)
        told: list[asyncio.Future[Decided[None]]] = [
            actor.tell(Decide(_order(n, resting=False))) for n in range(first, last)
        ]
        await asyncio.gather(*told)
    elapsed_s = time.monotonic() - started
    await core.lookup.stop()
    await core.committer.stop()
    await store.close()
    return elapsed_s


async def restart(url: str) -> dict[str, Any]:
    """Activate the market's actor on a fresh process's store; return what it cost."""
    started = time.monotonic()
    store = open_store(url)
    await store.open()
    core = start_core(store, resident_max=limits.actors_resident_max)
    markets = MarketActors(store, core.committer, default_markets().values())

    def sizes(book: OrderBook) -> tuple[int, int]:
        return len(book.orders), len(book.finished)

    resting, finished = await markets.actor(MARKET).tell(Inspect(sizes))
    elapsed_ms = int((time.monotonic() - started) * 1000)
    head = await store.head_position()
    await core.lookup.stop()
    await core.committer.stop()
    await store.close()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "start_ms": elapsed_ms,
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "resting": resting,
        "finished_kept": finished,
        "log_events": head,
    }


def _row(result: dict[str, Any]) -> str:
    return (
        f"{result['orders']:>10,} orders  filled in {result['fill_s']:7.1f} s"
        f"  restart {result['start_ms']:>6} ms  peak RSS {result['peak_rss_mib']:6.1f} MiB"
        f"  book: {result['resting']} resting, {result['finished_kept']:,} finished kept"
        f"  log: {result['log_events']:,} events"
    )


def main() -> None:
    """Fill a store per order count, restart on each in a fresh process, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", default="1000,1000000", help="comma-separated counts")
    parser.add_argument("--output", type=Path, help="also write the results as JSON")
    parser.add_argument("--restart-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restart_only:
        print(json.dumps(asyncio.run(restart(args.restart_only))))
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="pointex-book-") as folder:
        for orders in (int(n) for n in args.orders.split(",")):
            url = f"sqlite:///{Path(folder) / f'events-{orders}.db'}"
            fill_s = asyncio.run(fill(url, orders))
            ran = subprocess.run(
                [sys.executable, __file__, "--restart-only", url],
                capture_output=True,
                check=True,
                text=True,
            )
            measured = json.loads(ran.stdout)
            results.append({"orders": orders, "fill_s": round(fill_s, 1), **measured})
            print(_row(results[-1]), flush=True)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
