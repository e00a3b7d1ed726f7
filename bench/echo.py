"""A bare grpc.aio echo server: the ceiling any Python gRPC contender can reach here.

Run: `python -m bench.echo --listen 127.0.0.1:0`; it prints `echo server listening on port N`.
Service `bench.Echo` has `Unary` (one message back per call) and `Stream` (a bidi stream that
answers every message as it arrives). The message is a `TransferPointsRequest`, parsed and
serialised on both sides, so the echo pays the same protobuf cost per call as a transfer and
differs from the contenders only in doing no work between receive and reply.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from bench import loops
from pointex.v1 import command_service_pb2 as cs

SERVICE = "bench.Echo"
UNARY_METHOD = f"/{SERVICE}/Unary"
STREAM_METHOD = f"/{SERVICE}/Stream"
_SHUTDOWN_GRACE_S = 2
Message = cs.TransferPointsRequest


async def _unary(request: Message, _: grpc.aio.ServicerContext[Any, Any]) -> Message:
    return request


async def _stream(
    requests: AsyncIterator[Message], _: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Message]:
    async for request in requests:
        yield request


def _handler() -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                _unary,
                request_deserializer=Message.FromString,
                response_serializer=Message.SerializeToString,
            ),
            "Stream": grpc.stream_stream_rpc_method_handler(
                _stream,
                request_deserializer=Message.FromString,
                response_serializer=Message.SerializeToString,
            ),
        },
    )


async def serve(listen: str) -> None:
    """Serve the echo until SIGTERM or SIGINT."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(),))
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"echo server listening on port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(_SHUTDOWN_GRACE_S)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the echo server until signalled."""
    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0", help="loopback host:port")
    args = parser.parse_args(argv)
    if not args.listen.startswith(("127.0.0.1:", "localhost:", "[::1]:")):
        parser.error("only loopback targets are allowed")
    loops.run(serve(args.listen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
