"""The one load generator every contender is driven by: closed loop, N callers, P processes.

`run_load(spec)` spawns `spec.processes` worker processes, each with its own event loop and
gRPC channel (its own HTTP/2 connection), and splits `spec.callers` closed-loop callers among
them: each caller sends a request, waits for the reply, and sends the next one at once. The
workers meet at a barrier once connected, so they share one warm-up and one measured window.
Scenarios:

* `uniform`, `hot100`, `hot4`: unary TransferPoints of 1 point between two distinct random
  members among the first 10,000, 100 or 4.
* `bulk`: ExecuteBulk streams, each keeping `bulk_inflight_messages_max` batches of
  `bulk_batch_commands_max` uniform transfers unanswered; throughput counts commands.
* `market`: sellers and buyers placing crossing limit orders on PTS-CNY, one account per
  caller (bench/market_load.py); the sandbox provider pays each trade by calling back.
* `echo`, `echo_stream`: the bare grpc.aio echo, unary and bidi ping-pong per caller.

A spec's target may name several servers, comma-separated (the cluster scenario,
bench/cluster.py): each worker then connects to every one, and its callers (or bulk streams)
go to them in turn.

Run alone: `python -m bench.loadgen --target 127.0.0.1:PORT --scenario uniform`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import queue
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any, Final

import grpc

from bench import limits
from bench.accounts import auth_metadata, member_id, request_id
from bench.echo import STREAM_METHOD, UNARY_METHOD
from bench.market_load import market_caller
from bench.recorder import Recorded, Recorder, bulk_error_key, error_key
from pointex.v1 import command_service_pb2 as cs
from pointex.v1 import command_service_pb2_grpc

TRANSFER_SCENARIOS: Final = {
    "uniform": limits.members_count,
    "hot100": limits.hot_wide_accounts_count,
    "hot4": limits.hot_narrow_accounts_count,
}
SCENARIOS: Final = (*TRANSFER_SCENARIOS, "bulk", "market", "echo", "echo_stream")
_CONNECT_TIMEOUT_S: Final = 30
# Worker start-up (spawn + imports + connect) is not measured, but it must end.
_WORKER_START_TIMEOUT_S: Final = 120
_NS_PER_US: Final = 1000


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One scenario against one target."""

    target: str
    scenario: str
    callers: int = limits.callers_default
    processes: int = 1
    warmup_s: int = 2
    measure_s: int = 10
    token: str = ""
    bulk_streams: int = limits.bulk_streams_default
    # Members set up on the target; a scenario draws from min(its accounts, members).
    members: int = limits.members_count

    def __post_init__(self) -> None:
        """Check the spec against the harness's bounds."""
        assert self.scenario in SCENARIOS, self.scenario
        assert 0 < self.callers <= limits.callers_max, self.callers
        assert 0 < self.processes <= limits.loadgen_processes_max, self.processes
        assert 0 < self.bulk_streams <= limits.bulk_streams_max
        assert limits.hot_narrow_accounts_count <= self.members <= limits.members_count
        assert all(
            target.startswith(("127.0.0.1:", "localhost:", "[::1]:"))
            for target in self.target.split(",")
        ), "loopback only"


def accounts_of(spec: LoadSpec) -> int:
    """Return how many members the spec's scenario draws from."""
    return min(TRANSFER_SCENARIOS.get(spec.scenario, limits.members_count), spec.members)


def _since_us(started_ns: int) -> int:
    return (time.perf_counter_ns() - started_ns) // _NS_PER_US


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def _transfer(rng: random.Random, accounts: int) -> cs.TransferPointsRequest:
    source = rng.randrange(accounts)
    # Any other account, uniformly: draw from the accounts - 1 others.
    destination = (source + 1 + rng.randrange(accounts - 1)) % accounts
    return cs.TransferPointsRequest(
        request_id=request_id(),
        from_account_id=member_id(source),
        to_account_id=member_id(destination),
        amount_points=1,
    )


async def _unary_caller(
    call: Callable[[cs.TransferPointsRequest], Awaitable[object]], accounts: int, recorder: Recorder
) -> None:
    rng = random.Random()
    while (started_s := time.monotonic()) < recorder.window_end_s:
        request = _transfer(rng, accounts)
        started_ns = time.perf_counter_ns()
        try:
            await call(request)
        except asyncio.CancelledError:
            recorder.record_unfinished(started_s, _since_us(started_ns))
            raise
        except grpc.aio.AioRpcError as error:
            latency_us = _since_us(started_ns)
            recorder.record(started_s, latency_us, 0, Counter([error_key(error)]))
        else:
            latency_us = _since_us(started_ns)
            recorder.record(started_s, latency_us, 1)


