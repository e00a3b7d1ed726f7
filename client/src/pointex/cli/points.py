"""`pointex points ...`: mint, issue, redeem, reverse, quote, transfer and burn points."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from pointex.cli import award, formatting
from pointex.cli.errors import EXIT_OK, UsageError
from pointex.cli.output import Cell, Output, to_json
from pointex.cli.registry import (
    Handler,
    Subcommands,
    add_after,
    fee_and_version,
    leaf,
    positive_int,
    request_id,
)
from pointex.cli.session import Session
from pointex.v1 import command_service_pb2 as cmd
from pointex.v1 import common_pb2, errors_pb2
from pointex.v1 import query_service_pb2 as qry


def register(group: Subcommands) -> None:
    """Add `points` and its subcommands."""
    parser = group.add_parser(
        "points", help="mint, issue, redeem, reverse, quote, transfer and burn points"
    )
    actions = parser.add_subparsers(title="points commands", metavar="COMMAND", required=True)

    mint = leaf(actions, "mint", "mint new points into a merchant (operator)", _mint, mutating=True)
    mint.add_argument("merchant_account_id", metavar="MERCHANT")
    mint.add_argument("amount_points", type=positive_int, metavar="POINTS")
    mint.add_argument("--memo", default="", help="why, e.g. the funding contract")

    issue = leaf(actions, "issue", "reward a member: merchant → member", _issue, mutating=True)
    issue.add_argument("merchant_account_id", metavar="MERCHANT")
    issue.add_argument("member_account_id", metavar="MEMBER")
    issue.add_argument("amount_points", type=positive_int, metavar="POINTS")
    issue.add_argument("--reason", default="", help="shown to the member")
    issue.add_argument(
        "--activates-at",
        type=_activation_time,
        default=None,
        metavar="WHEN",
        help="keep the points pending (not spendable; `reverse-issue` cancels them) until "
        "WHEN: an ISO 8601 time with a zone (2026-12-31T00:00:00Z) or + and a whole number "
        "of s, m, h or d from now (+30d); at most 400 days ahead (default: spendable at once)",
    )

    redeem = leaf(
        actions, "redeem", "spend at a merchant: member → merchant", _redeem, mutating=True
    )
    redeem.add_argument("member_account_id", metavar="MEMBER")
    redeem.add_argument("merchant_account_id", metavar="MERCHANT")
    redeem.add_argument("amount_points", type=positive_int, metavar="POINTS")
    redeem.add_argument("--reason", default="", help="what the points pay for")

    _register_reversals(actions)

    _register_transfer(actions)

    burn = leaf(actions, "burn", "retire a merchant's points (operator)", _burn, mutating=True)
    burn.add_argument("merchant_account_id", metavar="MERCHANT")
    burn.add_argument("amount_points", type=positive_int, metavar="POINTS")
    burn.add_argument("--memo", default="", help="why")

    award.register(actions)


def _register_reversals(actions: Subcommands) -> None:
    """Add `reverse-issue` and `reverse-redeem`: each takes the original's transfer id."""
    undo_issue = leaf(
        actions,
        "reverse-issue",
        "take back an issue: member → merchant",
        _reverse_issue,
        mutating=True,
    )
    undo_issue.add_argument(
        "transfer_id",
        metavar="TRANSFER",
        help="the transfer id `points issue` printed; an issue is reversed at most once",
    )
    undo_issue.add_argument(
        "amount_points",
        type=positive_int,
        metavar="POINTS",
        help="points to take back: 1 up to the issue's amount",
    )
    undo_issue.add_argument("--reason", default="", help="shown to the member")

    undo_redeem = leaf(
        actions,
        "reverse-redeem",
        "give back a redemption: merchant → member",
        _reverse_redeem,
        mutating=True,
    )
    undo_redeem.add_argument(
        "transfer_id",
        metavar="TRANSFER",
        help="the transfer id `points redeem` printed; a redemption is reversed at most once",
    )
    undo_redeem.add_argument(
        "amount_points",
        type=positive_int,
        metavar="POINTS",
        help="points to give back: 1 up to the redemption's amount",
    )
    undo_redeem.add_argument("--reason", default="", help="shown to the member")


