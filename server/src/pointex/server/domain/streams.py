"""Every stream category, and the one function that names each kind of stream.

A stream id is `category-id` (message-db's convention): subscribers, projections and the
store filter on the category, so a category is part of the stored contract and never
changes. Everything that names a stream comes here, on both sides of the CQRS boundary.
"""

from __future__ import annotations

from typing import Final

ACCOUNT: Final = "account"  # One account's balances and status; written by its actor.
MARKET: Final = "market"  # One market's order book; written by its actor.
TRANSFER: Final = "transfer"  # A point movement's process record (issue, redeem, transfer).
TRADE: Final = "trade"  # A trade's process record, from match to settled or cancelled.
REQUEST: Final = "request"  # The record of a single-stream command, for idempotent retries.
PROGRAM: Final = "program"  # The program's rules (limits), one change per event.

CATEGORIES: Final = frozenset({ACCOUNT, MARKET, TRANSFER, TRADE, REQUEST, PROGRAM})

# The one program a deployment runs: its rules' stream is `program-main`.
PROGRAM_ID: Final = "main"


def account(account_id: str) -> str:
    """Return the stream of an account: `account-<id>`."""
    return f"{ACCOUNT}-{account_id}"


def market(market_id: str) -> str:
    """Return the stream of a market: `market-<id>`."""
    return f"{MARKET}-{market_id}"


def transfer(transfer_id: str) -> str:
    """Return the process stream of a transfer (its id is the request key)."""
    return f"{TRANSFER}-{transfer_id}"


def trade(trade_id: str) -> str:
    """Return the process stream of a trade."""
    return f"{TRADE}-{trade_id}"


def request(key: str) -> str:
    """Return the stream that records a single-stream command's request key."""
    return f"{REQUEST}-{key}"


def program() -> str:
    """Return the stream of the program's rules: `program-main`."""
    return f"{PROGRAM}-{PROGRAM_ID}"


def entity_of(stream_id: str, category: str) -> str | None:
    """Return the entity id of a stream of `category`, or None for another category."""
    prefix, dash, entity_id = stream_id.partition("-")
    return entity_id if dash and prefix == category else None
