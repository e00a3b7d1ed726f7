"""Prometheus metrics of one server: RPCs by method and code, their latency, and gauges.

Each server keeps its own registry (not the library's global one), so that two servers in
one process — as tests run them — count apart. With `POINTEX_METRICS_LISTEN` set, the
registry is served over HTTP at `/metrics` in the Prometheus text format.

Latencies are in seconds, as Prometheus conventions have it; they are measurements of
the machine, not amounts of the domain, which stays in integers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Upper bounds of the RPC latency buckets, in seconds: from a cached read to a command that
# waited for a loaded store, and the long tail of a bulk message.
_RPC_BUCKETS_S: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class Metrics:
    """The metrics of one server process."""

    def __init__(self, server: str) -> None:
        """Create the registry of the `server` ("command" or "query") and its RPC metrics."""
        self.server = server
        self.registry = CollectorRegistry()
        self._rpcs = Counter(
            "pointex_rpcs",
            "RPCs handled, by full method name and gRPC status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self._rpc_seconds = Histogram(
            "pointex_rpc_duration_seconds",
            "Time from an RPC's start to its end (streams: to their last message).",
            ["method"],
            buckets=_RPC_BUCKETS_S,
            registry=self.registry,
        )
        # The labelled children by (method, code): `labels()` takes a lock and builds a key
        # on every call. Bounded by the methods the server serves times the status codes.
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def rpc_done(self, method: str, code: str, seconds: float) -> None:
        """Count one finished RPC and its duration."""
        children = self._children.get((method, code))
        if children is None:
            children = self._children[method, code] = (
                self._rpcs.labels(method=method, code=code),
                self._rpc_seconds.labels(method=method),
            )
        count, duration = children
        count.inc()
        duration.observe(seconds)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Expose `read()`, called at each scrape, as the gauge `name`."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def total(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Expose `read()`, a count since start kept by its owner, as the counter `name`.

        For counts that a hot path already keeps as a plain integer: reading them at each
        scrape costs that path nothing.
        """
        self.registry.register(_ReadCounter(name, documentation, read))

    def serve(self, listen: str) -> int:
        """Serve `/metrics` on `listen` (host:port; port 0 picks one); return the port."""
        host, _, port = listen.rpartition(":")
        server, thread = start_http_server(int(port), addr=host, registry=self.registry)
        self._http, self._thread = server, thread
        bound = int(server.server_port)
        log.info("metrics listening", extra={"metrics_port": bound, "server": self.server})
        return bound

    def close(self) -> None:
        """Stop serving `/metrics` (nothing to do when it was never served)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class _ReadCounter(Collector):
    """A counter whose value is read from its owner at each scrape."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._name = name
        self._documentation = documentation
        self._read = read

    def collect(self) -> list[CounterMetricFamily]:
        """Return the counter's one sample (`<name>_total`)."""
        return [CounterMetricFamily(self._name, self._documentation, value=self._read())]
