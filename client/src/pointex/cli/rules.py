"""`pointex rules ...`: show the program's rules in force, and replace them from a file.

A rules file holds one `pointex.v1.ProgramRules` in the protobuf JSON mapping, as
`google.protobuf.json_format` reads it: `{"limits": [{"operation": "LIMITED_OPERATION_TRANSFER",
"maxPoints": "25000"}], "transferFee": {"flatPoints": "1", "perMille": "5",
"feeAccountId": "program-fees"}, "expiry": {"lifetime": "31536000s", "notice": "2592000s"}}`
(durations in seconds, as the JSON mapping writes them). Field names may be the JSON names
(`maxPoints`) or the proto names (`max_points`), so the `rules` object of
`pointex rules show --json` is a rules file as it is. The enum values may also be given by
their short names, in any case: `transfer`, `redeem`, `market_buy`, `market_sell` for
`operation`; `member`, `merchant` or `any` for `account_kind`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from pointex.cli import formatting
from pointex.cli.errors import EXIT_OK, UsageError
from pointex.cli.output import Cell, Output, to_json
from pointex.cli.registry import Subcommands, add_after, bounded_int, leaf, request_id
from pointex.cli.session import Session
from pointex.v1 import command_service_pb2 as cmd
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qry

_OPERATION = common_pb2.LimitedOperation.DESCRIPTOR
_KIND = common_pb2.AccountKind.DESCRIPTOR
# The server takes at most 256 limits of a few hundred bytes each; a file much larger than
# that is not a rules file, and is refused without being read into memory whole.
rules_file_bytes_max: Final = 1 << 20
_VERSION_MAX: Final = 2**64 - 1  # expected_version is a uint64.
_ANY: Final = "any"
# The keys of a limit whose values may be short enum names: JSON names and proto names.
_SHORT_NAMED: Final = {"operation": _OPERATION, "accountKind": _KIND, "account_kind": _KIND}
_LIMIT_COLUMNS: Final = (
    "operation",
    "account kind",
    "tier",
    "min#",
    "max#",
    "step#",
    "daily max#",
    "yearly max#",
)


def register(group: Subcommands) -> None:
    """Add `rules` and its subcommands."""
    parser = group.add_parser(
        "rules",
        help="show and set the program's rules (limits, fees, debt policy, expiry, cooling-off)",
    )
    actions = parser.add_subparsers(title="rules commands", metavar="COMMAND", required=True)

    show = leaf(
        actions,
        "show",
        "show the program's rules in force: version, fees, debt, expiry, cooling-off, limits",
        _show,
    )
    add_after(show)

    replace = leaf(
        actions,
        "set",
        "replace the program's rules with those of a JSON file (operator)",
        _set,
        mutating=True,
    )
    replace.add_argument(
        "--file",
        type=Path,
        required=True,
        metavar="RULES.json",
        help="a ProgramRules in protobuf JSON, e.g. examples/program_rules.json",
    )
    replace.add_argument(
        "--expected-version",
        type=bounded_int(0, _VERSION_MAX),
        required=True,
        metavar="N",
        help="the version `rules show` printed (0 before the first change); if the rules "
        "changed since, nothing is set and the command is refused",
    )


def _show(session: Session, out: Output, args: argparse.Namespace) -> int:
    request = qry.GetProgramRulesRequest(min_position=args.after)
    reply = session.read(session.queries.GetProgramRules, request)
    if out.json_mode:
        out.json(to_json(reply))
        return EXIT_OK
    pairs: list[tuple[str, Cell]] = [
        ("version", str(reply.version)),
        ("set at", formatting.timestamp(reply.set_at)),
        ("as of", formatting.position_text(reply.as_of)),
        ("reversal debt max", formatting.bound_points(reply.rules.reversal_debt_max_points)),
        ("transfer fee", fee_text(reply.rules.transfer_fee)),
        ("fee schedule version", str(reply.fee_schedule_version)),
        ("expiry", expiry_text(reply.rules.expiry)),
        ("cooling-off", cooling_off_text(reply.rules.cooling_off)),
        ("pending period", pending_period_text(reply.rules.pending_period)),
    ]
    out.fields("program rules", pairs)
    limits = reply.rules.limits
    if not limits:
        out.line("no limits: no operation is limited")
        return EXIT_OK
    noun = "limit" if len(limits) == 1 else "limits"
    caption = f"{len(limits)} {noun}; - is no bound"
    out.table("limits", _LIMIT_COLUMNS, [_limit_row(limit) for limit in limits], caption)
    return EXIT_OK


def fee_text(fee: common_pb2.TransferFee) -> str:
    """Return a transfer fee schedule for people: `2 + 15‰ (rounded up) → fees`, or `-`."""
    if not (fee.flat_points or fee.per_mille):
        return "-"
    parts = [formatting.points(fee.flat_points)] if fee.flat_points else []
    if fee.per_mille:
        parts.append(f"{fee.per_mille}‰ (rounded up)")
    return f"{' + '.join(parts)} → {fee.fee_account_id}"


def expiry_text(policy: common_pb2.ExpiryPolicy) -> str:
    """Return an expiry policy for people: `365 days, told 30 days before`, or `-` (never)."""
    if not policy.lifetime.seconds:
        return "-"
    text = f"points lapse {_span_text(policy.lifetime.seconds)} after they are earned"
    if policy.notice.seconds:
        text += f", told {_span_text(policy.notice.seconds)} before"
    return text


_DAY_S: Final = 86_400


def pending_period_text(period: Duration) -> str:
    """Return a pending period for people: `issued points pending for 30 days`, or `-`."""
    if not period.seconds:
        return "-"
    return f"issued points pending for {_span_text(period.seconds)}"


def cooling_off_text(window: Duration) -> str:
    """Return a cooling-off window for people: `purchases refundable for 14 days`, or `-`."""
    if not window.seconds:
        return "-"
    return f"purchases refundable for {_span_text(window.seconds)}"


def _span_text(seconds: int) -> str:
    """Return a whole number of days (`30 days`), or of seconds when it is not one."""
    if seconds % _DAY_S == 0:
        days = seconds // _DAY_S
        return f"{days} day" if days == 1 else f"{days} days"
    return f"{seconds} s"


def _limit_row(limit: common_pb2.TransactionLimit) -> Sequence[Cell]:
    kind = limit.account_kind
    return (
        formatting.enum_label(_OPERATION, limit.operation),
        formatting.enum_label(_KIND, kind) if kind else _ANY,
        limit.tier or _ANY,
        formatting.bound_points(limit.min_points),
        formatting.bound_points(limit.max_points),
        formatting.bound_points(limit.step_points),
        formatting.bound_points(limit.daily_max_points),
        formatting.bound_points(limit.yearly_max_points),
    )


def _set(session: Session, out: Output, args: argparse.Namespace) -> int:
    # The file is read before anything is sent: a bad file changes nothing and calls nothing.
    rules = read_rules(args.file)
    rid = request_id(args)
    request = cmd.SetProgramRulesRequest(
        request_id=rid, expected_version=args.expected_version, rules=rules
    )
    reply = session.mutate(session.commands.SetProgramRules, request, rid)
    if out.json_mode:
        out.json({"request_id": rid, **to_json(reply)})
        return EXIT_OK
    noun = "limit" if len(rules.limits) == 1 else "limits"
    fee = fee_text(rules.transfer_fee)
    fee_part = "" if fee == "-" else f", transfer fee {fee}"
    parts = (
        expiry_text(rules.expiry),
        cooling_off_text(rules.cooling_off),
        pending_period_text(rules.pending_period),
    )
    more = "".join(f", {text}" for text in parts if text != "-")
    out.line(
        f"program rules set: version {reply.version}, {len(rules.limits)} {noun}{fee_part}{more}"
    )
    out.position(reply.position, rid)
    return EXIT_OK


def read_rules(path: Path) -> common_pb2.ProgramRules:
    """Return the ProgramRules a rules file holds (see the module's docstring for the form).

    Raises:
        UsageError: the file cannot be read, is too large, is not JSON, or is not a
            ProgramRules.
    """
    try:
        with path.open("rb") as file:
            raw = file.read(rules_file_bytes_max + 1)
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    if len(raw) > rules_file_bytes_max:
        raise UsageError(f"{path}: larger than {rules_file_bytes_max:,} bytes, not a rules file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not UTF-8 text ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not JSON: {error}") from None
    except RecursionError:
        raise UsageError(f"{path}: not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise UsageError(f'{path}: expected a JSON object, {{"limits": [...]}}')
    _expand_short_names(data)
    try:
        return json_format.ParseDict(data, common_pb2.ProgramRules())
    except json_format.ParseError as error:
        raise UsageError(f"{path}: not program rules: {error}") from None


def _expand_short_names(data: dict[str, object]) -> None:
    """Replace short enum names in the limits (`transfer`, `member`) by their numbers.

    Anything else is left as it is, for `json_format` to accept (the full names) or to
    report with its path in the document.
    """
    limits = data.get("limits")
    if not isinstance(limits, list):
        return
    for limit in limits:
        if not isinstance(limit, dict):
            continue
        for key, enum in _SHORT_NAMED.items():
            value = limit.get(key)
            if not isinstance(value, str):
                continue
            short = value.lower().replace("-", "_")
            if enum is _KIND and short == _ANY:
                limit[key] = common_pb2.ACCOUNT_KIND_UNSPECIFIED
            elif short in (choices := formatting.enum_choices(enum)):
                limit[key] = choices[short]
