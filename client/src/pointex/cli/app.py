"""The `pointex` argument parser, and running one command with the exit codes it promises."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pointex.cli import accounts, admin, market, points, rules, tokens, watch
from pointex.cli.errors import EXIT_USAGE, UsageError, exit_code
from pointex.cli.options import add_global_options, settings_from
from pointex.cli.output import Output
from pointex.cli.registry import RETRY_HELP
from pointex.cli.session import Session
from pointex.client.errors import PointexError

_DESCRIPTION = """\
The command line for Pointex: accounts, points, the market, program rules, notifications
and audits.

Commands go to the command server and reads to the query server. Every command prints the
position of its last event; pass it to a read with --after to read your own write.
"""
_EPILOG = f"""\
{RETRY_HELP}

Exit codes: 0 done; 1 refused by the server (the line names the gRPC code and the reason),
or `audit` found a violation; 2 wrong command line; 3 a server could not be reached.
"""
# 128 + SIGINT, as shells report a process interrupted with Ctrl-C.
_EXIT_INTERRUPTED = 130
_EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, likewise.


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the whole command tree."""
    parser = argparse.ArgumentParser(
        prog="pointex",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser, suppress=False)
    group = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    accounts.register(group)
    points.register(group)
    market.register(group)
    watch.register(group)
    rules.register(group)
    admin.register(group)
    tokens.register(group)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the command, and return its exit code."""
    args = build_parser().parse_args(argv)
    out = Output(json_mode=args.json)
    try:
        session = Session(settings_from(args), out)
    except UsageError as error:
        out.error(str(error))
        return EXIT_USAGE
    try:
        code: int = args.handler(session, out, args)
    except UsageError as error:
        out.error(str(error))
        return EXIT_USAGE
    except PointexError as failed:
        out.error(failed.line())
        if failed.outcome_unknown:
            out.note(
                "the command may or may not have been applied; run it again with "
                f"--request-id {failed.request_id} to find out without applying it twice"
            )
        return exit_code(failed)
    except KeyboardInterrupt:
        return _EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`pointex ... | head`). Point standard output at /dev/null so
        # the interpreter's final flush does not fail again, and exit as a shell reports it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _EXIT_BROKEN_PIPE
    finally:
        session.close()
    return code
