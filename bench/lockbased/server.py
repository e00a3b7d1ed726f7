"""The lock-based contender as a grpc.aio server of `pointex.v1.CommandService`.

Run: `python -m bench.lockbased.server --dsn postgresql://... --schema bench_lockbased`.
It serves OpenAccount, MintPoints, IssuePoints, TransferPoints and ExecuteBulk (for those
commands) and, given `--sandbox-target` and `--provider-secret-file`, the market: PlaceOrder,
CancelOrder, ConfirmPayment and FailPayment (bench/lockbased/market.py); every other RPC
answers UNIMPLEMENTED. It ignores the `authorization` metadata,
since it exists only to be measured. It prints `lockbased server listening on port N` once
serving, rewrites `--stats-file` (JSON counters: deadlocks, lock timeouts, aborts) every
200 ms, and on SIGTERM stops, prints the final counters as one JSON line and exits.

The front (`LedgerServicer`, `command_handler`, `serve_ledger`) takes any `Ledger`, so the
eventsourcing peer contender (`bench.peer.server`) is served by the very same code: the two
contenders differ only in how they store a command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from bench import limits, loops
from bench.lockbased.market import LockBasedMarket, LockBasedPayments
from bench.lockbased.market_server import MarketServicer, PaymentRequester
from bench.lockbased.store import (
    MEMBER,
    MERCHANT,
    LockBasedLedger,
    LockOrder,
    Movement,
    Rejected,
    Result,
    create_schema,
    schema_name,
)
from pointex.client.positions import encode_global
from pointex.v1 import command_service_pb2 as cs
from pointex.v1 import common_pb2

SERVICE = "pointex.v1.CommandService"
ERROR_DOMAIN = "pointex.v1"
_SHUTDOWN_GRACE_S = 5
Context = grpc.aio.ServicerContext[Any, Any]

_KINDS = {common_pb2.ACCOUNT_KIND_MEMBER: MEMBER, common_pb2.ACCOUNT_KIND_MERCHANT: MERCHANT}


class Ledger(Protocol):
    """What the front needs of a store: open an account, move points, count what happened."""

    async def open_account(self, request_id: str, account_id: str, kind: str, owner: str) -> int:
        """Open an account with zero points; return the position of the opening."""
        ...

    async def move(self, movement: Movement) -> Result:
        """Move points between two accounts (or mint into one); raise Rejected to refuse."""
        ...

    def counters(self) -> dict[str, int]:
        """Return the store's own counters (aborts, deadlocks...) for the stats file."""
        ...


def _position(ledger_id: int) -> common_pb2.Position:
    return common_pb2.Position(token=encode_global(ledger_id))


def _check(request_id: str, amount_points: int | None = None) -> None:
    """Refuse what the contract refuses before execution (the request_id is not consumed)."""
    if not request_id:
        raise Rejected("INVALID_ARGUMENT", "REQUEST_ID_MISSING", "request_id is required")
    if amount_points is not None and amount_points <= 0:
        raise Rejected("INVALID_ARGUMENT", "AMOUNT_NOT_POSITIVE", "amount must be positive")


def movement_of(command: cs.BulkCommand) -> tuple[Movement, str]:
    """Return the movement a bulk or unary command asks for, and its response field name."""
    which = command.WhichOneof("command")
    if which == "transfer_points":
        t = command.transfer_points
        _check(t.request_id, t.amount_points)
        if t.from_account_id == t.to_account_id:
            raise Rejected("INVALID_ARGUMENT", "SAME_ACCOUNT", "from and to are the same")
        move = Movement(
            t.request_id, "transfer", t.from_account_id, t.to_account_id, t.amount_points,
            MEMBER, MEMBER,
        )  # fmt: skip
        return move, which
    if which == "issue_points":
        i = command.issue_points
        _check(i.request_id, i.amount_points)
        move = Movement(
            i.request_id, "issue", i.merchant_account_id, i.member_account_id, i.amount_points,
            MERCHANT, MEMBER,
        )  # fmt: skip
        return move, which
    if which == "mint_points":
        m = command.mint_points
        _check(m.request_id, m.amount_points)
        move = Movement(
            m.request_id, "mint", None, m.merchant_account_id, m.amount_points, None, MERCHANT
        )
        return move, which
    raise Rejected("UNIMPLEMENTED", "INVALID_FIELD", f"{which} is not served by this contender")


