"""Measure what Pointex's gRPC edge costs a unary call, beyond a bare grpc.aio server's.

Serves `pointex.v1.CommandService` with a TransferPoints that answers at once (an empty
reply: no command, no actor, no store) in one of these layers, each in a process of its own
on uvloop, and drives it with the bench's load generator (`uniform`: 64 callers in 2
processes, each call a TransferPointsRequest with a bearer token):

- `bare`: `grpc.aio.server()` hosting the service alone, as `bench/echo.py` hosts the echo;
- `edge`: the product's `start_server` without tokens or metrics: its channel options and
  concurrency bound, health and reflection, and the edge interceptor (a request that does
  not decode answered INVALID_ARGUMENT, every exception mapped to a status, admission);
- `auth`: the same with the tokens file: every call's token checked, its role authorized;
- `metrics`: the same with the metrics: every call counted and timed (what the command
  server runs).

Rounds alternate the layers, so that a drift of the machine touches each alike. For each
run it prints calls per second and the server's CPU per call (user + system of all its
threads, from /proc, over the measured window); then each layer's medians.

Usage: .venv/bin/python -m bench.edge [--rounds N] [--seconds S] [--layers a,b]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import statistics
import tempfile
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from bench import loops
from bench.cluster import CpuWindow
from bench.contenders import Contender, start
from bench.loadgen import LoadSpec, run_load
from pointex.server.config import CommonConfig
from pointex.server.grpc_edge.auth import TokenTable
from pointex.server.grpc_edge.server import Service, start_server, stop_signal
from pointex.server.observability.metrics import Metrics
from pointex.v1 import command_service_pb2 as pb

LAYERS = ("bare", "edge", "auth", "metrics")
SERVICE = "pointex.v1.CommandService"
CALLERS = 64
LOAD_PROCESSES = 2
WARMUP_S = 2


async def _answer(request: pb.TransferPointsRequest, context: Any) -> pb.TransferPointsResponse:
    """Answer TransferPoints at once: what is left of a call is gRPC and the edge."""
    del request, context
    return pb.TransferPointsResponse()


def register_transfer_points(
    server: grpc.aio.Server,
    answer: Callable[[pb.TransferPointsRequest, Any], Awaitable[pb.TransferPointsResponse]],
) -> None:
    """Host `answer` as `pointex.v1.CommandService/TransferPoints` (and nothing else)."""
    handler = grpc.unary_unary_rpc_method_handler(
        answer,
        request_deserializer=pb.TransferPointsRequest.FromString,
        response_serializer=pb.TransferPointsResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"TransferPoints": handler}),)
    )


def _register(server: grpc.aio.Server) -> None:
    register_transfer_points(server, _answer)


def loopback_common(tokens_file: Path) -> CommonConfig:
    """Return the settings of a plaintext server on a free loopback port with `tokens_file`."""
    return CommonConfig(
        listen="127.0.0.1:0",
        auth_tokens_file=tokens_file,
        tls=None,
        shutdown_grace_s=1,
        log_level="WARNING",
        log_format="json",
    )


async def _serve(layer: str, tokens_file: Path) -> None:
    stop = stop_signal()
    if layer == "bare":
        server = grpc.aio.server()
        _register(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"listening on port {port}", flush=True)
        await stop.wait()
        await server.stop(1)
        return
    common = loopback_common(tokens_file)
    tokens = TokenTable.from_file(tokens_file) if layer in ("auth", "metrics") else None
    metrics = Metrics("command") if layer == "metrics" else None
    running = await start_server(common, [Service(SERVICE, _register)], tokens, metrics)
    print(f"listening on port {running.port}", flush=True)
    await stop.wait()
    running.stop_watching()
    await running.server.stop(1)


async def _measure(
    layer: str, scratch: Path, tokens_file: Path, token: str, seconds: int
) -> tuple[float, float]:
    """Serve `layer` in a process of its own and load it; return calls/s and CPU µs per call."""
    contender = Contender(
        name=f"edge-{layer}",
        store="none",
        module="bench.edge",
        args=("--serve", layer, "--tokens-file", str(tokens_file)),
        scenarios=("uniform",),
    )
    server = await start(contender, scratch, dict(os.environ))
    try:
        spec = LoadSpec(
            target=server.target,
            scenario="uniform",
            callers=CALLERS,
            processes=LOAD_PROCESSES,
            warmup_s=WARMUP_S,
            measure_s=seconds,
            token=token,
        )
        cpu = CpuWindow([server.process.pid])
        closer: list[threading.Timer] = []

        def window_opens() -> None:
            cpu.start()
            closer.append(threading.Timer(seconds, cpu.end))
            closer[-1].start()

        recorded = await asyncio.to_thread(run_load, spec, window_opens)
        for timer in closer:
            timer.join()
    finally:
        await server.stop()
    if recorded.errors:
        raise SystemExit(f"the {layer} server answered errors: {dict(recorded.errors)}")
    used_s = cpu.ended[server.process.pid] - cpu.started[server.process.pid]
    return recorded.ok / seconds, used_s * 1e6 / recorded.ok


async def _rounds(layers: Sequence[str], rounds: int, seconds: int) -> None:
    """Measure every layer `rounds` times, alternating; print each run, then the medians."""
    token = secrets.token_hex(24)
    results: dict[str, list[tuple[float, float]]] = {layer: [] for layer in layers}
    with tempfile.TemporaryDirectory() as scratch:
        tokens_file = Path(scratch) / "tokens"
        tokens_file.write_text(f"operator edge-operator {token}\n")
        for round_ in range(1, rounds + 1):
            for layer in layers:
                calls, cpu = await _measure(layer, Path(scratch), tokens_file, token, seconds)
                results[layer].append((calls, cpu))
                print(f"round {round_} {layer:8s} {calls:8,.0f} calls/s  {cpu:6.0f} µs per call")
                await asyncio.sleep(1)
    print("medians:")
    for layer, runs in results.items():
        calls = statistics.median(run[0] for run in runs)
        cpu = statistics.median(run[1] for run in runs)
        print(f"  {layer:8s} {calls:8,.0f} calls/s  {cpu:6.0f} µs per call")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one layer (`--serve`), or measure the layers in alternating rounds."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.edge", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every layer")
    parser.add_argument("--seconds", type=int, default=8, help="measured seconds per run")
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma-separated layers")
    parser.add_argument("--serve", choices=LAYERS, help=argparse.SUPPRESS)
    parser.add_argument("--tokens-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        logging.getLogger("pointex").setLevel(logging.ERROR)  # Not the start-up's warnings.
        loops.run(_serve(args.serve, args.tokens_file))
        return 0
    layers = args.layers.split(",")
    unknown = set(layers) - set(LAYERS)
    if unknown:
        parser.error(f"unknown layers {sorted(unknown)}; choose from {', '.join(LAYERS)}")
    loops.run(_rounds(layers, args.rounds, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
