"""Every setting of every server, in one place: flags, POINTEX_* variables, defaults.

A setting is read from its command-line flag, else from its environment variable,
else from its default. Values are validated once, here, and the servers receive
frozen `CommandConfig` / `QueryConfig` / `SandboxConfig` objects (the sandbox payment
provider is the third kind of server); `pointex-command-server migrate` gets a
`MigrateConfig`. docs/configuration.md lists the same table; a test keeps the two in step.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pointex.server import limits
from pointex.server.slices import SLICE_RANGES

DEFAULT_DATA_DIR: Final = ".pointex"


class ConfigError(ValueError):
    """A setting has a value the servers cannot use."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One configurable value: its flag, its variable, its default and its meaning."""

    key: str
    env: str
    default: str
    help: str
    servers: frozenset[str]

    @property
    def flag(self) -> str:
        """Return the command-line flag, e.g. `--store-url`."""
        return "--" + self.key.replace("_", "-")


_BOTH = frozenset({"command", "query"})
_COMMAND = frozenset({"command"})
_QUERY = frozenset({"query"})
_SANDBOX = frozenset({"sandbox"})
_ALL = _BOTH | _SANDBOX
# `pointex-command-server migrate`: the event store's settings and the logs', nothing else.
_MIGRATE = frozenset({"migrate"})

SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(
        "listen",
        "POINTEX_LISTEN",
        "",
        "host:port to serve gRPC on; port 0 picks a free "
        "port (default 127.0.0.1:50051 for the command server, :50052 for the query server, "
        ":50053 for the sandbox payment provider)",
        _ALL,
    ),
    Setting(
        "store_url",
        "POINTEX_STORE_URL",
        f"sqlite:///{DEFAULT_DATA_DIR}/events.db",
        "event store: sqlite:///<file> or postgresql://user@host:port/db[?schema=name]",
        _COMMAND | _MIGRATE,
    ),
    Setting(
        "allow_unsafe_durability",
        "POINTEX_ALLOW_UNSAFE_DURABILITY",
        "false",
        "start even when the store would not make commits durable (synchronous_commit or "
        "fsync off, SQLite synchronous below FULL); logged loudly",
        _COMMAND | _MIGRATE,
    ),
    Setting(
        "read_store_url",
        "POINTEX_READ_STORE_URL",
        f"sqlite:///{DEFAULT_DATA_DIR}/read.db",
        "read store of the query server: sqlite:///<file> or postgresql://...",
        _QUERY,
    ),
    Setting(
        "command_target",
        "POINTEX_COMMAND_TARGET",
        "127.0.0.1:50051",
        "host:port of the command server: the query server follows its EventFeed, the sandbox "
        "payment provider delivers its callbacks to it",
        _QUERY | _SANDBOX,
    ),
    Setting(
        "feed_token",
        "POINTEX_FEED_TOKEN",
        "",
        "bearer token the query server presents to the command server's EventFeed: a "
        "query_server (or operator) token of the command server's tokens file (required)",
        _QUERY,
    ),
    Setting(
        "feed_tls_ca",
        "POINTEX_FEED_TLS_CA",
        "",
        "PEM CA bundle that signed the command server's certificate; when set, the query "
        "server follows the EventFeed over TLS (the command target's host name must match "
        "the certificate)",
        _QUERY,
    ),
    Setting(
        "feed_tls_cert",
        "POINTEX_FEED_TLS_CERT",
        "",
        "PEM client certificate chain the query server presents to a command server that "
        "requires mutual TLS (with --feed-tls-ca and --feed-tls-key)",
        _QUERY,
    ),
    Setting(
        "feed_tls_key", "POINTEX_FEED_TLS_KEY", "", "PEM private key of --feed-tls-cert", _QUERY
    ),
    Setting(
        "actors_resident_max",
        "POINTEX_ACTORS_RESIDENT_MAX",
        "100000",
        "account actors kept in memory; the least recently used idle ones leave first",
        _COMMAND,
    ),
    Setting(
        "slice_lease_ms",
        "POINTEX_SLICE_LEASE_MS",
        "0",
        "hold the slice ranges by lease in the PostgreSQL event store, each for this many "
        "milliseconds, renewed a third of the way; the store then refuses this server's "
        "appends to a range another server took over (docs/scale-out.md). 0: run alone",
        _COMMAND,
    ),
    Setting(
        "slice_ranges",
        "POINTEX_SLICE_RANGES",
        "0-63",
        'the slice ranges this server takes and serves, as ranges and numbers ("0-31", '
        '"0-15,32-47"; with slice_lease_ms). Several servers may share a set: one holds '
        "it, the others stand by. Accounts of another server's ranges are served there, and "
        'their calls forwarded to it. "balanced": the servers started so share the ranges '
        "among themselves, and share them again when one joins or leaves (docs/scale-out.md)",
        _COMMAND,
    ),
    Setting(
        "advertise",
        "POINTEX_ADVERTISE",
        "",
        "host:port where the other command servers of a cluster reach this one, to forward "
        "it the calls of the slice ranges it holds (with slice_lease_ms; default: the listen "
        "host, or this machine's host name when it listens on every interface, with the "
        "port bound)",
        _COMMAND,
    ),
    Setting(
        "auth_tokens_file",
        "POINTEX_AUTH_TOKENS_FILE",
        "",
        "file of bearer tokens, one '<role> <principal_id> <token>' a line (required)",
        _BOTH,
    ),
    Setting("tls_cert", "POINTEX_TLS_CERT", "", "PEM certificate chain; enables TLS", _BOTH),
    Setting("tls_key", "POINTEX_TLS_KEY", "", "PEM private key of --tls-cert", _BOTH),
    Setting(
        "tls_client_ca",
        "POINTEX_TLS_CLIENT_CA",
        "",
        "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)",
        _BOTH,
    ),
    Setting(
        "shutdown_grace_s",
        "POINTEX_SHUTDOWN_GRACE_S",
        "10",
        "seconds in-flight RPCs get to finish after SIGTERM/SIGINT",
        _ALL,
    ),
    Setting(
        "metrics_listen",
        "POINTEX_METRICS_LISTEN",
        "",
        "host:port to serve Prometheus metrics on (/metrics); port 0 picks a free port; "
        "empty: no metrics endpoint",
        _BOTH,
    ),
    Setting(
        "log_level", "POINTEX_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR", _ALL | _MIGRATE
    ),
    Setting(
        "log_format",
        "POINTEX_LOG_FORMAT",
        "json",
        "json (one object a line) or text",
        _ALL | _MIGRATE,
    ),
    Setting(
        "event_loop",
        "POINTEX_EVENT_LOOP",
        "uvloop",
        "uvloop (about a tenth more unary calls per second on this design) or asyncio (the "
        "standard library's loop)",
        _BOTH,
    ),
    Setting(
        "markets_file",
        "POINTEX_MARKETS_FILE",
        "",
        "TOML file configuring the markets (fees, payment window, bounds, provider); empty: "
        "one market PTS-CNY paid through the provider 'sandbox'",
        _COMMAND,
    ),
    # --- Payment providers (the command server) and the sandbox payment provider ---------
    Setting(
        "payment_providers_file",
        "POINTEX_PAYMENT_PROVIDERS_FILE",
        "",
        "TOML file naming each payment provider, its secrets (key id -> secret) and where to "
        "create payments; empty: no provider is configured",
        _COMMAND,
    ),
    Setting("provider_id", "POINTEX_PROVIDER_ID", "sandbox", "provider id to sign as", _SANDBOX),
    Setting(
        "provider_key_id",
        "POINTEX_PROVIDER_KEY_ID",
        "",
        "key id sent with each callback; empty: the command server tries every valid secret",
        _SANDBOX,
    ),
    Setting(
        "provider_secret",
        "POINTEX_PROVIDER_SECRET",
        "",
        "shared secret callbacks are signed with (16+ bytes); or use provider_secret_file",
        _SANDBOX,
    ),
    Setting(
        "provider_secret_file",
        "POINTEX_PROVIDER_SECRET_FILE",
        "",
        "file holding the shared secret (surrounding whitespace ignored)",
        _SANDBOX,
    ),
    Setting(
        "callback_token",
        "POINTEX_CALLBACK_TOKEN",
        "",
        "bearer token of a payment_provider line of the command server's tokens file; or use "
        "callback_token_file",
        _SANDBOX,
    ),
    Setting(
        "callback_token_file",
        "POINTEX_CALLBACK_TOKEN_FILE",
        "",
        "file holding the callback token (surrounding whitespace ignored)",
        _SANDBOX,
    ),
    Setting(
        "payment_delay_ms",
        "POINTEX_PAYMENT_DELAY_MS",
        "1000",
        "milliseconds from a payment's creation to its callback (0 to 86400000)",
        _SANDBOX,
    ),
    Setting(
        "payment_failure_rate_bps",
        "POINTEX_PAYMENT_FAILURE_RATE_BPS",
        "0",
        "share of payments that fail, in basis points (0 to 10000)",
        _SANDBOX,
    ),
    Setting(
        "callback_duplicate_rate_bps",
        "POINTEX_CALLBACK_DUPLICATE_RATE_BPS",
        "0",
        "share of callbacks delivered a second time, in basis points (0 to 10000)",
        _SANDBOX,
    ),
)

