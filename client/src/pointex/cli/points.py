"""`pointex points ...`: mint, issue, redeem, transfer and burn points."""

from __future__ import annotations

import argparse

from pointex.cli import formatting
from pointex.cli.errors import EXIT_OK
from pointex.cli.output import Output, to_json
from pointex.cli.registry import Subcommands, leaf, positive_int, request_id
from pointex.cli.session import Session
from pointex.v1 import command_service_pb2 as cmd


def register(group: Subcommands) -> None:
    """Add `points` and its subcommands."""
    parser = group.add_parser("points", help="mint, issue, redeem, transfer and burn points")
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

    redeem = leaf(
        actions, "redeem", "spend at a merchant: member → merchant", _redeem, mutating=True
    )
    redeem.add_argument("member_account_id", metavar="MEMBER")
    redeem.add_argument("merchant_account_id", metavar="MERCHANT")
    redeem.add_argument("amount_points", type=positive_int, metavar="POINTS")
    redeem.add_argument("--reason", default="", help="what the points pay for")

    give = leaf(actions, "transfer", "give points: member → member", _transfer, mutating=True)
    give.add_argument("from_account_id", metavar="FROM")
    give.add_argument("to_account_id", metavar="TO")
    give.add_argument("amount_points", type=positive_int, metavar="POINTS")
    give.add_argument("--memo", default="", help="a message to the receiver")

    burn = leaf(actions, "burn", "retire a merchant's points (operator)", _burn, mutating=True)
    burn.add_argument("merchant_account_id", metavar="MERCHANT")
    burn.add_argument("amount_points", type=positive_int, metavar="POINTS")
    burn.add_argument("--memo", default="", help="why")


def _mint(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    request = cmd.MintPointsRequest(
        request_id=rid,
        merchant_account_id=args.merchant_account_id,
        amount_points=args.amount_points,
        memo=args.memo,
    )
    reply = session.mutate(session.commands.MintPoints, request, rid)
    summary = (
        f"minted {formatting.points(args.amount_points)} points into "
        f"{args.merchant_account_id}: available {formatting.points(reply.available_points)}"
    )
    return _report(out, reply, rid, summary)


def _issue(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    request = cmd.IssuePointsRequest(
        request_id=rid,
        merchant_account_id=args.merchant_account_id,
        member_account_id=args.member_account_id,
        amount_points=args.amount_points,
        reason=args.reason,
    )
    reply = session.mutate(session.commands.IssuePoints, request, rid)
    summary = (
        f"issued {formatting.points(args.amount_points)} points {args.merchant_account_id} → "
        f"{args.member_account_id}: transfer {reply.transfer_id}, merchant available "
        f"{formatting.points(reply.merchant_available_points)}"
    )
    return _report(out, reply, rid, summary)


def _redeem(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    request = cmd.RedeemPointsRequest(
        request_id=rid,
        member_account_id=args.member_account_id,
        merchant_account_id=args.merchant_account_id,
        amount_points=args.amount_points,
        reason=args.reason,
    )
    reply = session.mutate(session.commands.RedeemPoints, request, rid)
    summary = (
        f"redeemed {formatting.points(args.amount_points)} points {args.member_account_id} → "
        f"{args.merchant_account_id}: transfer {reply.transfer_id}, member available "
        f"{formatting.points(reply.member_available_points)}"
    )
    return _report(out, reply, rid, summary)


def _transfer(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    request = cmd.TransferPointsRequest(
        request_id=rid,
        from_account_id=args.from_account_id,
        to_account_id=args.to_account_id,
        amount_points=args.amount_points,
        memo=args.memo,
    )
    reply = session.mutate(session.commands.TransferPoints, request, rid)
    summary = (
        f"transferred {formatting.points(args.amount_points)} points {args.from_account_id} → "
        f"{args.to_account_id}: transfer {reply.transfer_id}, sender available "
        f"{formatting.points(reply.from_available_points)}"
    )
    return _report(out, reply, rid, summary)


def _burn(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    request = cmd.BurnPointsRequest(
        request_id=rid,
        merchant_account_id=args.merchant_account_id,
        amount_points=args.amount_points,
        memo=args.memo,
    )
    reply = session.mutate(session.commands.BurnPoints, request, rid)
    summary = (
        f"burned {formatting.points(args.amount_points)} points from "
        f"{args.merchant_account_id}: available {formatting.points(reply.available_points)}"
    )
    return _report(out, reply, rid, summary)


def _report(
    out: Output,
    reply: cmd.MintPointsResponse
    | cmd.IssuePointsResponse
    | cmd.RedeemPointsResponse
    | cmd.TransferPointsResponse
    | cmd.BurnPointsResponse,
    rid: str,
    summary: str,
) -> int:
    if out.json_mode:
        out.json({"request_id": rid, **to_json(reply)})
    else:
        out.line(summary)
        out.position(reply.position, rid)
    return EXIT_OK
