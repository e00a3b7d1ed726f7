"""`pointex account ...`: open, show, list, history, tier, freeze, unfreeze and close accounts."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Final

from rich.text import Text

from pointex.cli import formatting
from pointex.cli.errors import EXIT_OK
from pointex.cli.output import Cell, Output, status_text, to_json
from pointex.cli.registry import (
    Listing,
    Subcommands,
    add_after,
    add_limit,
    enum_type,
    leaf,
    request_id,
    show_pages,
)
from pointex.cli.session import Session
from pointex.v1 import command_service_pb2 as cmd
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qry

_KIND = common_pb2.AccountKind.DESCRIPTOR
_STATUS = common_pb2.AccountStatus.DESCRIPTOR
_ROLE = common_pb2.Role.DESCRIPTOR
_MOVEMENT = common_pb2.MovementKind.DESCRIPTOR


def register(group: Subcommands) -> None:
    """Add `account` and its subcommands."""
    parser = group.add_parser(
        "account", help="open, show, list, freeze and close accounts; set tiers"
    )
    actions = parser.add_subparsers(title="account commands", metavar="COMMAND", required=True)

    opening = leaf(actions, "open", "open an account", _open, mutating=True)
    opening.add_argument("account_id", help="the new account's id, e.g. acme:m-000123")
    opening.add_argument("--kind", type=enum_type(_KIND), required=True, help="member|merchant")
    opening.add_argument("--owner", default="", help="owning partner (operators must set it)")
    opening.add_argument("--name", default="", help="display name")

    get = leaf(actions, "get", "show one account: status and balances", _get)
    get.add_argument("account_id", metavar="ACCOUNT")
    add_after(get)

    listing = leaf(actions, "list", "list accounts in id order", _list)
    listing.add_argument("--owner", default="", help="only this partner's accounts")
    listing.add_argument(
        "--kind", type=enum_type(_KIND), action="append", default=[], help="member|merchant"
    )
    listing.add_argument(
        "--status", type=enum_type(_STATUS), action="append", default=[], help="open|frozen|closed"
    )
    add_limit(listing)
    add_after(listing)

    history = leaf(actions, "history", "list an account's point movements", _history)
    history.add_argument("account_id", metavar="ACCOUNT")
    history.add_argument(
        "--kind", type=enum_type(_MOVEMENT), action="append", default=[], help="e.g. issue_in"
    )
    history.add_argument("--newest-first", action="store_true", help="newest movement first")
    add_limit(history)
    add_after(history)

    _register_tier(actions)

    for name, verb in (("freeze", "freeze"), ("unfreeze", "unfreeze"), ("close", "close")):
        change = leaf(actions, name, f"{verb} an account", _change_status, mutating=True)
        change.add_argument("account_id", metavar="ACCOUNT")
        change.add_argument("--reason", default="", help="why (recorded with the event)")
        change.set_defaults(change=name)


def _register_tier(actions: Subcommands) -> None:
    tier = leaf(actions, "tier", "set or clear an account's member tier", _tier, mutating=True)
    tier.add_argument("account_id", metavar="ACCOUNT")
    # One of the two is required. An empty TIER is refused rather than read as "clear": an
    # unset shell variable (`pointex account tier A "$TIER"`) must not remove a tier unseen.
    which = tier.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "tier", nargs="?", type=_tier_name, metavar="TIER", help="the tier, e.g. gold"
    )
    which.add_argument("--clear", action="store_true", help="remove the account's tier")


def _tier_name(text: str) -> str:
    """Read TIER for argparse: a name, never empty (clearing is `--clear`)."""
    if not text:
        raise argparse.ArgumentTypeError("the tier is empty; use --clear to remove a tier")
    return text


def _open(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    request = cmd.OpenAccountRequest(
        request_id=rid,
        account_id=args.account_id,
        kind=args.kind,
        owner_partner_id=args.owner,
        display_name=args.name,
    )
    reply = session.mutate(session.commands.OpenAccount, request, rid)
    if out.json_mode:
        out.json({"request_id": rid, **to_json(reply)})
        return EXIT_OK
    account = reply.account
    kind = formatting.enum_label(_KIND, account.kind)
    out.line(f"opened {kind} account {account.account_id} owned by {account.owner_partner_id}")
    out.position(reply.position, rid)
    return EXIT_OK


def _get(session: Session, out: Output, args: argparse.Namespace) -> int:
    request = qry.GetAccountRequest(min_position=args.after, account_id=args.account_id)
    reply = session.read(session.queries.GetAccount, request)
    if out.json_mode:
        out.json(to_json(reply))
        return EXIT_OK
    pairs = [*account_fields(reply.account), ("as of", formatting.position_text(reply.as_of))]
    out.fields(f"account {reply.account.account_id}", pairs)
    return EXIT_OK


def account_fields(account: common_pb2.Account) -> list[tuple[str, Cell]]:
    """Return an account's fields as (name, value) pairs for a record table."""
    pairs: list[tuple[str, Cell]] = [
        ("kind", formatting.enum_label(_KIND, account.kind)),
        ("status", status_text(formatting.enum_label(_STATUS, account.status))),
        ("owner", account.owner_partner_id),
        ("name", account.display_name or "-"),
        ("tier", account.tier or "-"),
        ("available", formatting.points(account.available_points)),
        ("held", formatting.points(account.held_points)),
        ("pending", formatting.points(account.pending_points)),
        ("version", str(account.version)),
        ("opened", formatting.timestamp(account.opened_at)),
        ("updated", formatting.timestamp(account.updated_at)),
    ]
    if account.status == common_pb2.ACCOUNT_STATUS_FROZEN:
        pairs.append(("frozen by", formatting.enum_label(_ROLE, account.frozen_by_role)))
    return pairs