_DEFAULT_LISTEN: Final = {
    "command": "127.0.0.1:50051",
    "query": "127.0.0.1:50052",
    "sandbox": "127.0.0.1:50053",
}
_PROGRAMS: Final = {
    "command": "pointex-command-server",
    "query": "pointex-query-server",
    "sandbox": "pointex-sandbox-provider",
    "migrate": "pointex-command-server migrate",
}
# All of it: a share in basis points is at most 10 000 (100 %). A unit, not a tunable bound,
# so it is not in limits.py.
_BPS_MAX: Final = 10_000
_LOG_LEVELS: Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR"})
_LOG_FORMATS: Final = frozenset({"json", "text"})
_EVENT_LOOPS: Final = frozenset({"uvloop", "asyncio"})
_ID: Final = re.compile(rf"[A-Za-z0-9_.:-]{{1,{limits.id_chars_max}}}")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Server-side TLS material; `client_ca_pem` set means mutual TLS."""

    cert_chain_pem: bytes
    private_key_pem: bytes
    client_ca_pem: bytes | None


@dataclass(frozen=True, slots=True)
class FeedTlsConfig:
    """Client-side TLS material of the query server's feed connection."""

    root_ca_pem: bytes
    cert_chain_pem: bytes | None  # With the key: mutual TLS.
    private_key_pem: bytes | None


@dataclass(frozen=True, slots=True)
class CommonConfig:
    """Settings both servers share."""

    listen: str
    auth_tokens_file: Path
    tls: TlsConfig | None
    shutdown_grace_s: int
    log_level: str
    log_format: str
    metrics_listen: str = ""  # empty: no /metrics endpoint
    event_loop: str = "uvloop"  # or "asyncio"


@dataclass(frozen=True, slots=True)
class CommandConfig:
    """Settings of the command server."""

    common: CommonConfig
    store_url: str
    allow_unsafe_durability: bool
    actors_resident_max: int
    # 0: the server runs alone and holds no slice-range lease (docs/scale-out.md).
    slice_lease_ms: int = 0
    # The slice ranges this server takes (all 64 unless it splits them with other servers).
    slice_ranges: tuple[int, ...] = tuple(range(SLICE_RANGES))
    # The live servers share the ranges among themselves, again at each join or leave.
    balanced: bool = False
    # host:port the cluster's other servers forward to; empty: derived from the bound port.
    advertise: str = ""
    # None: no payment provider is configured (payments/providers.py reads the file).
    payment_providers_file: Path | None = None
    # None: the default market (markets.py reads the file).
    markets_file: Path | None = None


@dataclass(frozen=True, slots=True)
class QueryConfig:
    """Settings of the query server."""

    common: CommonConfig
    read_store_url: str
    command_target: str
    feed_token: str
    feed_tls: FeedTlsConfig | None = None  # None: the feed connection is plaintext.


