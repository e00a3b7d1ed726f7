"""Start a local Pointex (`make run`): command server, query server and sandbox provider.

The servers use the SQLite default. Waits until each process answers its health check with
SERVING, prints where they listen, and stops them all (SIGTERM, graceful) on Ctrl-C. Data
lives in ./.pointex/ (POINTEX_LOCAL_DIR) and survives restarts; so do the tokens and the
sandbox's secret.

With `--cluster` (`make run-cluster`), three command servers share one PostgreSQL event
store (POINTEX_STORE_URL; default the local `postgres` database, schema `pointex_cluster`):
the first to start holds the slice ranges, the others are standbys that forward every call
to it (docs/scale-out.md). Like a supervisor, the script starts again a command server that
exits (killed, or stopped after another took its ranges over), as a new standby.

With `--split` (`make run-cluster-split`), the three split the slice ranges instead: the
first serves ranges 0-31, the second 32-63, and the third stands by for 0-31 (schema
`pointex_split` by default). Such a cluster trades across its servers too.

With `--balanced` (`make run-cluster-balanced`), the three balance the slice ranges among
themselves (POINTEX_SLICE_RANGES=balanced, schema `pointex_balanced` by default): each takes
its share as it starts, and the shares move whenever one stops or starts again; it trades
too.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
COMMAND_LISTEN = os.environ.get("POINTEX_COMMAND_LISTEN", "127.0.0.1:50051")
QUERY_LISTEN = os.environ.get("POINTEX_QUERY_LISTEN", "127.0.0.1:50052")
SANDBOX_LISTEN = os.environ.get("POINTEX_SANDBOX_LISTEN", "127.0.0.1:50053")
# --cluster: where the second and third command servers listen (the first at COMMAND_LISTEN).
STANDBY_LISTENS = os.environ.get(
    "POINTEX_STANDBY_LISTENS", "127.0.0.1:50061,127.0.0.1:50071"
).split(",")
CLUSTER_STORE_URL = os.environ.get(
    "POINTEX_STORE_URL", "postgresql://postgres@127.0.0.1:5432/postgres?schema=pointex_cluster"
)
CLUSTER_LEASE_MS = os.environ.get("POINTEX_SLICE_LEASE_MS", "3000")
# --split: the slice ranges of each command server, in start order, and their store.
SPLIT_PARTS = ("0-31", "32-63", "0-31")
SPLIT_STORE_URL = os.environ.get(
    "POINTEX_STORE_URL", "postgresql://postgres@127.0.0.1:5432/postgres?schema=pointex_split"
)
BALANCED_STORE_URL = os.environ.get(
    "POINTEX_STORE_URL", "postgresql://postgres@127.0.0.1:5432/postgres?schema=pointex_balanced"
)
HEALTH_WAIT_S = 30
RESTART_PAUSE_S = 1.0

DATA_DIR = Path(os.environ.get("POINTEX_LOCAL_DIR", ROOT / ".pointex")).resolve()
TOKENS_FILE = DATA_DIR / "tokens"
SANDBOX_SECRET_FILE = DATA_DIR / "sandbox.secret"
PROVIDERS_FILE = DATA_DIR / "payment-providers.toml"
SANDBOX_PROVIDER_ID = "sandbox"
SANDBOX_KEY_ID = "local-1"


def _token_of(role: str) -> str:
    """Return the token of the first `role` line of .pointex/tokens."""
    for line in TOKENS_FILE.read_text().splitlines():
        if line.startswith(f"{role} "):
            return line.split()[2]
    sys.exit(f"{TOKENS_FILE} has no {role} token")


def _ensure_tokens() -> str:
    """Write .pointex/tokens with fresh random tokens once; return the operator's token."""
    if not TOKENS_FILE.exists():
        lines = [
            "# Local tokens written by `make run`: <role> <principal_id> <token>.",
            f"operator ops {secrets.token_urlsafe(24)}",
            f"partner demo {secrets.token_urlsafe(24)}",
            f"payment_provider sandbox {secrets.token_urlsafe(24)}",
            f"query_server query {secrets.token_urlsafe(24)}",
        ]
        TOKENS_FILE.write_text("\n".join(lines) + "\n")
        TOKENS_FILE.chmod(0o600)
    return _token_of("operator")


