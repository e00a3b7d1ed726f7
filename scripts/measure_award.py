"""Measure `pointex points award FILE.csv`: rows/s and the CLI's peak RSS, per event store.

For each backend of `--backends` in turn, in a temporary directory with a tokens file:

1. Start a command server on port 0: on a SQLite event store file (as `make run` has it), or
   on PostgreSQL in a schema with a random name (`pointex_award_<hex>`, dropped at the end).
2. Through the SDK, open a merchant and `--members` members, write a CSV of `--rows` rows
   (`member,amount,reason`; amounts 1 to 10), and mint the merchant exactly the file's total.
3. Run the real CLI, `pointex points award FILE --merchant M --json`, as a subprocess
   acting as the partner that owns the accounts. Its peak RSS is the `ru_maxrss` that
   `os.wait4` returns for that one process (KiB on Linux), reaped by a small spawner process
   (see SPAWNER for why); its rows/s come from its own summary (`elapsed_ms`, which leaves
   out the check pass) and from the wall clock (start to exit, all included).
4. `points award` needs only the command server. A query server is started only now, so
   that it takes no CPU during the award, and the merchant's balance, read at the summary's
   position, must have dropped by exactly the points awarded (and be zero).

With `--with-bench` it then runs bench's bulk scenario on the same backends, `python -m
bench.run --quick --scenarios bulk --no-chart --output <temporary file>` (bench's own
servers, 1 s warm-up and 3 s measured), and prints its bulk commands/s beside the award's.

Servers are stopped and the directory and schema removed at the end, even on failure.

Usage: .venv/bin/python scripts/measure_award.py [--rows 100000] [--backends sqlite,postgres]
           [--pg-dsn DSN] [--members 1000] [--with-bench] [--output FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg

from pointex.client.connection import Deadlines, Targets
from pointex.client.errors import PointexError
from pointex.client.sync import PointexClient
from pointex.v1 import common_pb2

ROOT: Final = Path(__file__).resolve().parent.parent
POINTEX: Final = Path(sys.executable).parent / "pointex"  # The venv's console script.
BACKENDS: Final = ("sqlite", "postgres")
PARTNER: Final = "shop"  # The partner that owns the accounts and runs the award.
MERCHANT: Final = f"{PARTNER}:merchant"
PORT_LINE: Final = re.compile(rb"listening on port (\d+)")
START_S_MAX: Final = 30
STOP_S_MAX: Final = 30
# The query server replays the whole log before it can answer (about 25,000 events/s here);
# each read waits at most 30 s on the server (read_wait_ms_max), so it is asked again.
CATCH_UP_S_MAX: Final = 1800
OPEN_THREADS_MAX: Final = 8
AMOUNT_MAX: Final = 10  # Row n awards 1 + n % AMOUNT_MAX points.
KIB_PER_MIB: Final = 1024
# Run as `python -I -S -c SPAWNER REPORT PROGRAM ARGS...`: fork and exec the CLI, reap it
# with os.wait4 and write its own rusage to REPORT. A vfork()ed child (CPython's default
# for subprocess) starts its ru_maxrss at its parent's peak RSS, a fork()ed one at its
# parent's current RSS: the kernel keeps the old memory map's high-water mark at exec. Forked
# from this small process, the CLI's ru_maxrss starts at a few MiB (`floor_kib`), not at the
# measuring script's tens of MiB.
SPAWNER: Final = """
import json, os, sys
with open('/proc/self/status') as status:
    floor = next(int(line.split()[1]) for line in status if line.startswith('VmRSS:'))
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
report = {'code': os.waitstatus_to_exitcode(status), 'maxrss_kib': usage.ru_maxrss,
          'cpu_s': usage.ru_utime + usage.ru_stime, 'floor_kib': floor}
with open(sys.argv[1], 'w') as file:
    json.dump(report, file)
