"""Settings: flags over environment over defaults, validation, and the documented table."""

from __future__ import annotations

from pathlib import Path

import pytest

from pointex.server.config import SETTINGS, ConfigError, command_config, query_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
FEED_TOKEN = "query-0123456789abcdef"
PG_URL = "postgresql://pointex@db.internal:5432/pointex"
LEASED = {"POINTEX_STORE_URL": PG_URL, "POINTEX_SLICE_LEASE_MS": "5000"}


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    """An environment naming an existing tokens file (its content is checked elsewhere)."""
    path = tmp_path / "tokens"
    path.write_text("operator ops 0123456789abcdef0123\n")
    return {"POINTEX_AUTH_TOKENS_FILE": str(path), "POINTEX_FEED_TOKEN": FEED_TOKEN}


def test_defaults_need_only_the_tokens_file(tokens: dict[str, str]) -> None:
    """With only the tokens (and the query server's feed token), both get their defaults."""
    command = command_config([], env=tokens)
    query = query_config([], env=tokens)
    assert query.feed_token == FEED_TOKEN
    assert query.read_store_url == "sqlite:///.pointex/read.db"
    assert command.common.listen == "127.0.0.1:50051"
    assert command.store_url == "sqlite:///.pointex/events.db"
    assert command.allow_unsafe_durability is False
    assert query.common.listen == "127.0.0.1:50052"
    assert query.command_target == "127.0.0.1:50051"
    assert command.common.tls is None


@pytest.mark.parametrize("value", ["", "short", "has a space in it, long enough"])
def test_query_server_needs_a_usable_feed_token(tokens: dict[str, str], value: str) -> None:
    """Without a feed token (or with a guessable one) the query server refuses to start."""
    with pytest.raises(ConfigError, match="feed_token") as caught:
        query_config([], env={**tokens, "POINTEX_FEED_TOKEN": value})
    assert value not in str(caught.value) or not value


def test_tokens_file_is_required() -> None:
    """Without a tokens file the servers refuse to start: there is no unauthenticated mode."""
    with pytest.raises(ConfigError, match="auth_tokens_file"):
        command_config([], env={})


def test_slice_leases_are_off_by_default_and_taken_on_postgres(tokens: dict[str, str]) -> None:
    """Without the setting the server runs alone; with it, on PostgreSQL, it holds leases."""
    assert command_config([], env=tokens).slice_lease_ms == 0
    env = {**tokens, "POINTEX_STORE_URL": PG_URL, "POINTEX_SLICE_LEASE_MS": "5000"}
    assert command_config([], env=env).slice_lease_ms == 5_000
    # Where the others forward to: derived from the bound port unless given.
    assert command_config([], env=env).advertise == ""
    advertised = command_config([], env={**env, "POINTEX_ADVERTISE": "node-2:50051"})
    assert advertised.advertise == "node-2:50051"


def test_a_server_takes_every_range_unless_told_a_part(tokens: dict[str, str]) -> None:
    """The ranges a server takes: all 64 by default, or the part the setting lists."""
    env = {**tokens, "POINTEX_STORE_URL": PG_URL, "POINTEX_SLICE_LEASE_MS": "5000"}
    assert command_config([], env=env).slice_ranges == tuple(range(64))
    part = command_config([], env={**env, "POINTEX_SLICE_RANGES": "32-47, 0-3,5,63"})
    assert part.slice_ranges == (0, 1, 2, 3, 5, *range(32, 48), 63)
    assert not part.balanced
    balanced = command_config([], env={**env, "POINTEX_SLICE_RANGES": " balanced "})
    assert balanced.balanced
    assert balanced.slice_ranges == tuple(range(64))


