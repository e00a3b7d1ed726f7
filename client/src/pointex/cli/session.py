"""Channels to the two servers, and calls with credentials, deadlines and retries."""

from __future__ import annotations

import uuid
from typing import TypeVar

import grpc
from google.protobuf import message

from pointex.cli.errors import CallFailure, UsageError
from pointex.cli.options import Settings, Tls
from pointex.cli.output import Output
from pointex.cli.retry import with_retries
from pointex.v1 import command_service_pb2_grpc, query_service_pb2_grpc

Request = TypeVar("Request", bound=message.Message)
Response = TypeVar("Response", bound=message.Message)


def new_request_id() -> str:
    """Return a fresh request id: a random UUID, as the contract recommends."""
    return str(uuid.uuid4())


class Session:
    """The command line's connection to Pointex: one channel per server, opened on first use."""

    def __init__(self, settings: Settings, out: Output) -> None:
        """Remember the settings; nothing is connected until a call needs it."""
        self.settings = settings
        self._out = out
        self._channels: dict[str, grpc.Channel] = {}

    def channel(self, target: str) -> grpc.Channel:
        """Return the channel to `target`, opening it with the TLS settings on first use."""
        if target not in self._channels:
            self._channels[target] = _open_channel(target, self.settings.tls)
        return self._channels[target]

    @property
    def commands(self) -> command_service_pb2_grpc.CommandServiceStub:
        """Return a CommandService stub on the command server."""
        return command_service_pb2_grpc.CommandServiceStub(
            self.channel(self.settings.command_target)
        )

    @property
    def queries(self) -> query_service_pb2_grpc.QueryServiceStub:
        """Return a QueryService stub on the query server."""
        return query_service_pb2_grpc.QueryServiceStub(self.channel(self.settings.query_target))

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Return the call metadata carrying the bearer token.

        Raises:
            UsageError: no token was given anywhere.
        """
        if not self.settings.token:
            raise UsageError(
                "no token: pass --token or --token-file, or set POINTEX_TOKEN "
                "(`make run` writes .pointex/tokens)"
            )
        return (("authorization", f"Bearer {self.settings.token}"),)

    def mutate(
        self,
        rpc: grpc.UnaryUnaryMultiCallable[Request, Response],
        request: Request,
        request_id: str,
    ) -> Response:
        """Send a mutating command, retrying with its request id; see `pointex.cli.retry`."""
        metadata = self.metadata()
        return with_retries(
            lambda: rpc(request, metadata=metadata, timeout=self.settings.timeout_s),
            retries=self.settings.retries,
            request_id=request_id,
            on_retry=self._note_retry,
        )

    def read(
        self, rpc: grpc.UnaryUnaryMultiCallable[Request, Response], request: Request
    ) -> Response:
        """Send a query, retrying retryable failures (reads change nothing)."""
        metadata = self.metadata()
        return with_retries(
            lambda: rpc(request, metadata=metadata, timeout=self.settings.timeout_s),
            retries=self.settings.retries,
            on_retry=self._note_retry,
        )

    def _note_retry(self, failure: CallFailure, delay_s: float) -> None:
        self._out.note(f"retrying in {delay_s:.1f} s after {failure.line()}")

    def close(self) -> None:
        """Close every channel opened."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


def _open_channel(target: str, tls: Tls | None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target)
    try:
        root = tls.ca_path.read_bytes()
        key = tls.key_path.read_bytes() if tls.key_path else None
        cert = tls.cert_path.read_bytes() if tls.cert_path else None
    except OSError as error:
        raise UsageError(f"cannot read a TLS file: {error}") from None
    credentials = grpc.ssl_channel_credentials(root, key, cert)
    options = []
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(target, credentials, options=options)