"""


@dataclass
class Award:
    """One backend's award run and its check."""

    backend: str
    rows: int
    schema: str = ""  # The PostgreSQL schema it created (and dropped).
    awarded: int = 0
    failed: int = 0
    points: int = 0
    elapsed_ms: int = 0  # The CLI's own figure: the award pass, after the check pass.
    wall_ms: int = 0  # From spawning the CLI to its exit.
    cli_rows_per_s: float = 0.0
    wall_rows_per_s: float = 0.0
    peak_rss_mib: float = 0.0
    # ru_maxrss of a forked child starts at its parent's RSS at the fork (SPAWNER): a peak at
    # or below this floor would be the spawner's, not the CLI's.
    spawn_floor_mib: float = 0.0
    cli_cpu_s: float = 0.0
    server_cpu_s: float = 0.0  # The command server's CPU over the award.
    balance_ok: bool = False
    bench_bulk_per_s: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Stack:
    """The processes and files of one backend's run."""

    folder: Path
    tokens: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, module: str, name: str, env: dict[str, str]) -> tuple[int, str]:
        """Start `python -m module` on port 0; return its pid and its target."""
        full_env = {
            **os.environ,
            "POINTEX_LISTEN": "127.0.0.1:0",
            "POINTEX_LOG_LEVEL": "WARNING",
            "POINTEX_AUTH_TOKENS_FILE": str(self.folder / "tokens"),
            **env,
        }
        with (self.folder / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module], stdout=subprocess.PIPE, stderr=log, env=full_env
            )
        self.processes.append(process)
        assert process.stdout is not None
        deadline = time.monotonic() + START_S_MAX
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if not ready:
                continue
            line = process.stdout.readline()
            if not line:
                break
            if match := PORT_LINE.search(line):
                return process.pid, f"127.0.0.1:{int(match.group(1))}"
        raise SystemExit(f"{module} did not start; its log:\n{self.log(name)}")

    def log(self, name: str) -> str:
        """Return the last lines of a process's log."""
        path = self.folder / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after STOP_S_MAX)."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(STOP_S_MAX)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command line's options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the CSV file")
    parser.add_argument("--members", type=int, default=1_000, help="members the rows cycle over")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated, from sqlite,postgres"
    )
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("POINTEX_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
        help="PostgreSQL DSN (default: POINTEX_TEST_PG_DSN or the test database)",
    )
    parser.add_argument(
        "--with-bench", action="store_true", help="then run bench's quick bulk scenario too"
    )
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    args.backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if unknown := set(args.backends) - set(BACKENDS):
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if args.rows < 1 or args.members < 1:
        parser.error("--rows and --members must be positive")
    return args


def write_csv(path: Path, rows: int, members: list[str]) -> int:
    """Write `rows` awards cycling over `members`, streaming; return the points they total."""
    total = 0
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("member", "amount", "reason"))
        for row in range(rows):
            amount = 1 + row % AMOUNT_MAX
            total += amount
            writer.writerow((members[row % len(members)], amount, f"order {row}"))
    return total


def open_accounts(client: PointexClient, members: int) -> list[str]:
    """Open the merchant and the members, all owned by PARTNER; return the member ids."""
    ids = [f"{PARTNER}:m{n}-{secrets.token_hex(3)}" for n in range(members)]
    client.open_account(MERCHANT, "merchant", owner_partner_id=PARTNER)

    def open_member(account_id: str) -> None:
        client.open_account(account_id, "member", owner_partner_id=PARTNER)

    with ThreadPoolExecutor(OPEN_THREADS_MAX) as pool:
        list(pool.map(open_member, ids))
    return ids