@dataclass(frozen=True, slots=True)
class MigrateConfig:
    """Settings of `pointex-command-server migrate`: the event store, and the logs."""

    store_url: str
    allow_unsafe_durability: bool
    log_level: str
    log_format: str


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Settings of the sandbox payment provider."""

    listen: str
    command_target: str
    provider_id: str
    key_id: str
    # Kept out of repr so that logging the configuration never prints a credential.
    secret: bytes = field(repr=False)
    callback_token: str = field(repr=False)
    delay_ms: int
    failure_rate_bps: int
    duplicate_rate_bps: int
    shutdown_grace_s: int
    log_level: str
    log_format: str


def _parser(server: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROGRAMS[server],
        description=description,
        epilog="Every flag can also be set by its POINTEX_* environment variable.",
    )
    for setting in SETTINGS:
        if server in setting.servers:
            parser.add_argument(
                setting.flag,
                dest=setting.key,
                default=None,
                metavar=setting.env,
                help=f"{setting.help} [env {setting.env}; default {setting.default or 'see text'}]",
            )
    return parser


def _raw_values(
    server: str, argv: Sequence[str] | None, env: Mapping[str, str], description: str
) -> dict[str, str]:
    namespace = vars(_parser(server, description).parse_args(argv))
    values: dict[str, str] = {}
    for setting in SETTINGS:
        if server not in setting.servers:
            continue
        flag_value = namespace.get(setting.key)
        values[setting.key] = (
            flag_value if flag_value is not None else env.get(setting.env, setting.default)
        )
    if server in _DEFAULT_LISTEN and not values["listen"]:
        values["listen"] = _DEFAULT_LISTEN[server]
    return values


def _bool(key: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{key}: expected true or false, got {text!r}")


def _int_in(key: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{key}: expected a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{key}: {value} is outside {low}..{high}")
    return value


def _choice(key: str, text: str, choices: frozenset[str], normalise: Callable[[str], str]) -> str:
    value = normalise(text.strip())
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {sorted(choices)}, got {text!r}")
    return value


def _host_port(key: str, text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{key}: expected host:port, got {text!r}")
    _int_in(key, port, 0, 65535)
    return text


def _read_pem(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{key}: cannot read {path}: {error.strerror}") from None


def _tls(values: Mapping[str, str]) -> TlsConfig | None:
    cert, key, client_ca = values["tls_cert"], values["tls_key"], values["tls_client_ca"]
    if not cert and not key:
        if client_ca:
            raise ConfigError("tls_client_ca: mutual TLS needs tls_cert and tls_key too")
        return None
    if not cert or not key:
        raise ConfigError("tls_cert and tls_key go together")
    return TlsConfig(
        cert_chain_pem=_read_pem("tls_cert", cert),
        private_key_pem=_read_pem("tls_key", key),
        client_ca_pem=_read_pem("tls_client_ca", client_ca) if client_ca else None,
    )


def _feed_tls(values: Mapping[str, str]) -> FeedTlsConfig | None:
    ca, cert, key = values["feed_tls_ca"], values["feed_tls_cert"], values["feed_tls_key"]
    if bool(cert) != bool(key):
        raise ConfigError("feed_tls_cert and feed_tls_key go together")
    if not ca:
        if cert:
            raise ConfigError("feed_tls_cert: a client certificate needs feed_tls_ca too")
        return None
    return FeedTlsConfig(
        root_ca_pem=_read_pem("feed_tls_ca", ca),
        cert_chain_pem=_read_pem("feed_tls_cert", cert) if cert else None,
        private_key_pem=_read_pem("feed_tls_key", key) if key else None,
    )


def _existing_file(key: str, text: str) -> Path:
    if not text:
        raise ConfigError(f"{key}: required (see docs/configuration.md#authentication)")
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"{key}: {text} is not a readable file")
    return path


def _store_url(key: str, text: str) -> str:
    if text.startswith("sqlite:///") and len(text) > len("sqlite:///"):
        return text
    if text.startswith(("postgresql://", "postgres://")):
        return text
    raise ConfigError(f"{key}: expected sqlite:///<file> or postgresql://..., got {text!r}")


def _token(key: str, text: str) -> str:
    # The same rule as the tokens file: a short token is guessable. The value is never echoed.
    token = text.strip()
    if not token:
        raise ConfigError(f"{key}: required (see docs/configuration.md#authentication)")
    if len(token) < 16 or any(c.isspace() for c in token):  # noqa: PLR2004 - as the tokens file.
        raise ConfigError(f"{key}: expected 16 or more characters without spaces")
    return token


def _choice_id(key: str, text: str, *, allow_empty: bool) -> str:
    # The id syntax of the contract (1-64 of A-Z a-z 0-9 _ . : -).
    value = text.strip()
    if not value and allow_empty:
        return value
    if not _ID.fullmatch(value):
        raise ConfigError(f"{key}: expected 1-64 of A-Z a-z 0-9 _ . : -, got {text!r}")
    return value


def _common(values: Mapping[str, str]) -> CommonConfig:
    return CommonConfig(
        listen=_host_port("listen", values["listen"]),
        auth_tokens_file=_existing_file("auth_tokens_file", values["auth_tokens_file"]),
        tls=_tls(values),
        shutdown_grace_s=_int_in(
            "shutdown_grace_s", values["shutdown_grace_s"], 0, limits.shutdown_grace_s_max
        ),
        log_level=_choice("log_level", values["log_level"], _LOG_LEVELS, str.upper),
        log_format=_choice("log_format", values["log_format"], _LOG_FORMATS, str.lower),
        event_loop=_choice("event_loop", values["event_loop"], _EVENT_LOOPS, str.lower),
        metrics_listen=(
            _host_port("metrics_listen", values["metrics_listen"])
            if values.get("metrics_listen")
            else ""
        ),
    )


def command_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> CommandConfig:
    """Build and validate the command server's settings from flags and environment."""
    values = _raw_values(
        "command",
        argv,
        os.environ if env is None else env,
        "Pointex command server: CommandService and EventFeed over the event store. "
        "`pointex-command-server migrate` applies the event store's migrations and exits.",
    )
    common = _common(values)
    if common.tls is not None and values["slice_lease_ms"] not in ("", "0"):
        # The forwarding hop between servers is plaintext (grpc_edge/forwarding.py).
        raise ConfigError(
            "slice_lease_ms: a cluster of command servers forwards calls between its servers "
            "without TLS; run it on a private network without POINTEX_TLS_* settings"
        )
    return CommandConfig(
        common=common,
        store_url=_store_url("store_url", values["store_url"]),
        allow_unsafe_durability=_bool("allow_unsafe_durability", values["allow_unsafe_durability"]),
        actors_resident_max=_int_in(
            "actors_resident_max", values["actors_resident_max"], 1, limits.actors_resident_max
        ),
        slice_lease_ms=_slice_lease_ms(values["slice_lease_ms"], values["store_url"]),
        slice_ranges=_slice_ranges(values["slice_ranges"], values["slice_lease_ms"]),
        balanced=_balanced(values["slice_ranges"], values["slice_lease_ms"]),
        advertise=_host_port("advertise", values["advertise"]) if values["advertise"] else "",
        payment_providers_file=(
            _existing_file("payment_providers_file", values["payment_providers_file"])
            if values["payment_providers_file"]
            else None
        ),
        markets_file=(
            _existing_file("markets_file", values["markets_file"])
            if values["markets_file"]
            else None
        ),
    )


