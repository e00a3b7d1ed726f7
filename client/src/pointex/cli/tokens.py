"""`pointex admin token create|list|revoke`: the servers' bearer tokens, kept as digests.

These commands edit the tokens file the servers read (POINTEX_AUTH_TOKENS_FILE) on the
machine that holds it; they call no server. The servers notice the change and use the new
file within a second or two, without a restart (docs/security.md).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Final

from pointex.cli.errors import EXIT_OK, UsageError
from pointex.cli.output import Output
from pointex.cli.registry import Subcommands, leaf
from pointex.cli.session import Session
from pointex.client import token_file

_ENV: Final = "POINTEX_AUTH_TOKENS_FILE"
_DESCRIPTION: Final = """\
Manage the bearer tokens the servers accept. The tokens file holds a SHA-256 digest per
token, never the token: `create` prints a new token once, to hand to its holder. To rotate a
token without a gap, create the new one, move the client to it, then revoke the old one;
both are valid meanwhile. The servers read the file again when it changes."""


def register(group: Subcommands) -> None:
    """Add `admin token` and its subcommands."""
    admin = group.add_parser("admin", help="operate the servers' credentials")
    admin_commands = admin.add_subparsers(title="admin commands", metavar="COMMAND", required=True)
    token = admin_commands.add_parser(
        "token",
        help="create, list and revoke bearer tokens",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = token.add_subparsers(title="token commands", metavar="COMMAND", required=True)
    create = leaf(actions, "create", "add a new token and print it (once)", _create)
    create.add_argument("--role", required=True, choices=token_file.ROLES, help="its role")
    create.add_argument(
        "--principal-id", required=True, help="its principal: the partner id for a partner"
    )
    _add_file(create)
    listing = leaf(
        actions, "list", "list the tokens: id, role and principal (never a token)", _list
    )
    _add_file(listing)
    revoke = leaf(actions, "revoke", "remove one token, named by its id (from `list`)", _revoke)
    revoke.add_argument("token_id", metavar="TOKEN_ID", help="the id, or its first 6+ digits")
    _add_file(revoke)


def _add_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokens-file",
        type=Path,
        default=None,
        help=f"the servers' tokens file (default: env {_ENV})",
    )


def _path(args: argparse.Namespace) -> Path:
    given: Path | None = args.tokens_file
    if given is not None:
        return given
    if env := os.environ.get(_ENV):
        return Path(env)
    raise UsageError(f"name the tokens file with --tokens-file or {_ENV}")


def _create(_: Session, out: Output, args: argparse.Namespace) -> int:
    path = _path(args)
    try:
        token, entry = token_file.add(path, args.role, args.principal_id)
    except token_file.TokenFileError as error:
        raise UsageError(str(error)) from None
    if out.json_mode:
        out.json(
            {
                "token_id": entry.token_id,
                "role": entry.role,
                "principal": entry.principal_id,
                "token": token,
            }
        )
        return EXIT_OK
    out.fields(
        "token created",
        [
            ("id", entry.token_id),
            ("role", entry.role),
            ("principal", entry.principal_id),
            ("token", token),
        ],
    )
    out.note("this is the only time the token is shown; the file keeps its digest")
    return EXIT_OK


def _list(_: Session, out: Output, args: argparse.Namespace) -> int:
    try:
        entries = token_file.read(_path(args))
    except token_file.TokenFileError as error:
        raise UsageError(str(error)) from None
    rows = [
        (e.token_id, e.role, e.principal_id, "digest" if e.hashed else "CLEAR TEXT")
        for e in entries
    ]
    if out.json_mode:
        keys = ("token_id", "role", "principal", "stored_as")
        out.json([dict(zip(keys, row, strict=True)) for row in rows])
        return EXIT_OK
    out.table("tokens", ("id", "role", "principal", "stored as"), rows)
    if any(not e.hashed for e in entries):
        out.note("tokens stored in clear text: replace each with `admin token create`")
    return EXIT_OK


def _revoke(_: Session, out: Output, args: argparse.Namespace) -> int:
    try:
        entry = token_file.revoke(_path(args), args.token_id)
    except token_file.TokenFileError as error:
        raise UsageError(str(error)) from None
    if out.json_mode:
        out.json({"revoked": entry.token_id, "role": entry.role, "principal": entry.principal_id})
        return EXIT_OK
    out.line(f"revoked {entry.token_id} ({entry.role} {entry.principal_id})")
    return EXIT_OK