async def _echo_stream_caller(channel: grpc.aio.Channel, recorder: Recorder) -> None:
    stream = channel.stream_stream(
        STREAM_METHOD,
        request_serializer=cs.TransferPointsRequest.SerializeToString,
        response_deserializer=cs.TransferPointsRequest.FromString,
    )
    call = stream(None)  # None: the caller writes the requests itself.
    rng = random.Random()
    try:
        while (started_s := time.monotonic()) < recorder.window_end_s:
            started_ns = time.perf_counter_ns()
            try:
                await call.write(_transfer(rng, limits.members_count))
                await call.read()
            except asyncio.CancelledError:
                recorder.record_unfinished(started_s, _since_us(started_ns))
                raise
            latency_us = _since_us(started_ns)
            recorder.record(started_s, latency_us, 1)
        await call.done_writing()
    except grpc.aio.AioRpcError as error:
        recorder.record(time.monotonic(), 0, 0, Counter([error_key(error)]))


def _bulk_batch(rng: random.Random, accounts: int) -> cs.ExecuteBulkRequest:
    commands = [
        cs.BulkCommand(transfer_points=_transfer(rng, accounts))
        for _ in range(limits.bulk_batch_commands_max)
    ]
    return cs.ExecuteBulkRequest(commands=commands)


def _bulk_outcome(response: cs.ExecuteBulkResponse) -> tuple[int, Counter[str]]:
    ok = 0
    errors: Counter[str] = Counter()
    for result in response.results:
        if result.HasField("ok"):
            ok += 1
        else:
            errors[bulk_error_key(result.error.code, result.error.reason)] += 1
    return ok, errors


async def _read_bulk_replies(
    call: grpc.aio.StreamStreamCall[cs.ExecuteBulkRequest, cs.ExecuteBulkResponse],
    sent: deque[tuple[float, int]],
    inflight: asyncio.Semaphore,
    recorder: Recorder,
) -> None:
    """Record each reply against the oldest unanswered message (replies come in order)."""
    try:
        while True:
            # A reply that never comes is an error, not a hang of the whole benchmark.
            async with asyncio.timeout(limits.call_deadline_s):
                response = await call.read()
            if not isinstance(response, cs.ExecuteBulkResponse):
                return  # grpc.aio.EOF: the server ended the stream.
            started_s, started_ns = sent.popleft()
            ok, errors = _bulk_outcome(response)
            recorder.record(started_s, _since_us(started_ns), ok, errors)
            inflight.release()
    finally:
        # Whatever ended the reads, the sender must not wait for a slot forever.
        for _ in range(limits.bulk_inflight_messages_max):
            inflight.release()


async def _bulk_stream(
    stub: command_service_pb2_grpc.CommandServiceAsyncStub, spec: LoadSpec, recorder: Recorder
) -> None:
    call = stub.ExecuteBulk(None, metadata=auth_metadata(spec.token))
    inflight = asyncio.Semaphore(limits.bulk_inflight_messages_max)
    sent: deque[tuple[float, int]] = deque(maxlen=limits.bulk_inflight_messages_max)
    rng = random.Random()
    reader = asyncio.create_task(_read_bulk_replies(call, sent, inflight, recorder))
    try:
        while time.monotonic() < recorder.window_end_s:
            batch = _bulk_batch(rng, accounts_of(spec))
            await inflight.acquire()
            if reader.done():
                break
            sent.append((time.monotonic(), time.perf_counter_ns()))
            await call.write(batch)
        if not reader.done():
            await call.done_writing()
        await reader
    except grpc.aio.AioRpcError as error:
        recorder.record(time.monotonic(), 0, 0, Counter([error_key(error)]))
    except (TimeoutError, asyncio.InvalidStateError):
        recorder.record(time.monotonic(), 0, 0, Counter(["DEADLINE_EXCEEDED/NO_BULK_REPLY"]))
    except asyncio.CancelledError:
        for started_s, started_ns in sent:
            recorder.record_unfinished(started_s, _since_us(started_ns))
        raise
    finally:
        reader.cancel()
        call.cancel()