def cpu_s(pid: int) -> float:
    """Return a live process's user + system CPU time in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_cli(stack: Stack, target: str, csv_path: Path, award: Award) -> str:
    """Run `pointex points award` to its end, fill in `award`; return the summary's position."""
    # The CLI must see only what the command line gives it, not this shell's POINTEX_*.
    env = {key: value for key, value in os.environ.items() if not key.startswith("POINTEX_")}
    env["NO_COLOR"] = "1"
    report = stack.folder / "cli.rusage.json"
    command = [sys.executable, "-I", "-S", "-c", SPAWNER, str(report), str(POINTEX)]
    command += ["points", "award", str(csv_path), "--merchant", MERCHANT, "--json"]
    command += ["--command-target", target, "--token-file", str(stack.folder / "tokens")]
    command += ["--principal", PARTNER]
    out_path, err_path = stack.folder / "cli.out", stack.folder / "cli.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        # A session of its own, so that an interrupted run kills the spawner and the CLI.
        process = subprocess.Popen(
            command, cwd=stack.folder, env=env, stdout=out, stderr=err, start_new_session=True
        )
        try:
            process.wait()
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        award.wall_ms = int((time.monotonic() - started) * 1000)
    usage: dict[str, Any] = json.loads(report.read_text())
    award.peak_rss_mib = usage["maxrss_kib"] / KIB_PER_MIB
    award.spawn_floor_mib = usage["floor_kib"] / KIB_PER_MIB
    award.cli_cpu_s = usage["cpu_s"]
    if usage["code"] != 0:
        raise SystemExit(f"pointex exited {usage['code']}:\n{err_path.read_text()[-4000:]}")
    summary: dict[str, Any] = json.loads(out_path.read_text())
    award.awarded, award.failed = summary["awarded"], summary["failed"]
    award.points, award.elapsed_ms = summary["points"], summary["elapsed_ms"]
    award.cli_rows_per_s = summary["rows"] * 1000 / max(1, award.elapsed_ms)
    award.wall_rows_per_s = summary["rows"] * 1000 / max(1, award.wall_ms)
    if award.peak_rss_mib <= award.spawn_floor_mib:
        award.notes.append("peak RSS at the spawn floor: it is the spawner's, not the CLI's")
    return str(summary["position"])


def balance_after(stack: Stack, command_target: str, position: str) -> int:
    """Start a query server and return the merchant's balance at `position`."""
    _, query_target = stack.start(
        "pointex.server.query.main",
        "query",
        {
            "POINTEX_READ_STORE_URL": f"sqlite:///{stack.folder / 'read.db'}",
            "POINTEX_COMMAND_TARGET": command_target,
            "POINTEX_FEED_TOKEN": stack.tokens["query_server"],
        },
    )
    at = common_pb2.Position(token=bytes.fromhex(position))
    deadlines = Deadlines(query_ms=35_000)
    deadline = time.monotonic() + CATCH_UP_S_MAX
    with PointexClient(
        Targets(command_target, query_target), stack.tokens[PARTNER], deadlines=deadlines
    ) as client:
        while True:
            try:
                return client.get_account(MERCHANT, min_position=at).available_points
            except PointexError as error:
                # Still replaying the log: ask again, within CATCH_UP_S_MAX.
                if error.reason != "POSITION_NOT_REACHED" or time.monotonic() > deadline:
                    raise


def store_url(backend: str, folder: Path, dsn: str, schema: str) -> str:
    """Return the command server's POINTEX_STORE_URL for a backend."""
    if backend == "sqlite":
        return f"sqlite:///{folder / 'events.db'}"
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}schema={schema}"


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop a PostgreSQL schema this script created."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


@contextmanager
def stack_for(backend: str) -> Iterator[Stack]:
    """Yield a fresh temporary directory with a tokens file; remove everything afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=f"pointex-award-{backend}-"))
    tokens = {role: f"{role}-{secrets.token_hex(16)}" for role in ("operator", PARTNER)}
    tokens["query_server"] = f"query-{secrets.token_hex(16)}"
    (folder / "tokens").write_text(
        f"operator ops {tokens['operator']}\n"
        f"partner {PARTNER} {tokens[PARTNER]}\n"
        f"query_server query {tokens['query_server']}\n"
    )
    stack = Stack(folder, tokens)
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(folder, ignore_errors=True)


def measure(backend: str, args: argparse.Namespace) -> Award:
    """Run one backend's award end to end and return its figures."""
    award = Award(backend, args.rows)
    schema = f"pointex_award_{secrets.token_hex(4)}"
    if backend == "postgres":
        award.schema = schema
    try:
        with stack_for(backend) as stack:
            url = store_url(backend, stack.folder, args.pg_dsn, schema)
            server_pid, target = stack.start(
                "pointex.server.command.main", "command", {"POINTEX_STORE_URL": url}
            )
            csv_path = stack.folder / "awards.csv"
            with PointexClient(Targets(target, ""), stack.tokens["operator"]) as client:
                members = open_accounts(client, args.members)
                funding = write_csv(csv_path, args.rows, members)
                # Exactly the file's total: the award must leave the merchant at 0.
                client.mint(MERCHANT, funding, "award measurement")
            server_cpu_before = cpu_s(server_pid)
            position = run_cli(stack, target, csv_path, award)
            award.server_cpu_s = round(cpu_s(server_pid) - server_cpu_before, 2)
            balance = balance_after(stack, target, position)
            award.balance_ok = (
                award.awarded == args.rows
                and award.points == funding
                and balance == funding - award.points
            )
            if not award.balance_ok:
                award.notes.append(f"balance {balance}, funded {funding}, awarded {award.points}")
    finally:
        if backend == "postgres":
            asyncio.run(drop_schema(args.pg_dsn, schema))
    return award


