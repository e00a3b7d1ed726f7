"""What both server processes do around their composition root: the console-script shell.

Read the configuration, set up logging, install the stop signals, start the server,
announce its port, serve until signalled, drain, and turn every start-up failure an
operator can fix into a one-line message and an exit code. `run_task` does the same for a
one-off task of a server's console script (`pointex-command-server migrate`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final, Protocol, TypeVar

from pointex.server.config import CommonConfig, ConfigError
from pointex.server.grpc_edge.auth import TokenFileError
from pointex.server.grpc_edge.server import RunningServer, serve_until_signalled, stop_signal
from pointex.server.observability.logging import configure_logging
from pointex.server.store_errors import StoreError

log = logging.getLogger(__name__)

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
try:
    import uvloop

    _UVLOOP: LoopFactory | None = uvloop.new_event_loop
except ImportError:  # pragma: no cover - a platform without uvloop (Windows).
    _UVLOOP = None

# Exit codes an operator (or a supervisor) can act on.
EXIT_BUG: Final = 1  # the server failed on a bug (logged with its trace)
EXIT_CONFIG: Final = 2  # a setting, the tokens file or a store URL is invalid
EXIT_STORE: Final = 3  # a store refused: unreachable, unsafe durability, schema too new or
# not migrated (and this role may not migrate it)
EXIT_FENCED: Final = 4  # another command server took this one's slice ranges over: it stopped,
# and a fresh run (which its supervisor starts) joins the cluster as a standby


class HasCommon(Protocol):
    """A server's configuration: it has the settings both servers share."""

    @property
    def common(self) -> CommonConfig:
        """Return the shared settings."""
        ...


class Serving(Protocol):
    """A started server, as the process shell drives it."""

    @property
    def running(self) -> RunningServer:
        """Return the gRPC server and its health servicer."""
        ...

    @property
    def port(self) -> int:
        """Return the bound port."""
        ...

    @property
    def exit_code(self) -> int:
        """Return the process's exit code once it stopped (0, or why it stopped by itself)."""
        ...

    def halt_with(self, stop: asyncio.Event) -> None:
        """Set `stop` when the server must stop by itself; it then drains as when signalled."""

    async def stopping(self) -> None:
        """End long-lived streams once draining starts."""

    async def close(self) -> None:
        """Release what the server owns once gRPC has stopped."""


class HasLogging(Protocol):
    """A one-off task's configuration: it says how to log."""

    @property
    def log_level(self) -> str:
        """Return the lowest level logged."""
        ...

    @property
    def log_format(self) -> str:
        """Return json or text."""
        ...


C = TypeVar("C", bound=HasCommon)
T = TypeVar("T", bound=HasLogging)


def run_server(
    name: str,
    parse: Callable[[Sequence[str] | None], C],
    create: Callable[[C], Awaitable[Serving]],
    argv: Sequence[str] | None = None,
) -> int:
    """Run the `name` server ("command" or "query") until it is signalled; return the exit code."""
    program = f"pointex-{name}-server"
    try:
        config = parse(argv)
    except ConfigError as error:
        print(f"{program}: {error}", file=sys.stderr)  # noqa: T201 - before logging exists.
        return EXIT_CONFIG
    configure_logging(config.common.log_level, config.common.log_format)

    async def serve() -> int:
        stop = stop_signal()  # Before the port is announced: see stop_signal.
        server = await create(config)
        server.halt_with(stop)
        loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        log.info("event loop", extra={"event_loop": loop})
        print(f"pointex {name} server listening on port {server.port}", flush=True)  # noqa: T201
        await serve_until_signalled(
            stop, server.running, config.common.shutdown_grace_s, server.close, server.stopping
        )
        return server.exit_code

    factory = _UVLOOP if config.common.event_loop == "uvloop" else None
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(serve())
    except (TokenFileError, ValueError) as error:
        log.error("%s: invalid configuration: %s", program, error)  # noqa: TRY400 - no trace needed.
        return EXIT_CONFIG
    except StoreError as error:
        log.error("%s: store refused: %s", program, error)  # noqa: TRY400 - no trace needed.
        return EXIT_STORE


def run_task(
    program: str,
    parse: Callable[[Sequence[str] | None], T],
    task: Callable[[T], Coroutine[Any, Any, str]],
    argv: Sequence[str] | None = None,
) -> int:
    """Run a one-off `task` of `program`, print the line it returns; return the exit code.

    Failures an operator can fix end as in `run_server`: a message and an exit code.
    """
    try:
        config = parse(argv)
    except ConfigError as error:
        print(f"{program}: {error}", file=sys.stderr)  # noqa: T201 - before logging exists.
        return EXIT_CONFIG
    configure_logging(config.log_level, config.log_format)
    try:
        outcome = asyncio.run(task(config))
    except ValueError as error:
        log.error("%s: invalid configuration: %s", program, error)  # noqa: TRY400 - no trace needed.
        return EXIT_CONFIG
    except StoreError as error:
        log.error("%s: store refused: %s", program, error)  # noqa: TRY400 - no trace needed.
        return EXIT_STORE
    print(outcome, flush=True)  # noqa: T201 - the task's result, for people and scripts.
    return 0
