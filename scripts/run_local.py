"""Start a local Pointex (`make run`): command server, query server and sandbox provider.

The servers use the SQLite default. Waits until each process answers its health check with
SERVING, prints where they listen, and stops all three (SIGTERM, graceful) on Ctrl-C. Data
lives in ./.pointex/ and survives restarts; so do the tokens and the sandbox's secret.
"""

from __future__ import annotations

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
HEALTH_WAIT_S = 30


TOKENS_FILE = ROOT / ".pointex" / "tokens"
SANDBOX_SECRET_FILE = ROOT / ".pointex" / "sandbox.secret"
PROVIDERS_FILE = ROOT / ".pointex" / "payment-providers.toml"
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


def _announce(operator_token: str) -> None:
    print(
        "\nPointex is running (SQLite store in .pointex/):\n"
        f"  command server    {COMMAND_LISTEN}   CommandService, EventFeed, health, reflection\n"
        f"  query server      {QUERY_LISTEN}   QueryService, health, reflection\n"
        f"  sandbox provider  {SANDBOX_LISTEN}   SandboxGatewayService (payments), health\n"
        f"  tokens            {TOKENS_FILE.relative_to(ROOT)} (operator: {operator_token})\n"
        f"  providers         {PROVIDERS_FILE.relative_to(ROOT)}\n"
        "Press Ctrl-C to stop.\n",
        flush=True,
    )


def main() -> int:
    """Run the three processes in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    # SIGTERM (a supervisor, `timeout`) stops all three gracefully, like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    (ROOT / ".pointex").mkdir(exist_ok=True)
    operator_token = _ensure_tokens()
    _ensure_payment_providers()
    command = _start(
        "pointex.server.command.main",
        COMMAND_LISTEN,
        {"POINTEX_PAYMENT_PROVIDERS_FILE": str(PROVIDERS_FILE)},
    )
    # The query server follows the command server's EventFeed with the query_server credential.
    query = _start(
        "pointex.server.query.main",
        QUERY_LISTEN,
        {"POINTEX_COMMAND_TARGET": COMMAND_LISTEN, "POINTEX_FEED_TOKEN": _token_of("query_server")},
    )
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
    processes = [
        ("command server", command),
        ("query server", query),
        ("sandbox provider", sandbox),
    ]
    try:
        _wait_serving("command server", COMMAND_LISTEN, command)
        _wait_serving("query server", QUERY_LISTEN, query)
        _wait_serving("sandbox provider", SANDBOX_LISTEN, sandbox)
        _announce(operator_token)
        while all(process.poll() is None for _, process in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for _, process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in processes:
            code = process.wait()
            print(f"{name} exited with code {code}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