def reply_of(which: str, result: Result) -> Any:
    """Return the response message of a committed command (`which`: its oneof field name)."""
    position = _position(result.ledger_id)
    transfer_id = str(result.ledger_id)
    if which == "transfer_points":
        return cs.TransferPointsResponse(
            position=position,
            transfer_id=transfer_id,
            from_available_points=result.result_available,
        )
    if which == "issue_points":
        return cs.IssuePointsResponse(
            position=position,
            transfer_id=transfer_id,
            merchant_available_points=result.result_available,
        )
    assert which == "mint_points", which
    return cs.MintPointsResponse(position=position, available_points=result.result_available)


def bulk_error(index: int, error: Rejected) -> cs.BulkResult:
    """Return the result of a refused bulk command."""
    code = getattr(code_pb2, error.code)
    failed = cs.BulkError(code=code, reason=error.reason, message=error.message)
    return cs.BulkResult(index=index, error=failed)


async def _abort(context: Context, error: Rejected) -> None:
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(
        code=getattr(code_pb2, error.code), message=error.message, details=[detail]
    )
    # grpc-stubs predates abort_with_status on the aio context; grpc.aio has it.
    await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]


def _open_kind(request: cs.OpenAccountRequest) -> str:
    """Return the kind of account to open, or refuse a request missing what it needs."""
    _check(request.request_id)
    kind = _KINDS.get(request.kind)
    if kind is None or not request.account_id or not request.owner_partner_id:
        raise Rejected("INVALID_ARGUMENT", "INVALID_FIELD", "kind, id and owner are required")
    return kind


class LedgerServicer:
    """The CommandService RPCs the benchmark drives, over a Ledger."""

    def __init__(self, ledger: Ledger, bulk_parallel_max: int) -> None:
        """Serve commands from `ledger`."""
        self._ledger = ledger
        self._bulk_parallel_max = bulk_parallel_max

    async def _unary(self, command: cs.BulkCommand, context: Context) -> Any:
        try:
            movement, which = movement_of(command)
            return reply_of(which, await self._ledger.move(movement))
        except Rejected as error:
            await _abort(context, error)

    async def open_account(self, request: cs.OpenAccountRequest, context: Context) -> Any:
        """Insert an account row with zero points."""
        try:
            kind = _open_kind(request)
            ledger_id = await self._ledger.open_account(
                request.request_id, request.account_id, kind, request.owner_partner_id
            )
        except Rejected as error:
            await _abort(context, error)
        account = common_pb2.Account(
            account_id=request.account_id,
            kind=request.kind,
            status=common_pb2.ACCOUNT_STATUS_OPEN,
            owner_partner_id=request.owner_partner_id,
            version=1,
        )
        return cs.OpenAccountResponse(position=_position(ledger_id), account=account)

    async def mint_points(self, request: cs.MintPointsRequest, context: Context) -> Any:
        """Credit new points to a merchant."""
        return await self._unary(cs.BulkCommand(mint_points=request), context)

    async def issue_points(self, request: cs.IssuePointsRequest, context: Context) -> Any:
        """Move points from a merchant to a member."""
        return await self._unary(cs.BulkCommand(issue_points=request), context)

    async def transfer_points(self, request: cs.TransferPointsRequest, context: Context) -> Any:
        """Move points from a member to another member."""
        return await self._unary(cs.BulkCommand(transfer_points=request), context)

    async def execute_bulk(
        self, requests: AsyncIterator[cs.ExecuteBulkRequest], context: Context
    ) -> AsyncIterator[cs.ExecuteBulkResponse]:
        """Answer each batch in order, as `run_batch` executes it."""
        async for request in requests:
            if len(request.commands) > limits.bulk_message_commands_max:
                too_large = Rejected("INVALID_ARGUMENT", "BULK_BATCH_TOO_LARGE", "over 1000")
                await _abort(context, too_large)
            yield cs.ExecuteBulkResponse(results=await self.run_batch(request.commands))

    async def run_batch(self, commands: Sequence[cs.BulkCommand]) -> list[cs.BulkResult]:
        """Run a batch's commands concurrently, each on its own; return results in order."""
        # Bounds the batch's concurrent transactions; the pool bounds them again overall.
        parallel = asyncio.Semaphore(self._bulk_parallel_max)

        async def one(index: int, command: cs.BulkCommand) -> cs.BulkResult:
            async with parallel:
                try:
                    movement, which = movement_of(command)
                    reply = reply_of(which, await self._ledger.move(movement))
                except Rejected as error:
                    return bulk_error(index, error)
                return cs.BulkResult(index=index, ok=cs.BulkOk(**{which: reply}))

        return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(commands))))


