"""The options every `pointex` command shares: where the servers are, who calls, how to print.

Each option is defined on the top-level parser (with its default) and again on every
subcommand with a suppressed default, so it can be given before or after the subcommand
(`pointex --json account get a` and `pointex account get a --json` mean the same).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pointex.cli.errors import UsageError

DEFAULT_COMMAND_TARGET: Final = "127.0.0.1:50051"
DEFAULT_QUERY_TARGET: Final = "127.0.0.1:50052"
DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_RETRIES: Final = 3
# More attempts than this only hide an outage; the request id lets a person retry later.
RETRIES_MAX: Final = 10
# `make run` writes this file in the project directory; using it when nothing else is given
# makes the CLI work out of the box next to a local Pointex.
LOCAL_TOKENS_FILE: Final = Path(".pointex") / "tokens"
_ROLE_LINE_FIELDS: Final = 3
_FLAG_OFF: Final = False


@dataclass(frozen=True)
class Tls:
    """TLS settings for both channels; without them the channels are plaintext."""

    ca_path: Path
    cert_path: Path | None
    key_path: Path | None
    server_name: str | None


@dataclass(frozen=True)
class Settings:
    """Everything needed to reach and call the two servers."""

    command_target: str
    query_target: str
    token: str | None
    tls: Tls | None
    timeout_s: float
    retries: int
    json: bool


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Add the shared options to `parser`; `suppress` leaves their defaults to the top level."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    # Help texts name the defaults literally: argparse cannot expand %(default)s for the
    # suppressed copies.
    group = parser.add_argument_group("connection and output")
    command_target = os.environ.get("POINTEX_COMMAND_TARGET", DEFAULT_COMMAND_TARGET)
    group.add_argument(
        "--command-target",
        metavar="HOST:PORT",
        default=default(command_target),
        help=f"the command server (env POINTEX_COMMAND_TARGET; default {command_target})",
    )
    query_target = os.environ.get("POINTEX_QUERY_TARGET", DEFAULT_QUERY_TARGET)
    group.add_argument(
        "--query-target",
        metavar="HOST:PORT",
        default=default(query_target),
        help=f"the query server (env POINTEX_QUERY_TARGET; default {query_target})",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        default=default(None),
        help="bearer token (default: env POINTEX_TOKEN)",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        default=default(None),
        help="a file holding the token, or a tokens file of `<role> <principal> <token>` "
        "lines as `make run` writes (default: .pointex/tokens if present)",
    )
    group.add_argument(
        "--principal",
        metavar="ID",
        default=default(None),
        help="which principal of a tokens file to act as (default: its first operator)",
    )
    _add_call_options(group, default)


def _add_call_options(
    group: argparse._ArgumentGroup,
    default: Callable[[object], object],
) -> None:
    """Add the TLS, deadline, retry and output options to `group`."""
    group.add_argument(
        "--tls-ca", type=Path, metavar="PEM", default=default(None), help="CA bundle: use TLS"
    )
    group.add_argument(
        "--tls-cert", type=Path, metavar="PEM", default=default(None), help="client cert (mTLS)"
    )
    group.add_argument(
        "--tls-key", type=Path, metavar="PEM", default=default(None), help="client key (mTLS)"
    )
    group.add_argument(
        "--tls-server-name",
        metavar="NAME",
        default=default(None),
        help="the name the server certificate must carry",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=default(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help=f"deadline of each attempt (default {DEFAULT_TIMEOUT_S:g})",
    )
    group.add_argument(
        "--retries",
        type=int,
        default=default(DEFAULT_RETRIES),
        metavar="N",
        help=f"retries after a retryable failure, 0 to {RETRIES_MAX} (default {DEFAULT_RETRIES})",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(_FLAG_OFF),
        help="print JSON (proto3 JSON mapping: 64-bit integers are strings) for scripts",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Return the settings the parsed command line and the environment give.

    Raises:
        UsageError: an option is out of range or a file cannot be read.
    """
    if not 0 <= args.retries <= RETRIES_MAX:
        raise UsageError(f"--retries must be between 0 and {RETRIES_MAX}")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    return Settings(
        command_target=args.command_target,
        query_target=args.query_target,
        token=_token(args),
        tls=_tls(args),
        timeout_s=args.timeout,
        retries=args.retries,
        json=args.json,
    )


def _tls(args: argparse.Namespace) -> Tls | None:
    if args.tls_ca is None:
        if args.tls_cert or args.tls_key:
            raise UsageError("--tls-cert and --tls-key need --tls-ca")
        return None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    return Tls(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)


def _token(args: argparse.Namespace) -> str | None:
    """Return the token: --token, else --token-file, else POINTEX_TOKEN, else .pointex/tokens."""
    if args.token:
        return str(args.token)
    if args.token_file is not None:
        return token_from_file(args.token_file, args.principal)
    if env_token := os.environ.get("POINTEX_TOKEN"):
        return env_token
    if LOCAL_TOKENS_FILE.is_file():
        return token_from_file(LOCAL_TOKENS_FILE, args.principal)
    return None


def token_from_file(path: Path, principal: str | None) -> str:
    """Return the token in `path`: its only word, or the line of `principal` in a tokens file.

    Raises:
        UsageError: the file cannot be read or holds no such token.
    """
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"cannot read the token file {path}: {error.strerror}") from None
    lines = [line.split() for line in text.splitlines()]
    lines = [words for words in lines if words and not words[0].startswith("#")]
    if len(lines) == 1 and len(lines[0]) == 1 and principal is None:
        return lines[0][0]
    for words in lines:
        if len(words) != _ROLE_LINE_FIELDS:
            continue
        role, principal_id, token = words
        if principal_id == principal or (principal is None and role == "operator"):
            return token
    wanted = f"principal {principal!r}" if principal else "operator"
    raise UsageError(f"{path} has no {wanted} token")