def _slice_lease_ms(value: str, store_url: str) -> int:
    """Return the slice-range lease length, 0 or within bounds, on PostgreSQL only."""
    lease_ms = _int_in("slice_lease_ms", value, 0, limits.slice_lease_ms_max)
    if lease_ms and not store_url.startswith("postgresql://"):
        raise ConfigError("slice_lease_ms: slice-range leases need a PostgreSQL event store")
    if 0 < lease_ms < limits.slice_lease_ms_min:
        raise ConfigError(f"slice_lease_ms: 0, or at least {limits.slice_lease_ms_min}")
    return lease_ms


def _slice_ranges(value: str, lease_ms: str) -> tuple[int, ...]:
    """Return the sorted slice ranges of `value` ("0-31", "0-15,32-47"), all by default."""
    every = tuple(range(SLICE_RANGES))
    if _balanced(value, lease_ms):
        return every  # Where it starts: the share of a server alone.
    taken: set[int] = set()
    for part in value.split(","):
        low, dash, high = part.strip().partition("-")
        first = _int_in("slice_ranges", low, 0, SLICE_RANGES - 1)
        last = _int_in("slice_ranges", high, first, SLICE_RANGES - 1) if dash else first
        taken.update(range(first, last + 1))
    ranges = tuple(sorted(taken))
    if ranges != every and lease_ms in ("", "0"):
        raise ConfigError("slice_ranges: a server takes part of the ranges only by lease")
    return ranges


