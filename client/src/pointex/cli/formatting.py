"""Turn protobuf values into text for people, and command-line text into protobuf values.

Pure functions with no terminal or network access, shared by the table and the JSON output.
Points and money stay integers throughout: money is split into major and minor units with
integer arithmetic for display only, never through a float.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from typing import Final

from google.protobuf import descriptor, timestamp_pb2

from pointex.cli.errors import UsageError
from pointex.client import positions
from pointex.v1 import common_pb2

# ISO 4217 minor-unit exponents that differ from the usual two. An unknown currency is
# shown with two decimals, which is right for almost every currency; the JSON output always
# carries the raw minor units, so nothing is lost.
_MINOR_DIGITS: Final = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3}
_DEFAULT_MINOR_DIGITS: Final = 2
_NONE: Final = "-"
# A time relative to now: `+`, a whole number, a unit. Twelve digits are more than any time
# a datetime holds; the bound keeps `int` off texts of thousands of digits.
_AHEAD: Final = re.compile(r"\+([0-9]{1,12})([smhd])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 60 * 60, "d": 24 * 60 * 60}
_TIME_FORMS: Final = (
    "give an ISO 8601 time with a zone (2026-12-31T00:00:00Z, 2026-12-31T08:00:00+08:00) "
    "or + and a whole number of s, m, h or d from now (+90s, +2h, +30d)"
)


def enum_label(enum: descriptor.EnumDescriptor, number: int) -> str:
    """Return an enum value's name without its type prefix (`ACCOUNT_KIND_MEMBER` → `MEMBER`)."""
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = _enum_prefix(enum)
    return value.name.removeprefix(prefix)


def enum_choices(enum: descriptor.EnumDescriptor) -> dict[str, int]:
    """Return the lower-case labels of an enum's values, UNSPECIFIED left out, to their numbers."""
    return {
        enum_label(enum, value.number).lower(): value.number
        for value in enum.values
        if value.number != 0
    }


def _enum_prefix(enum: descriptor.EnumDescriptor) -> str:
    """Return the prefix every value name of a proto enum shares (`ACCOUNT_KIND_`)."""
    zero = enum.values_by_number.get(0)
    if zero is None or not zero.name.endswith("UNSPECIFIED"):
        return ""
    return zero.name.removesuffix("UNSPECIFIED")


def points(amount_points: int) -> str:
    """Return a whole number of points with thousands separators (`1,250`)."""
    return f"{amount_points:,}"


def bound_points(amount_points: int) -> str:
    """Return a limit's bound in points, or `-` for 0 (no bound)."""
    return points(amount_points) if amount_points else _NONE


def money(amount_minor: int, currency: str) -> str:
    """Return an amount in minor units as major.minor with its currency (`12.50 CNY`)."""
    digits = _MINOR_DIGITS.get(currency, _DEFAULT_MINOR_DIGITS)
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(amount_minor), 10**digits)
    text = f"{major:,}" if digits == 0 else f"{major:,}.{minor:0{digits}d}"
    return f"{sign}{text} {currency}".strip()


def timestamp(value: timestamp_pb2.Timestamp) -> str:
    """Return a timestamp as UTC ISO 8601 to the second, or `-` when it is unset."""
    if value.seconds == 0 and value.nanos == 0:
        return _NONE
    moment = datetime.fromtimestamp(value.seconds, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def instant(moment: datetime) -> str:
    """Return an aware datetime as UTC ISO 8601 in one word (`2026-12-31T00:00:00Z`).

    The text reads back with `parse_instant` as the same moment, to the microsecond.
    """
    assert moment.tzinfo is not None, moment
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_instant(text: str, now: datetime) -> datetime:
    """Return the moment a command-line time names, in UTC.

    `text` is an ISO 8601 date and time with a zone (`Z` or an offset), or a time after
    `now`: `+` and a whole number of seconds (`s`), minutes (`m`), hours (`h`) or days of
    24 hours (`d`). A relative time counts from `now` cut to the whole second, so it prints
    exactly with `instant` and the printed text names the same moment again. Cut rather than
    rounded up: `+400d` must stay within a bound of 400 days that the server checks later.

    Raises:
        UsageError: the text is neither form, has no zone, or is outside the years 1 to
            9999 in UTC.
    """
    assert now.tzinfo is not None, now
    ahead = _AHEAD.fullmatch(text)
    if ahead is not None:
        amount, unit = ahead.groups()
        try:
            start = now.astimezone(UTC).replace(microsecond=0)
            return start + timedelta(seconds=int(amount) * _UNIT_S[unit])
        except OverflowError:
            raise UsageError(f"{text!r} is too far ahead") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a time: {_TIME_FORMS}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise UsageError(
            f"{text!r} has no time zone, so the moment it names is unclear: add Z for UTC "
            "or an offset such as +08:00"
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise UsageError(f"{text!r} is outside the years 1 to 9999 in UTC") from None


def position_token(position: common_pb2.Position) -> str:
    """Return a position token in the form `--after` accepts: hex, `-` for the beginning."""
    return position.token.hex() if position.token else _NONE


def position_text(position: common_pb2.Position) -> str:
    """Return a position for people: the token, and the global position it encodes if known."""
    token = position_token(position)
    try:
        global_position = positions.decode_global(position.token)
    except positions.InvalidPositionError:
        return token
    return f"{token} (#{global_position})" if position.token else token


def parse_position(text: str) -> common_pb2.Position:
    """Return the Position of a token printed by `pointex` (hex; `-` is the beginning).

    Raises:
        UsageError: the text is not hex or not a position token this client knows.
    """
    if text in {"", _NONE}:
        return common_pb2.Position()
    try:
        token = bytes.fromhex(text)
        positions.decode_global(token)
    except (ValueError, positions.InvalidPositionError) as error:
        raise UsageError(f"{text!r} is not a position token printed by pointex: {error}") from None
    return common_pb2.Position(token=token)


def cursor_text(cursor: bytes) -> str:
    """Return a notification cursor as unpadded URL-safe base64 (one shell word)."""
    return base64.urlsafe_b64encode(cursor).decode().rstrip("=")


def parse_cursor(text: str) -> bytes:
    """Return the cursor bytes of a `cursor_text`.

    Raises:
        UsageError: the text is not URL-safe base64.
    """
    padded = text.strip() + "=" * (-len(text.strip()) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode())
    except (binascii.Error, ValueError):
        raise UsageError(f"{text!r} is not a notification cursor printed by pointex") from None