def _guarded(
    method: Callable[[Any], Awaitable[Any]],
) -> Callable[[Any, Context], Awaitable[Any]]:
    """Return an RPC handler running `method` and answering its Rejected with a status."""

    async def handle(request: Any, context: Context) -> Any:
        try:
            return await method(request)
        except Rejected as error:
            await _abort(context, error)

    return handle


def command_handler(
    servicer: LedgerServicer, market: MarketServicer | None = None
) -> grpc.GenericRpcHandler[Any, Any]:
    """Return the generic handler of `pointex.v1.CommandService` for `servicer` (and market)."""

    def unary(fn: Callable[..., Awaitable[Any]], request: Any, response: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            fn,
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )

    handlers = {
        "OpenAccount": unary(servicer.open_account, cs.OpenAccountRequest, cs.OpenAccountResponse),
        "MintPoints": unary(servicer.mint_points, cs.MintPointsRequest, cs.MintPointsResponse),
        "IssuePoints": unary(servicer.issue_points, cs.IssuePointsRequest, cs.IssuePointsResponse),
        "TransferPoints": unary(
            servicer.transfer_points, cs.TransferPointsRequest, cs.TransferPointsResponse
        ),
        "ExecuteBulk": grpc.stream_stream_rpc_method_handler(
            servicer.execute_bulk,
            request_deserializer=cs.ExecuteBulkRequest.FromString,
            response_serializer=cs.ExecuteBulkResponse.SerializeToString,
        ),
    }
    if market is not None:
        handlers |= {
            "PlaceOrder": unary(
                _guarded(market.place_order), cs.PlaceOrderRequest, cs.PlaceOrderResponse
            ),
            "CancelOrder": unary(
                _guarded(market.cancel_order), cs.CancelOrderRequest, cs.CancelOrderResponse
            ),
            "ConfirmPayment": unary(
                _guarded(market.confirm_payment),
                cs.ConfirmPaymentRequest,
                cs.ConfirmPaymentResponse,
            ),
            "FailPayment": unary(
                _guarded(market.fail_payment), cs.FailPaymentRequest, cs.FailPaymentResponse
            ),
        }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _write_stats(path: Path | None, ledger: Ledger) -> None:
    if path is None:
        return
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(ledger.counters()))
    # Atomic: the runner never reads a half-written file.
    scratch.replace(path)


async def _keep_writing_stats(path: Path | None, ledger: Ledger) -> None:
    while True:
        _write_stats(path, ledger)
        await asyncio.sleep(limits.lockbased_stats_interval_ms / 1000)


async def _keep_session(_: asyncpg.Connection) -> None:
    """Skip the pool's default reset on release (RESET ALL, UNLISTEN *, CLOSE ALL ...).

    Commands never change session state (no SET, LISTEN, cursors or advisory locks), so that
    reset would only add a round trip to every command; asyncpg still rolls back a
    transaction left open before calling this.
    """