def _balanced(value: str, lease_ms: str) -> bool:
    """Tell whether `value` asks for the ranges balanced among the live servers."""
    if value.strip() != "balanced":
        return False
    if lease_ms in ("", "0"):
        raise ConfigError("slice_ranges: servers balance the ranges only by lease")
    return True


def query_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> QueryConfig:
    """Build and validate the query server's settings from flags and environment."""
    values = _raw_values(
        "query",
        argv,
        os.environ if env is None else env,
        "Pointex query server: read models built from the command server's EventFeed.",
    )
    return QueryConfig(
        common=_common(values),
        read_store_url=_store_url("read_store_url", values["read_store_url"]),
        command_target=_host_port("command_target", values["command_target"]),
        feed_token=_token("feed_token", values["feed_token"]),
        feed_tls=_feed_tls(values),
    )


def migrate_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> MigrateConfig:
    """Build and validate the settings of `pointex-command-server migrate`."""
    values = _raw_values(
        "migrate",
        argv,
        os.environ if env is None else env,
        "Apply the event store's pending migrations, print its schema version and exit. Run "
        "it as the role that owns the store's schema, so that the command server's own role "
        "needs no DDL privilege (docs/operations.md).",
    )
    return MigrateConfig(
        store_url=_store_url("store_url", values["store_url"]),
        allow_unsafe_durability=_bool("allow_unsafe_durability", values["allow_unsafe_durability"]),
        log_level=_choice("log_level", values["log_level"], _LOG_LEVELS, str.upper),
        log_format=_choice("log_format", values["log_format"], _LOG_FORMATS, str.lower),
    )


def read_secret(key: str, text: str, path: str) -> bytes:
    """Return a shared secret given inline (`text`) or in a file (`path`), exactly one of them.

    Surrounding whitespace is dropped, so a file written with a final newline works.
    """
    if bool(text) == bool(path):
        raise ConfigError(f"{key}: give the secret or a file holding it, exactly one")
    if path:
        try:
            secret = Path(path).read_bytes().strip()
        except OSError as error:
            raise ConfigError(f"{key}: cannot read {path}: {error.strerror}") from None
    else:
        secret = text.strip().encode()
    # A shorter HMAC key can be guessed offline from one captured callback.
    if len(secret) < limits.provider_secret_bytes_min:
        raise ConfigError(f"{key}: a secret needs {limits.provider_secret_bytes_min} or more bytes")
    return secret


def _token_from(key: str, text: str, path: str) -> str:
    if text and path:
        raise ConfigError(f"{key}: give the token or a file holding it, not both")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ConfigError(f"{key}_file: cannot read {path}: {error.strerror}") from None
    return _token(key, text)


def sandbox_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> SandboxConfig:
    """Build and validate the sandbox payment provider's settings from flags and environment."""
    values = _raw_values(
        "sandbox",
        argv,
        os.environ if env is None else env,
        "Pointex sandbox payment provider: a test gateway that sends signed callbacks.",
    )
    return SandboxConfig(
        listen=_host_port("listen", values["listen"]),
        command_target=_host_port("command_target", values["command_target"]),
        provider_id=_choice_id("provider_id", values["provider_id"], allow_empty=False),
        key_id=_choice_id("provider_key_id", values["provider_key_id"], allow_empty=True),
        secret=read_secret(
            "provider_secret", values["provider_secret"], values["provider_secret_file"]
        ),
        callback_token=_token_from(
            "callback_token", values["callback_token"], values["callback_token_file"]
        ),
        delay_ms=_int_in(
            "payment_delay_ms", values["payment_delay_ms"], 0, limits.sandbox_payment_delay_ms_max
        ),
        failure_rate_bps=_int_in(
            "payment_failure_rate_bps", values["payment_failure_rate_bps"], 0, _BPS_MAX
        ),
        duplicate_rate_bps=_int_in(
            "callback_duplicate_rate_bps", values["callback_duplicate_rate_bps"], 0, _BPS_MAX
        ),
        shutdown_grace_s=_int_in(
            "shutdown_grace_s", values["shutdown_grace_s"], 0, limits.shutdown_grace_s_max
        ),
        log_level=_choice("log_level", values["log_level"], _LOG_LEVELS, str.upper),
        log_format=_choice("log_format", values["log_format"], _LOG_FORMATS, str.lower),
    )