def test_a_cluster_refuses_tls_its_forwarding_does_not_carry(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    """Leases with TLS are refused: the hop between the cluster's servers is plaintext."""
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_bytes(name.encode())
    tls = {
        "POINTEX_TLS_CERT": str(tmp_path / "cert.pem"),
        "POINTEX_TLS_KEY": str(tmp_path / "key.pem"),
    }
    env = {**tokens, **tls, "POINTEX_STORE_URL": PG_URL}
    assert command_config([], env=env).common.tls is not None
    with pytest.raises(ConfigError, match=r"slice_lease_ms: .* without TLS"):
        command_config([], env={**env, "POINTEX_SLICE_LEASE_MS": "5000"})


def test_flag_wins_over_environment_which_wins_over_default(tokens: dict[str, str]) -> None:
    """A flag overrides its POINTEX_* variable, which overrides the default."""
    env = {"POINTEX_LISTEN": "127.0.0.1:6000", "POINTEX_SHUTDOWN_GRACE_S": "3", **tokens}
    from_env = command_config([], env=env)
    from_flag = command_config(["--listen", "127.0.0.1:7000"], env=env)
    assert from_env.common.listen == "127.0.0.1:6000"
    assert from_env.common.shutdown_grace_s == 3
    assert from_flag.common.listen == "127.0.0.1:7000"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"POINTEX_LISTEN": "nohostport"}, "listen"),
        ({"POINTEX_LISTEN": "127.0.0.1:70000"}, "listen"),
        ({"POINTEX_STORE_URL": "mysql://x"}, "store_url"),
        ({"POINTEX_STORE_URL": "sqlite:///"}, "store_url"),
        ({"POINTEX_ALLOW_UNSAFE_DURABILITY": "perhaps"}, "allow_unsafe_durability"),
        ({"POINTEX_SHUTDOWN_GRACE_S": "-1"}, "shutdown_grace_s"),
        ({"POINTEX_LOG_LEVEL": "LOUD"}, "log_level"),
        ({"POINTEX_TLS_CERT": "/nonexistent.pem"}, "tls_cert"),
        ({"POINTEX_TLS_CLIENT_CA": "/ca.pem"}, "tls_client_ca"),
        ({"POINTEX_SLICE_LEASE_MS": "2000"}, "slice_lease_ms"),  # SQLite: no leases.
        ({"POINTEX_SLICE_LEASE_MS": "100", "POINTEX_STORE_URL": PG_URL}, "slice_lease_ms"),
        ({"POINTEX_SLICE_LEASE_MS": "-1", "POINTEX_STORE_URL": PG_URL}, "slice_lease_ms"),
        ({"POINTEX_ADVERTISE": "no-port"}, "advertise"),
        ({"POINTEX_SLICE_RANGES": "0-31"}, "slice_ranges"),  # Part of them, without leases.
        ({"POINTEX_SLICE_RANGES": "balanced"}, "slice_ranges"),  # Balanced, without leases.
        ({"POINTEX_SLICE_RANGES": "0-64", **LEASED}, "slice_ranges"),
        ({"POINTEX_SLICE_RANGES": "9-3", **LEASED}, "slice_ranges"),
        ({"POINTEX_SLICE_RANGES": "a", **LEASED}, "slice_ranges"),
        ({"POINTEX_SLICE_RANGES": "", **LEASED}, "slice_ranges"),
    ],
)
def test_invalid_values_are_refused_with_the_setting_named(
    env: dict[str, str], named: str, tokens: dict[str, str]
) -> None:
    """Every invalid value raises ConfigError whose message names the setting."""
    with pytest.raises(ConfigError, match=named):
        command_config([], env={**tokens, **env})


def test_tls_material_is_read(tmp_path: Path, tokens: dict[str, str]) -> None:
    """TLS files are read at configuration time; a client CA turns on mutual TLS."""
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_bytes(name.encode())
    env = {
        "POINTEX_TLS_CERT": str(tmp_path / "cert.pem"),
        "POINTEX_TLS_KEY": str(tmp_path / "key.pem"),
        "POINTEX_TLS_CLIENT_CA": str(tmp_path / "ca.pem"),
        **tokens,
    }
    tls = query_config([], env=env).common.tls
    assert tls is not None
    assert tls.cert_chain_pem == b"cert.pem"
    assert tls.client_ca_pem == b"ca.pem"


def test_every_setting_is_documented() -> None:
    """docs/configuration.md lists every variable and flag that config.py defines."""
    text = DOCS.read_text()
    missing = [s.env for s in SETTINGS if f"`{s.env}`" not in text or f"`{s.flag}`" not in text]
    assert missing == []