async def serve(args: argparse.Namespace) -> None:
    """Create the schema and pool, serve until SIGTERM or SIGINT, then report the counters."""
    schema = schema_name(args.schema)
    connection = await asyncpg.connect(args.dsn)
    try:
        await create_schema(connection, schema)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(
        args.dsn,
        min_size=args.pool_size,
        max_size=args.pool_size,
        reset=_keep_session,
        server_settings={
            "search_path": schema,
            "lock_timeout": f"{limits.lockbased_lock_wait_ms_max}ms",
            "default_transaction_isolation": "read committed",
        },
    )
    ledger = LockBasedLedger(pool, args.lock_order)
    market, requester = _market(args, pool, ledger)
    try:
        servicer = LedgerServicer(ledger, limits.lockbased_bulk_parallel_max)
        await serve_ledger(
            servicer, ledger, args.listen, args.stats_file, "lockbased server", market=market
        )
    finally:
        if requester is not None:
            await requester.close()
        await pool.close()


def _market(
    args: argparse.Namespace, pool: asyncpg.Pool, ledger: LockBasedLedger
) -> tuple[MarketServicer | None, PaymentRequester | None]:
    """Return the market servicer when a sandbox provider is given (else the market is off)."""
    if not args.sandbox_target:
        return None, None
    secret = args.provider_secret_file.read_text().strip().encode()
    payments = LockBasedPayments(pool, args.lock_order, ledger.stats)
    requester = PaymentRequester(args.sandbox_target, payments, ledger.stats)
    market = LockBasedMarket(pool, args.lock_order, ledger.stats)
    provider = (args.provider_id, secret)
    return MarketServicer(market, payments, requester, provider), requester


async def serve_ledger(
    servicer: LedgerServicer,
    ledger: Ledger,
    listen: str,
    stats_file: Path | None,
    label: str,
    *,
    market: MarketServicer | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT: announce the port, keep the stats file, print the last."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((command_handler(servicer, market),))
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"{label} listening on port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    writer = asyncio.create_task(_keep_writing_stats(stats_file, ledger))
    await stop.wait()
    await server.stop(_SHUTDOWN_GRACE_S)
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    _write_stats(stats_file, ledger)
    print(json.dumps({"stats": ledger.counters()}), flush=True)


def loopback(text: str) -> str:
    """Return `text` if it is a loopback host:port, else raise ArgumentTypeError."""
    host, _, port = text.rpartition(":")
    if host not in {"127.0.0.1", "localhost", "[::1]"} or not port.isdigit():
        raise argparse.ArgumentTypeError("only loopback host:port targets are allowed")
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Return the contender's options."""
    parser = argparse.ArgumentParser(prog="python -m bench.lockbased.server", description=__doc__)
    parser.add_argument("--listen", type=loopback, default="127.0.0.1:0")
    parser.add_argument("--dsn", default=os.environ.get("POINTEX_TEST_PG_DSN", ""))
    parser.add_argument("--schema", default="bench_lockbased")
    parser.add_argument("--lock-order", choices=("request", "sorted"), default="request")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=limits.lockbased_pool_connections_max,
        choices=range(1, limits.lockbased_pool_connections_max + 1),
        metavar=f"1..{limits.lockbased_pool_connections_max}",
    )
    parser.add_argument("--stats-file", type=Path, default=None)
    parser.add_argument(
        "--sandbox-target", type=loopback, default=None, help="serve the market, paid here"
    )
    parser.add_argument("--provider-id", default="sandbox", help="the sandbox's provider id")
    parser.add_argument(
        "--provider-secret-file", type=Path, help="the sandbox's callback secret, in a file"
    )
    args = parser.parse_args(argv)
    if args.sandbox_target and args.provider_secret_file is None:
        parser.error("--sandbox-target needs --provider-secret-file")
    if not args.dsn:
        parser.error("--dsn (or POINTEX_TEST_PG_DSN) is required")
    lock_order: LockOrder = args.lock_order
    args.lock_order = lock_order
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the lock-based contender until signalled."""
    loops.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