def _register_transfer(actions: Subcommands) -> None:
    """Add `quote` (the fee a transfer would pay) and `transfer`, which may hold to a quote."""
    quote = leaf(
        actions,
        "quote",
        "the program's fee on a transfer from an account now, as a quote to transfer with",
        _quote,
    )
    quote.add_argument(
        "--from",
        dest="from_account_id",
        required=True,
        metavar="ACCOUNT",
        help="the member account that would give the points",
    )
    quote.add_argument(
        "--amount",
        dest="amount_points",
        type=positive_int,
        required=True,
        metavar="POINTS",
        help="the points it would give (the fee comes on top)",
    )
    add_after(quote)

    give = leaf(actions, "transfer", "give points: member → member", _transfer, mutating=True)
    give.add_argument("from_account_id", metavar="FROM")
    give.add_argument("to_account_id", metavar="TO")
    give.add_argument("amount_points", type=positive_int, metavar="POINTS")
    give.add_argument("--memo", default="", help="a message to the receiver")
    give.add_argument(
        "--fee-quote",
        type=_fee_quote,
        default=None,
        metavar="FEE:VERSION",
        help="the quote `points quote` printed (the fee and its schedule version, e.g. 4:2): "
        "the transfer pays exactly that fee, or is refused with FEE_SCHEDULE_CHANGED and "
        "nothing moves if the program's fee schedule changed since (default: the fee in force "
        "when the transfer is decided, which the reply states)",
    )


def _fee_quote(text: str) -> common_pb2.FeeQuote:
    """Read `--fee-quote FEE:VERSION` for argparse (the fee in points)."""
    fee, version = fee_and_version(text, "points quote", "4:2")
    return common_pb2.FeeQuote(fee_points=fee, schedule_version=version)


def _quote(session: Session, out: Output, args: argparse.Namespace) -> int:
    request = qry.QuoteTransferRequest(
        min_position=args.after,
        from_account_id=args.from_account_id,
        amount_points=args.amount_points,
    )
    reply = session.read(session.queries.QuoteTransfer, request)
    if out.json_mode:
        out.json(to_json(reply))
        return EXIT_OK
    fee, version = reply.quote.fee_points, reply.quote.schedule_version
    pairs: list[tuple[str, Cell]] = [
        ("from", args.from_account_id),
        ("points", _points(args)),
        ("fee", formatting.points(fee)),
        ("fee account", reply.fee_account_id or "-"),
        ("total", formatting.points(reply.total_points)),
        ("schedule version", str(version)),
        ("as of", formatting.position_text(reply.as_of)),
    ]
    out.fields("transfer quote", pairs)
    out.line(
        f"to pay exactly this fee: pointex points transfer {args.from_account_id} TO "
        f"{args.amount_points} --fee-quote {fee}:{version}"
    )
    return EXIT_OK


def _activation_time(text: str) -> timestamp_pb2.Timestamp:
    """Read `--activates-at` for argparse, which reports only its own error type as usage."""
    try:
        moment = formatting.parse_instant(text, datetime.now(UTC))
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    activates_at = timestamp_pb2.Timestamp()
    activates_at.FromDatetime(moment)
    return activates_at


# A movement's reply: each carries the position of its last event.
_Reply = (
    cmd.MintPointsResponse
    | cmd.IssuePointsResponse
    | cmd.RedeemPointsResponse
    | cmd.ReverseIssueResponse
    | cmd.ReverseRedeemResponse
    | cmd.TransferPointsResponse
    | cmd.BurnPointsResponse
)


def _movement(
    rpc: str,
    request_type: Callable[..., Message],
    fields: tuple[str, ...],
    summary: Callable[[argparse.Namespace, Any], str],
) -> Handler:
    """Return the handler that sends `rpc` with `fields` of the arguments and reports it.

    `fields` name both the parsed arguments and the request's fields; an option left out
    (None) leaves its field unset. `summary` gives the line shown for the reply in text mode.
    """

    def run(session: Session, out: Output, args: argparse.Namespace) -> int:
        rid = request_id(args)
        given = {name: getattr(args, name) for name in fields}
        request = request_type(
            request_id=rid, **{name: value for name, value in given.items() if value is not None}
        )
        reply: _Reply = session.mutate(getattr(session.commands, rpc), request, rid)
        if out.json_mode:
            out.json({"request_id": rid, **to_json(reply)})
        else:
            out.line(summary(args, reply))
            out.position(reply.position, rid)
        return EXIT_OK

    return run


