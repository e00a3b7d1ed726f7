"""The command line's connection to Pointex: one SDK client, made from the settings."""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf import message

from pointex.cli.errors import UsageError
from pointex.cli.options import Settings, Tls
from pointex.cli.output import Output
from pointex.client.builders import new_request_id
from pointex.client.connection import Deadlines, Targets
from pointex.client.connection import Tls as ClientTls
from pointex.client.errors import PointexError
from pointex.client.retry import RetryPolicy
from pointex.client.sync import PointexClient
from pointex.v1 import command_service_pb2_grpc, query_service_pb2_grpc

Request = TypeVar("Request", bound=message.Message)
Response = TypeVar("Response", bound=message.Message)
_MS_PER_S = 1000

__all__ = ["Session", "new_request_id"]


class Session:
    """A `PointexClient` opened on first use, with the command line's retries and deadlines."""

    def __init__(self, settings: Settings, out: Output) -> None:
        """Remember the settings; nothing is connected until a call needs it."""
        self.settings = settings
        self._out = out
        self._client: PointexClient | None = None

    @property
    def client(self) -> PointexClient:
        """Return the SDK client, opening it on first use.

        Raises:
            UsageError: no token was given anywhere, or a TLS file cannot be read.
        """
        if self._client is None:
            self._client = self._open()
        return self._client

    @property
    def commands(self) -> command_service_pb2_grpc.CommandServiceStub:
        """Return a CommandService stub on the command server."""
        return self.client.command_stub

    @property
    def queries(self) -> query_service_pb2_grpc.QueryServiceStub:
        """Return a QueryService stub on the query server."""
        return self.client.query_stub

    def channel(self, target: str) -> grpc.Channel:
        """Return the client's channel to `target` (the command or the query server)."""
        command, query = self.client.channels
        return command if target == self.settings.command_target else query

    def mutate(
        self,
        rpc: grpc.UnaryUnaryMultiCallable[Request, Response],
        request: Request,
        request_id: str,
    ) -> Response:
        """Send a mutating command, retrying with its request id (`pointex.client.retry`)."""
        return self.client.call_command(rpc, request, request_id)

    def read(
        self, rpc: grpc.UnaryUnaryMultiCallable[Request, Response], request: Request
    ) -> Response:
        """Send a query, retrying retryable failures (reads change nothing)."""
        return self.client.call_query(rpc, request)

    def close(self) -> None:
        """Close the client's channels."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _open(self) -> PointexClient:
        settings = self.settings
        if not settings.token:
            raise UsageError(
                "no token: pass --token or --token-file, or set POINTEX_TOKEN "
                "(`make run` writes .pointex/tokens)"
            )
        timeout_ms = int(settings.timeout_s * _MS_PER_S)
        return PointexClient(
            Targets(settings.command_target, settings.query_target),
            settings.token,
            tls=_client_tls(settings.tls),
            deadlines=Deadlines(command_ms=timeout_ms, query_ms=timeout_ms),
            retry=RetryPolicy(attempts_max=settings.retries + 1),
            on_retry=self._note_retry,
        )

    def _note_retry(self, failure: PointexError, delay_ms: int) -> None:
        self._out.note(f"retrying in {delay_ms / _MS_PER_S:.1f} s after {failure.line()}")


def _client_tls(tls: Tls | None) -> ClientTls | None:
    if tls is None:
        return None
    try:
        return ClientTls.from_files(
            tls.ca_path, cert=tls.cert_path, key=tls.key_path, server_name=tls.server_name
        )
    except OSError as error:
        raise UsageError(f"cannot read a TLS file: {error}") from None