async def _run_callers(
    spec: LoadSpec, channels: Sequence[grpc.aio.Channel], recorder: Recorder, callers: range
) -> None:
    channel = channels[0]
    stubs = [command_service_pb2_grpc.CommandServiceStub(each) for each in channels]
    # Caller k goes to server k modulo their number (one server: every caller to it).
    stub_of = [stubs[caller % len(stubs)] for caller in callers]
    stub = stubs[0]
    metadata = auth_metadata(spec.token)
    echo = channel.unary_unary(
        UNARY_METHOD,
        request_serializer=cs.TransferPointsRequest.SerializeToString,
        response_deserializer=cs.TransferPointsRequest.FromString,
    )

    def transfer_through(
        to: command_service_pb2_grpc.CommandServiceAsyncStub,
    ) -> Callable[[cs.TransferPointsRequest], Awaitable[object]]:
        async def transfer(request: cs.TransferPointsRequest) -> object:
            return await to.TransferPoints(
                request, metadata=metadata, timeout=limits.call_deadline_s
            )

        return transfer

    async def echo_once(request: cs.TransferPointsRequest) -> object:
        return await echo(request, timeout=limits.call_deadline_s)

    tasks: list[Coroutine[Any, Any, None]]
    if spec.scenario == "market":
        tasks = [market_caller(stub, metadata, caller, recorder) for caller in callers]
    elif spec.scenario in TRANSFER_SCENARIOS:
        tasks = [_unary_caller(transfer_through(to), accounts_of(spec), recorder) for to in stub_of]
    elif spec.scenario == "echo":
        tasks = [_unary_caller(echo_once, limits.members_count, recorder) for _ in callers]
    elif spec.scenario == "echo_stream":
        tasks = [_echo_stream_caller(channel, recorder) for _ in callers]
    else:
        tasks = [_bulk_stream(to, spec, recorder) for to in stub_of]
    running = [asyncio.create_task(task) for task in tasks]
    drain_end_s = recorder.window_end_s + limits.drain_s_max
    done, unfinished = await asyncio.wait(running, timeout=drain_end_s - time.monotonic())
    for task in unfinished:
        task.cancel()
    await asyncio.gather(*unfinished, return_exceptions=True)
    for task in done:
        task.result()  # A caller's unexpected exception fails the worker, loudly.


async def _worker_async(spec: LoadSpec, index: int, barrier: Barrier) -> Recorded:
    parallel = spec.bulk_streams if spec.scenario == "bulk" else spec.callers
    # This worker's callers by global index: the market gives each caller its own account.
    first = sum(_share(parallel, spec.processes, j) for j in range(index))
    callers = range(first, first + _share(parallel, spec.processes, index))
    # A channel of its own (not the process-wide subchannel pool): its own HTTP/2 connection,
    # to each server the spec names.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with contextlib.AsyncExitStack() as stack:
        channels = [
            await stack.enter_async_context(grpc.aio.insecure_channel(target, options=options))
            for target in spec.target.split(",")
        ]
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), _CONNECT_TIMEOUT_S)
        await asyncio.to_thread(barrier.wait, _WORKER_START_TIMEOUT_S)
        window_start_s = time.monotonic() + spec.warmup_s
        recorder = Recorder(window_start_s, window_start_s + spec.measure_s)
        if callers:
            await _run_callers(spec, channels, recorder, callers)
        return recorder.recorded


def _worker(
    spec: LoadSpec, index: int, barrier: Barrier, results: multiprocessing.Queue[Any]
) -> None:
    try:
        results.put(asyncio.run(_worker_async(spec, index, barrier)))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it.
        barrier.abort()
        results.put(f"worker {index}: {error!r}")


class LoadFailed(RuntimeError):
    """A load-generator worker failed; the message says which and why."""


def run_load(spec: LoadSpec, at_window_start: Callable[[], None] | None = None) -> Recorded:
    """Run one scenario; return the merged record of every worker.

    `at_window_start` is called once the warm-up is over (to sample server counters).
    """
    # spawn, not fork: a forked child would inherit the parent's gRPC and event-loop state.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(spec.processes + 1)
    results: multiprocessing.Queue[Any] = context.Queue()
    workers = [
        context.Process(target=_worker, args=(spec, i, barrier, results), daemon=True)
        for i in range(spec.processes)
    ]
    for worker in workers:
        worker.start()
    try:
        barrier.wait(_WORKER_START_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - a broken barrier: the workers' queue says why.
        pass
    else:
        time.sleep(spec.warmup_s)
        if at_window_start is not None:
            at_window_start()
    merged = Recorded()
    wait_s = _WORKER_START_TIMEOUT_S + spec.measure_s + limits.call_deadline_s
    for _ in workers:
        try:
            outcome = results.get(timeout=wait_s)
        except queue.Empty:
            raise LoadFailed("a load-generator worker did not report") from None
        if isinstance(outcome, str):
            raise LoadFailed(outcome)
        merged.merge(outcome)
    for worker in workers:
        worker.join(_CONNECT_TIMEOUT_S)
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    """Drive one scenario against a running target and print its summary as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--target", required=True, help="loopback host:port")
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--callers", type=int, default=limits.callers_default)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2, help="seconds")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds")
    parser.add_argument("--token", default="")
    args = parser.parse_args(argv)
    spec = LoadSpec(
        args.target, args.scenario, args.callers, args.processes, args.warmup, args.duration,
        args.token,
    )  # fmt: skip
    recorded = run_load(spec)
    latencies = sorted(recorded.latencies_us)
    summary = {
        "ok": recorded.ok,
        "ops_per_s": recorded.ok // spec.measure_s,
        "p50_us": latencies[len(latencies) // 2] if latencies else 0,
        "max_us": latencies[-1] if latencies else 0,
        "errors": dict(recorded.errors),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