def _ensure_payment_providers() -> None:
    """Write the sandbox's secret once, and the command server's providers file naming it."""
    if not SANDBOX_SECRET_FILE.exists():
        SANDBOX_SECRET_FILE.write_text(secrets.token_urlsafe(32) + "\n")
        SANDBOX_SECRET_FILE.chmod(0o600)
    # Rewritten every run, so that a changed POINTEX_SANDBOX_LISTEN is picked up; the secret
    # itself stays in its own file and is only referred to here.
    PROVIDERS_FILE.write_text(
        "# Written by `make run`: the payment providers the command server knows.\n"
        f"[providers.{SANDBOX_PROVIDER_ID}]\n"
        'kind = "sandbox"\n'
        f'target = "{SANDBOX_LISTEN}"\n'
        f"[[providers.{SANDBOX_PROVIDER_ID}.keys]]\n"
        f'key_id = "{SANDBOX_KEY_ID}"\n'
        f'secret_file = "{SANDBOX_SECRET_FILE.name}"\n'
    )
    PROVIDERS_FILE.chmod(0o600)


def _start(module: str, listen: str, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "POINTEX_LISTEN": listen,
        "POINTEX_LOG_FORMAT": "text",
        "POINTEX_AUTH_TOKENS_FILE": str(TOKENS_FILE),
        **extra_env,
    }
    return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env)


