"""Where the servers are, how to reach them securely, and how long each call may take."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

_MS_PER_S = 1000


@dataclass(frozen=True)
class Tls:
    """TLS to the servers; with a certificate and key, mutual TLS.

    Attributes:
        root_certificates: PEM of the CA that signed the servers' certificates; None uses the
            system's roots.
        certificate_chain: PEM of the client certificate (mutual TLS), or None.
        private_key: PEM of the client certificate's key (mutual TLS), or None.
        server_name: the name to check the server certificate against, when it differs from
            the target's host (a test CA, an address behind a load balancer).
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        ca: str | Path | None = None,
        *,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
    ) -> Tls:
        """Return TLS settings read from PEM files."""
        if (cert is None) != (key is None):
            raise ValueError("mutual TLS needs both a certificate and its key")
        return cls(
            root_certificates=Path(ca).read_bytes() if ca else None,
            certificate_chain=Path(cert).read_bytes() if cert else None,
            private_key=Path(key).read_bytes() if key else None,
            server_name=server_name,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        """Return the channel credentials these settings describe."""
        return grpc.ssl_channel_credentials(
            self.root_certificates, self.private_key, self.certificate_chain
        )

    def options(self) -> list[tuple[str, Any]]:
        """Return the channel options these settings need."""
        if self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []


@dataclass(frozen=True)
class Deadlines:
    """Default deadlines by call kind, each for one attempt (retries have RetryPolicy's total).

    Attributes:
        command_ms: one attempt of a command (a multi-account one replies when it finished).
        query_ms: one attempt of a query, including the wait for `min_position`.
        connect_ms: how long `wait_ready` waits for both servers.
    """

    command_ms: int = 10_000
    query_ms: int = 10_000
    connect_ms: int = 10_000

    @staticmethod
    def seconds(value_ms: int) -> float:
        """Return a deadline in the seconds gRPC takes."""
        return value_ms / _MS_PER_S


@dataclass(frozen=True)
class Targets:
    """The two servers' addresses (host:port).

    Attributes:
        command: the command server (CommandService).
        query: the query server (QueryService); empty when only commands are sent.
    """

    command: str
    query: str = ""

    @classmethod
    def from_env(cls) -> Targets:
        """Return the targets from POINTEX_COMMAND_TARGET and POINTEX_QUERY_TARGET.

        Defaults are `make run`'s addresses.
        """
        return cls(
            os.environ.get("POINTEX_COMMAND_TARGET", "127.0.0.1:50051"),
            os.environ.get("POINTEX_QUERY_TARGET", "127.0.0.1:50052"),
        )


def channel_options(tls: Tls | None, extra: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Return the options of a channel to a Pointex server."""
    return [*(tls.options() if tls else []), *extra]