def bench_bulk(backends: list[str], dsn: str) -> dict[str, float]:
    """Run bench's quick bulk scenario on `backends`; return its ok commands/s per store."""
    with tempfile.TemporaryDirectory(prefix="pointex-award-bench-") as folder:
        output = Path(folder) / "bench.json"
        contenders = ",".join(f"pointex-{backend}" for backend in backends)
        command = [sys.executable, "-m", "bench.run", "--quick", "--scenarios", "bulk"]
        command += ["--contenders", contenders, "--no-chart", "--pg-dsn", dsn]
        command += ["--output", str(output)]
        subprocess.run(command, cwd=ROOT, check=True)
        document = json.loads(output.read_text())
    return {
        row["store"]: float(row["ops_per_s"])
        for row in document["rows"]
        if row["contender"] == "pointex" and row["scenario"] == "bulk" and row["status"] == "ok"
    }


def print_table(awards: list[Award]) -> None:
    """Print one line per backend."""
    header = (
        f"{'backend':9}{'rows':>11}{'awarded':>11}{'CLI s':>8}{'CLI rows/s':>12}{'wall s':>8}"
        f"{'wall rows/s':>13}{'peak RSS MiB':>14}{'CLI CPU s':>11}{'server CPU s':>14}"
        f"{'balance':>9}{'bench bulk/s':>14}"
    )
    print(header)
    for a in awards:
        bench = "-" if a.bench_bulk_per_s is None else f"{a.bench_bulk_per_s:,.0f}"
        print(
            f"{a.backend:9}{a.rows:>11,}{a.awarded:>11,}{a.elapsed_ms / 1000:>8.1f}"
            f"{a.cli_rows_per_s:>12,.0f}{a.wall_ms / 1000:>8.1f}{a.wall_rows_per_s:>13,.0f}"
            f"{a.peak_rss_mib:>14.1f}{a.cli_cpu_s:>11.1f}{a.server_cpu_s:>14.1f}"
            f"{'ok' if a.balance_ok else 'WRONG':>9}{bench:>14}"
        )
        for note in a.notes:
            print(f"  {a.backend}: {note}")
    floors = ", ".join(f"{a.backend} {a.spawn_floor_mib:.1f}" for a in awards)
    print(f"(spawn floor of the peak RSS, MiB: {floors})")


def main(argv: list[str] | None = None) -> int:
    """Measure every backend, print the table, write the JSON; 1 when a check or bench failed."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # Clean up on SIGTERM as on Ctrl-C.
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_1m = os.getloadavg()[0]
    awards = []
    for backend in args.backends:
        print(f"{backend}: awarding {args.rows:,} rows to {args.members:,} members ...", flush=True)
        awards.append(measure(backend, args))
    if args.with_bench:
        print(f"bench: quick bulk scenario on {', '.join(args.backends)} ...", flush=True)
        try:
            bulk = bench_bulk(args.backends, args.pg_dsn)
        except subprocess.CalledProcessError as error:
            print(f"bench failed (exit {error.returncode}); the award figures stand alone")
            bulk = {}
        for award in awards:
            award.bench_bulk_per_s = bulk.get(award.backend)
    print(f"started {started_at}, 1-minute load average {load_1m:.2f}, {os.cpu_count()} CPUs")
    print_table(awards)
    if args.output is not None:
        document = {
            "started_at": started_at,
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "cpus": os.cpu_count(),
            "load_1m_at_start": load_1m,
            "awards": [asdict(award) for award in awards],
        }
        args.output.write_text(json.dumps(document, indent=2) + "\n")
    checked = all(award.balance_ok and not award.failed for award in awards)
    benched = not args.with_bench or all(a.bench_bulk_per_s is not None for a in awards)
    return 0 if checked and benched else 1


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit("interrupted: servers stopped, temporary state removed") from None