def _wait_serving(name: str, target: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + HEALTH_WAIT_S
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                sys.exit(f"{name} exited with code {process.returncode}; see its log above")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                time.sleep(0.2)
                continue
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
    sys.exit(f"{name} did not report SERVING on {target} within {HEALTH_WAIT_S} s")


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _announce(operator_token: str, commands: list[str], store_url: str) -> None:
    store = f"PostgreSQL store {store_url}" if len(commands) > 1 else "SQLite store"
    lines = [f"\nPointex is running ({store}, data in {DATA_DIR}):"]
    for index, listen in enumerate(commands):
        lines.append(
            f"  command server {index + 1:<2} {listen}   CommandService, EventFeed, health, "
            "reflection"
        )
    lines += [
        f"  query server      {QUERY_LISTEN}   QueryService, health, reflection",
        f"  sandbox provider  {SANDBOX_LISTEN}   SandboxGatewayService (payments), health",
        f"  tokens            {TOKENS_FILE} (operator: {operator_token})",
        f"  providers         {PROVIDERS_FILE}",
    ]
    if len(commands) > 1:
        lines.append("  `pointex status` shows which command servers hold the slice ranges.")
    lines.append("Press Ctrl-C to stop.\n")
    print("\n".join(lines), flush=True)


class Command:
    """One command server, started again (as a new run) whenever it exits, in a cluster."""

    def __init__(self, listen: str, extra_env: dict[str, str]) -> None:
        """Serve on `listen` with `extra_env` settings."""
        self.listen = listen
        self._env = extra_env
        self.process = _start("pointex.server.command.main", listen, extra_env)
        self.name = f"command server at {listen}"

    def restart_if_exited(self) -> None:
        """Start the server again if it exited, as a supervisor does."""
        if self.process.poll() is None:
            return
        print(
            f"{self.name} exited with code {self.process.returncode}; starting it again",
            flush=True,
        )
        time.sleep(RESTART_PAUSE_S)
        self.process = _start("pointex.server.command.main", self.listen, self._env)


def _supervise(
    commands: list[Command], others: list[subprocess.Popen[bytes]], *, cluster: bool
) -> None:
    """Return once a process exits; in a cluster, start exited command servers again."""
    while all(process.poll() is None for process in others):
        for command in commands:
            if cluster:
                command.restart_if_exited()
            elif command.process.poll() is not None:
                return
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Run the processes in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="three command servers on one PostgreSQL event store (docs/scale-out.md)",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="three command servers that split the slice ranges (0-31, 32-63, and a standby)",
    )
    parser.add_argument(
        "--balanced",
        action="store_true",
        help="three command servers that balance the slice ranges among themselves",
    )
    args = parser.parse_args(argv)
    split = args.split
    cluster = args.cluster or split or args.balanced
    store_url = (
        SPLIT_STORE_URL if split else BALANCED_STORE_URL if args.balanced else CLUSTER_STORE_URL
    )
    # SIGTERM (a supervisor, `timeout`) stops them all gracefully, like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    DATA_DIR.mkdir(exist_ok=True)
    operator_token = _ensure_tokens()
    _ensure_payment_providers()
    command_env = {"POINTEX_PAYMENT_PROVIDERS_FILE": str(PROVIDERS_FILE)}
    query_env = {
        "POINTEX_COMMAND_TARGET": COMMAND_LISTEN,
        "POINTEX_FEED_TOKEN": _token_of("query_server"),
    }
    listens = [COMMAND_LISTEN]
    if cluster:
        command_env |= {
            "POINTEX_STORE_URL": store_url,
            "POINTEX_SLICE_LEASE_MS": CLUSTER_LEASE_MS,
        }
        # Its own read store: the SQLite stack's would mix two logs.
        query_env["POINTEX_READ_STORE_URL"] = f"sqlite:///{DATA_DIR / 'cluster-read.db'}"
        listens += STANDBY_LISTENS
        # Every server's address: the feed moves to whichever one answers (a gRPC name).
        query_env["POINTEX_COMMAND_TARGET"] = "ipv4:" + ",".join(listens)
    commands = []
    parts: tuple[str | None, ...] = (None,) * len(listens)  # None: every range.
    if split:
        parts = SPLIT_PARTS
    elif args.balanced:
        parts = ("balanced",) * len(listens)
    for listen, part in zip(listens, parts, strict=True):  # One at a time: first come, first hold.
        ranges = {} if part is None else {"POINTEX_SLICE_RANGES": part}
        commands.append(Command(listen, command_env | ranges))
        _wait_serving(commands[-1].name, listen, commands[-1].process)
    # The query server follows the command server's EventFeed with the query_server
    # credential (in a cluster, any server's, forwarded to the ranges' holder).
    query = _start("pointex.server.query.main", QUERY_LISTEN, query_env)
    # The sandbox provider calls the command server back with the payment_provider credential.
    sandbox = _start(
        "pointex.server.payments.sandbox.main",
        SANDBOX_LISTEN,
        {
            "POINTEX_COMMAND_TARGET": COMMAND_LISTEN,
            "POINTEX_PROVIDER_ID": SANDBOX_PROVIDER_ID,
            "POINTEX_PROVIDER_KEY_ID": SANDBOX_KEY_ID,
            "POINTEX_PROVIDER_SECRET_FILE": str(SANDBOX_SECRET_FILE),
            "POINTEX_CALLBACK_TOKEN": _token_of("payment_provider"),
        },
    )
    others = [("query server", query), ("sandbox provider", sandbox)]
    try:
        _wait_serving("query server", QUERY_LISTEN, query)
        _wait_serving("sandbox provider", SANDBOX_LISTEN, sandbox)
        _announce(operator_token, listens, store_url)
        _supervise(commands, [process for _, process in others], cluster=cluster)
    except KeyboardInterrupt:
        pass
    finally:
        everyone = [*((c.name, c.process) for c in reversed(commands)), *others]
        for _, process in everyone:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in everyone:
            code = process.wait()
            print(f"{name} exited with code {code}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
