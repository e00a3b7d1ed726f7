"""The command server's markets file: which markets exist and how each trades.

`POINTEX_MARKETS_FILE` names a TOML file (docs/configuration.md#markets):

    [markets.PTS-CNY]                # the market id, "<BASE>-<CCY>"
    provider_id = "sandbox"          # the payment provider collecting its payments
    payment_window_ms = 900000       # optional: time to pay after a match (15 min)
    max_price_minor = 1000000        # optional: highest limit price, minor units per point
    max_quantity_points = 1000000000 # optional: largest order quantity
    buyer_fee_bps = 0                # optional: proportional fee added to the amount due
    buyer_fee_fixed_minor = 0        # optional: fixed fee added to the amount due
    seller_fee_bps = 0               # optional: proportional fee deducted from the proceeds
    seller_fee_fixed_minor = 0       # optional: fixed fee deducted from the proceeds
    open = true                      # optional: false stops new orders (cancels, payments go on)

With no file, one market PTS-CNY is served, paid through the provider "sandbox"; a file
with an empty `[markets]` table serves no market (a program without point trading). Every
value is checked when the file is read; a mistake is a ConfigError naming the entry.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pointex.server import limits
from pointex.server.config import ConfigError
from pointex.server.domain.values import BPS_PER_UNIT, FeeSchedule, Market, Span

_MARKET_ID: Final = re.compile(r"[A-Z0-9]{1,12}-([A-Z]{3})")
_PROVIDER_ID: Final = re.compile(rf"[A-Za-z0-9_.:-]{{1,{limits.id_chars_max}}}")
_KEYS: Final = frozenset(
    {
        "provider_id",
        "payment_window_ms",
        "max_price_minor",
        "max_quantity_points",
        "buyer_fee_bps",
        "buyer_fee_fixed_minor",
        "seller_fee_bps",
        "seller_fee_fixed_minor",
        "open",
    }
)


def default_markets() -> dict[str, Market]:
    """Return the market served when no markets file is given."""
    return {"PTS-CNY": _market("PTS-CNY", {"provider_id": "sandbox"}, "default")}


def load_markets(path: Path | None) -> dict[str, Market]:
    """Read and check the markets file; None gives the default market."""
    if path is None:
        return default_markets()
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    if set(document) - {"markets"}:
        raise ConfigError(f"{path}: only [markets.<id>] tables are allowed")
    tables = document.get("markets")
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: no [markets] table (an empty one serves no market)")
    if len(tables) > limits.markets_max:
        raise ConfigError(f"{path}: at most {limits.markets_max} markets")
    return {
        market_id: _market(market_id, table, f"{path}: [markets.{market_id}]")
        for market_id, table in tables.items()
    }


def _market(market_id: str, table: Mapping[str, Any], here: str) -> Market:
    match = _MARKET_ID.fullmatch(market_id)
    if match is None:
        raise ConfigError(f"{here}: a market id is <BASE>-<CCY>, e.g. PTS-CNY")
    if not isinstance(table, dict):
        raise ConfigError(f"{here}: must be a table")
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"{here}: unknown keys {sorted(unknown)}")
    provider_id = table.get("provider_id")
    if not isinstance(provider_id, str) or not _PROVIDER_ID.fullmatch(provider_id):
        raise ConfigError(f"{here}: provider_id must be 1-{limits.id_chars_max} id characters")
    opened = table.get("open", True)
    if not isinstance(opened, bool):
        raise ConfigError(f"{here}: open must be true or false")
    return Market(
        market_id=market_id,
        currency=match.group(1),
        buyer_fee=FeeSchedule(
            _int(here, table, "buyer_fee_bps", 0, BPS_PER_UNIT),
            _int(here, table, "buyer_fee_fixed_minor", 0, limits.fee_fixed_minor_max),
        ),
        seller_fee=FeeSchedule(
            _int(here, table, "seller_fee_bps", 0, BPS_PER_UNIT),
            _int(here, table, "seller_fee_fixed_minor", 0, limits.fee_fixed_minor_max),
        ),
        payment_window=Span(
            _int(
                here,
                table,
                "payment_window_ms",
                limits.payment_window_ms_default,
                limits.payment_window_ms_max,
            )
        ),
        max_price_minor=_int(
            here,
            table,
            "max_price_minor",
            limits.market_price_minor_max_default,
            limits.price_minor_max,
        ),
        max_quantity_points=_int(
            here, table, "max_quantity_points", limits.points_amount_max, limits.points_amount_max
        ),
        provider_id=provider_id,
        open=opened,
    )


def _int(here: str, table: Mapping[str, Any], key: str, default: int, high: int) -> int:
    value = table.get(key, default)
    low = 1 if key in {"payment_window_ms", "max_price_minor", "max_quantity_points"} else 0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{here}: {key} must be an integer in {low}..{high}")
    return value