def _list(session: Session, out: Output, args: argparse.Namespace) -> int:
    def request(token: str, size: int) -> qry.ListAccountsRequest:
        return qry.ListAccountsRequest(
            min_position=args.after,
            owner_partner_id=args.owner,
            kinds=args.kind,
            statuses=args.status,
            page_size=size,
            page_token=token,
        )

    return show_pages(session, out, _ACCOUNTS, request, limit=args.limit, title="accounts")


def _account_row(account: common_pb2.Account) -> Sequence[Cell]:
    return (
        account.account_id,
        formatting.enum_label(_KIND, account.kind),
        account.tier,
        status_text(formatting.enum_label(_STATUS, account.status)),
        account.owner_partner_id,
        formatting.points(account.available_points),
        formatting.points(account.held_points),
        formatting.points(account.pending_points),
        account.display_name,
    )


def _history(session: Session, out: Output, args: argparse.Namespace) -> int:
    def request(token: str, size: int) -> qry.GetAccountHistoryRequest:
        return qry.GetAccountHistoryRequest(
            min_position=args.after,
            account_id=args.account_id,
            kinds=args.kind,
            newest_first=args.newest_first,
            page_size=size,
            page_token=token,
        )

    title = f"history of {args.account_id}"
    return show_pages(session, out, _HISTORY, request, limit=args.limit, title=title)


def _movement_row(movement: qry.Movement) -> Sequence[Cell]:
    other = movement.counterparty_account_id or movement.trade_id or movement.order_id
    return (
        formatting.timestamp(movement.recorded_at),
        formatting.enum_label(_MOVEMENT, movement.kind),
        _delta(movement.available_delta_points),
        _delta(movement.held_delta_points),
        _delta(movement.pending_delta_points),
        formatting.points(movement.available_points),
        formatting.points(movement.held_points),
        formatting.points(movement.pending_points),
        # The fee a transfer paid, already within its available Δ.
        formatting.points(movement.fee_points) if movement.fee_points else "",
        other or movement.memo,
    )


def _delta(amount_points: int) -> Cell:
    if amount_points == 0:
        return ""
    style = "green" if amount_points > 0 else "red"
    return Text(f"{amount_points:+,}", style=style)


_ACCOUNTS: Final[Listing[common_pb2.Account]] = Listing(
    rpc="ListAccounts",
    items="accounts",
    doing="listing accounts",
    columns=(
        "account",
        "kind",
        "tier",
        "status",
        "owner",
        "available#",
        "held#",
        "pending#",
        "name",
    ),
    row=_account_row,
)
_HISTORY: Final[Listing[qry.Movement]] = Listing(
    rpc="GetAccountHistory",
    items="movements",
    doing="reading history",
    columns=(
        "recorded",
        "kind",
        "available Δ#",
        "held Δ#",
        "pending Δ#",
        "available#",
        "held#",
        "pending#",
        "fee#",
        "other",
    ),
    row=_movement_row,
)


def _change_status(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    commands = session.commands
    reply: cmd.FreezeAccountResponse | cmd.UnfreezeAccountResponse | cmd.CloseAccountResponse
    if args.change == "freeze":
        freeze = cmd.FreezeAccountRequest(request_id=rid, account_id=args.account_id)
        freeze.reason = args.reason
        reply = session.mutate(commands.FreezeAccount, freeze, rid)
    elif args.change == "unfreeze":
        unfreeze = cmd.UnfreezeAccountRequest(request_id=rid, account_id=args.account_id)
        unfreeze.reason = args.reason
        reply = session.mutate(commands.UnfreezeAccount, unfreeze, rid)
    else:
        close = cmd.CloseAccountRequest(request_id=rid, account_id=args.account_id)
        close.reason = args.reason
        reply = session.mutate(commands.CloseAccount, close, rid)
    if out.json_mode:
        out.json({"request_id": rid, **to_json(reply)})
        return EXIT_OK
    done = {"freeze": "frozen", "unfreeze": "unfrozen", "close": "closed"}[args.change]
    out.line(f"{args.account_id} {done}" if reply.changed else f"{args.account_id}: no change")
    out.position(reply.position, rid)
    return EXIT_OK


def _tier(session: Session, out: Output, args: argparse.Namespace) -> int:
    rid = request_id(args)
    tier: str = "" if args.clear else args.tier
    request = cmd.SetAccountTierRequest(request_id=rid, account_id=args.account_id, tier=tier)
    reply = session.mutate(session.commands.SetAccountTier, request, rid)
    if out.json_mode:
        out.json({"request_id": rid, **to_json(reply)})
        return EXIT_OK
    if not reply.changed:
        out.line(f"{args.account_id}: no change")
    elif tier:
        out.line(f"{args.account_id} tier set to {tier}")
    else:
        out.line(f"{args.account_id} tier cleared")
    out.position(reply.position, rid)
    return EXIT_OK
