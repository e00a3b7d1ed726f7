"""QueryService: proto -> validated filters -> wait for min_position -> read -> proto.

Servicers are thin: validation and tenancy live in `requests` (`market_requests` for the
market reads of `market_servicer`), reading in the read store,
judging invariants in `invariants`, streams in `notifications`, rebuilds in `rebuild`.
Errors are raised and mapped to statuses by the edge interceptor.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import AsyncIterator
from typing import Any

import grpc

from pointex.client.positions import position_message
from pointex.server import limits
from pointex.server.grpc_edge import convert
from pointex.server.grpc_edge.auth import current_principal
from pointex.server.grpc_edge.status import InvalidRequest
from pointex.server.query import invariants, requests
from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.feed_subscriber import FeedState
from pointex.server.query.market_servicer import MarketQueries
from pointex.server.query.notifications import NotificationStreams
from pointex.server.query.readstore.port import ReadStore
from pointex.server.query.rebuild import Rebuilder
from pointex.server.query.tokens import (
    CURSOR_INVALID,
    KIND_ACCOUNTS,
    KIND_HISTORY,
    TokenCodec,
    filter_digest,
)
from pointex.server.query.views import (
    account_message,
    movement_message,
    program_rules_reply,
    timestamp,
    transfer_quote_reply,
)
from pointex.v1 import query_service_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]
_POSITION = struct.Struct(">Q")


class QueryServicer(MarketQueries):
    """Every read of Pointex, over gRPC (the market reads come from `MarketQueries`)."""

    def __init__(  # noqa: PLR0917 - the servicer's collaborators, each named.
        self,
        store: ReadStore,
        watch: CheckpointWatch,
        tokens: TokenCodec,
        streams: NotificationStreams,
        rebuilder: Rebuilder,
        feed_state: FeedState,
    ) -> None:
        """Serve reads from `store` once `watch` reaches each request's min_position."""
        self._store = store
        self._watch = watch
        self._tokens = tokens
        self._streams = streams
        self._rebuilder = rebuilder
        self._feed_state = feed_state

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: Context
    ) -> pb.GetAccountResponse:
        """Return one account."""
        account_id = convert.identifier("account_id", request.account_id)
        as_of = await self._reached(request.min_position, context)
        found = await self._store.accounts([account_id])
        row = requests.require_visible(current_principal(), found.get(account_id), account_id)
        return pb.GetAccountResponse(as_of=position_message(as_of), account=account_message(row))

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Context
    ) -> pb.ListAccountsResponse:
        """Return one page of accounts in account_id order."""
        caller = current_principal()
        selected = requests.account_filter(caller, request)
        size = requests.page_size(request.page_size)
        digest = filter_digest(("accounts", *dataclasses.astuple(selected)))
        after = ""
        if request.page_token:
            key = self._tokens.read_page_token(request.page_token, KIND_ACCOUNTS, caller, digest)
            after = key.decode("utf-8", errors="replace")
        as_of = await self._reached(request.min_position, context)
        found = await self._store.list_accounts(selected, after, size + 1)
        next_token = ""
        if len(found) > size:
            found = found[:size]
            key = found[-1].account_id.encode()
            next_token = self._tokens.page_token(KIND_ACCOUNTS, caller, digest, key)
        return pb.ListAccountsResponse(
            as_of=position_message(as_of),
            accounts=[account_message(row) for row in found],
            next_page_token=next_token,
        )

    async def GetAccountHistory(
        self, request: pb.GetAccountHistoryRequest, context: Context
    ) -> pb.GetAccountHistoryResponse:
        """Return one page of an account's movements."""
        caller = current_principal()
        account_id = convert.identifier("account_id", request.account_id)
        selected = requests.history_filter(request)
        size = requests.page_size(request.page_size)
        digest = filter_digest(("history", account_id, *dataclasses.astuple(selected)))
        after = 0
        if request.page_token:
            key = self._tokens.read_page_token(request.page_token, KIND_HISTORY, caller, digest)
            if len(key) != _POSITION.size:
                raise InvalidRequest(CURSOR_INVALID, "page_token", "not a history page token")
            (after,) = _POSITION.unpack(key)
        as_of = await self._reached(request.min_position, context)
        found = await self._store.accounts([account_id])
        requests.require_visible(caller, found.get(account_id), account_id)
        movements = await self._store.history(account_id, selected, after, size + 1)
        next_token = ""
        if len(movements) > size:
            movements = movements[:size]
            key = _POSITION.pack(movements[-1].position)
            next_token = self._tokens.page_token(KIND_HISTORY, caller, digest, key)
        return pb.GetAccountHistoryResponse(
            as_of=position_message(as_of),
            movements=[movement_message(row) for row in movements],
            next_page_token=next_token,
        )

    async def GetProgramRules(
        self, request: pb.GetProgramRulesRequest, context: Context
    ) -> pb.GetProgramRulesResponse:
        """Return the program's rules in force and their version."""
        as_of = await self._reached(request.min_position, context)
        return program_rules_reply(as_of, await self._store.program_rules())

    async def QuoteTransfer(
        self, request: pb.QuoteTransferRequest, context: Context
    ) -> pb.QuoteTransferResponse:
        """Return the fee a transfer from an account the caller owns would pay now."""
        caller = current_principal()
        account_id = convert.identifier("from_account_id", request.from_account_id)
        amount_points = convert.amount("amount_points", request.amount_points)
        as_of = await self._reached(request.min_position, context)
        found = await self._store.accounts([account_id])
        requests.require_visible(caller, found.get(account_id), account_id, "from_account_id")
        rules = await self._store.program_rules()
        return transfer_quote_reply(as_of, rules, account_id, amount_points)

    async def WatchNotifications(
        self, request: pb.WatchNotificationsRequest, context: Context
    ) -> AsyncIterator[pb.WatchNotificationsResponse]:
        """Stream the caller's notifications."""
        # Headers at once, so that a client knows the stream is open before anything happens.
        await context.send_initial_metadata(())
        stream = self._streams.watch(current_principal(), request, context.time_remaining())
        async for message in stream:
            yield message

    async def CheckInvariants(
        self, request: pb.CheckInvariantsRequest, context: Context
    ) -> pb.CheckInvariantsResponse:
        """Audit I1, I2 and the balance bounds over the read models."""
        if request.max_violations > limits.invariant_violations_max:
            raise InvalidRequest(
                requests.PAGE_SIZE_TOO_LARGE,
                "max_violations",
                f"at most {limits.invariant_violations_max}",
            )
        listed_max = request.max_violations or limits.invariant_violations_default
        await self._reached(request.min_position, context)
        return invariants.check(await self._store.audit(listed_max), listed_max)

    async def RebuildProjections(
        self, request: pb.RebuildProjectionsRequest, _context: Context
    ) -> pb.RebuildProjectionsResponse:
        """Start a rebuild, or return the running one."""
        run, already_running = self._rebuilder.start(compare_only=request.compare_only)
        return pb.RebuildProjectionsResponse(rebuild=run.message(), already_running=already_running)

    async def GetProjectionStatus(
        self, request: pb.GetProjectionStatusRequest, context: Context
    ) -> pb.GetProjectionStatusResponse:
        """Return the checkpoint, the feed's head and connection, and the latest rebuild."""
        as_of = await self._reached(request.min_position, context)
        head = max(self._feed_state.head, as_of)
        status = pb.GetProjectionStatusResponse(
            as_of=position_message(as_of),
            feed_head=position_message(head),
            lag_events=head - as_of,
            feed_connected=self._feed_state.connected,
        )
        if self._feed_state.head_seen_at_us:
            status.feed_head_seen_at.CopyFrom(timestamp(self._feed_state.head_seen_at_us))
        if self._rebuilder.latest is not None:
            status.rebuild.CopyFrom(self._rebuilder.latest.message())
        return status