def _points(args: argparse.Namespace) -> str:
    return formatting.points(args.amount_points)


_mint = _movement(
    "MintPoints",
    cmd.MintPointsRequest,
    ("merchant_account_id", "amount_points", "memo"),
    lambda args, reply: (
        f"minted {_points(args)} points into {args.merchant_account_id}: "
        f"available {formatting.points(reply.available_points)}"
    ),
)


def _issued(args: argparse.Namespace, reply: cmd.IssuePointsResponse) -> str:
    """Return the line for an issue, saying until when its points are pending if they are."""
    pending = ""
    if args.activates_at is not None:
        activates_at = args.activates_at.ToDatetime(tzinfo=UTC)
        # The reply does not say whether the points went to pending: the member's account
        # decided that by the command server's clock. A time still ahead after the reply was
        # ahead when the account decided, as far as the two clocks agree.
        if activates_at > datetime.now(UTC):
            pending = f", pending until {formatting.instant(activates_at)}"
    return (
        f"issued {_points(args)} points {args.merchant_account_id} → {args.member_account_id}"
        f"{pending}: transfer {reply.transfer_id}, merchant available "
        f"{formatting.points(reply.merchant_available_points)}"
    )


_issue = _movement(
    "IssuePoints",
    cmd.IssuePointsRequest,
    ("merchant_account_id", "member_account_id", "amount_points", "reason", "activates_at"),
    _issued,
)
_redeem = _movement(
    "RedeemPoints",
    cmd.RedeemPointsRequest,
    ("member_account_id", "merchant_account_id", "amount_points", "reason"),
    lambda args, reply: (
        f"redeemed {_points(args)} points {args.member_account_id} → "
        f"{args.merchant_account_id}: transfer {reply.transfer_id}, member available "
        f"{formatting.points(reply.member_available_points)}"
    ),
)
_reverse_issue = _movement(
    "ReverseIssue",
    cmd.ReverseIssueRequest,
    ("transfer_id", "amount_points", "reason"),
    lambda args, reply: (
        f"reversed {_points(args)} points of issue {args.transfer_id}, member → merchant: "
        f"transfer {reply.reversal_transfer_id}, member available "
        f"{formatting.points(reply.member_available_points)}"
    ),
)
_reverse_redeem = _movement(
    "ReverseRedeem",
    cmd.ReverseRedeemRequest,
    ("transfer_id", "amount_points", "reason"),
    lambda args, reply: (
        f"reversed {_points(args)} points of redemption {args.transfer_id}, merchant → "
        f"member: transfer {reply.reversal_transfer_id}, merchant available "
        f"{formatting.points(reply.merchant_available_points)}"
    ),
)


def _transferred(args: argparse.Namespace, reply: cmd.TransferPointsResponse) -> str:
    """Return the line for a transfer, with the fee it paid (and its refusal) if any."""
    fee = ""
    if reply.fee_points or reply.fee_refused_reason:
        fee = f", fee {formatting.points(reply.fee_points)}"
    if reply.fee_refused_reason:
        # The fee account could not take it: the fee came back and the transfer completed.
        reason = formatting.enum_label(errors_pb2.ErrorReason.DESCRIPTOR, reply.fee_refused_reason)
        fee += f" returned (the fee account refused it: {reason})"
    return (
        f"transferred {_points(args)} points {args.from_account_id} → {args.to_account_id}: "
        f"transfer {reply.transfer_id}{fee}, sender available "
        f"{formatting.points(reply.from_available_points)}"
    )


_transfer = _movement(
    "TransferPoints",
    cmd.TransferPointsRequest,
    ("from_account_id", "to_account_id", "amount_points", "memo", "fee_quote"),
    _transferred,
)
_burn = _movement(
    "BurnPoints",
    cmd.BurnPointsRequest,
    ("merchant_account_id", "amount_points", "memo"),
    lambda args, reply: (
        f"burned {_points(args)} points from {args.merchant_account_id}: "
        f"available {formatting.points(reply.available_points)}"
    ),
)
