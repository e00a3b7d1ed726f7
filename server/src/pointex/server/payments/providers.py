"""The command server's payment providers file: who may call back, with which secrets.

`POINTEX_PAYMENT_PROVIDERS_FILE` names a TOML file (docs/configuration.md#payment-providers):

    callback_window_s = 300              # optional: accepted ± seconds of signed_at

    [providers.sandbox]                  # the provider id
    kind = "sandbox"                     # the only kind in this release
    target = "127.0.0.1:50053"           # host:port of the provider's gRPC API
    request_timeout_ms = 5000            # optional: longest call (CreatePayment, RefundPayment)

    [[providers.sandbox.keys]]           # one key, or two while a key rotates
    key_id = "local-1"
    secret_file = "sandbox.secret"       # relative to this file; or `secret = "..."`

Everything is checked when the file is read, and a mistake is a ConfigError naming the
file and the entry, so a typo stops the server at start instead of failing callbacks.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pointex.server import limits
from pointex.server.config import ConfigError, read_secret
from pointex.server.payments.port import PaymentProvider
from pointex.server.payments.sandbox_client import SandboxProvider
from pointex.server.payments.verification import (
    CallbackVerifier,
    ProviderSecret,
    ProviderSecrets,
)

KINDS: Final = frozenset({"sandbox"})
_ID: Final = re.compile(rf"[A-Za-z0-9_.:-]{{1,{limits.id_chars_max}}}")
_TOP_KEYS: Final = frozenset({"callback_window_s", "providers"})
_PROVIDER_KEYS: Final = frozenset({"kind", "target", "request_timeout_ms", "keys"})
_KEY_KEYS: Final = frozenset({"key_id", "secret", "secret_file"})


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One configured provider: its secrets, the callback window, where to create payments."""

    provider_id: str
    kind: str
    target: str
    request_timeout_ms: int
    secrets: ProviderSecrets
    window_s: int


def load_providers(path: Path) -> dict[str, ProviderSettings]:
    """Read and check the providers file; return the providers by id.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or an entry is invalid.
    """
    where = f"payment_providers_file: {path}"
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"{where}: cannot read: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{where}: not valid TOML: {error}") from None
    _only_keys(where, document, _TOP_KEYS)
    window_s = _int(
        where,
        document,
        "callback_window_s",
        limits.callback_window_s_default,
        low=1,
        high=limits.callback_window_s_max,
    )
    providers = document.get("providers", {})
    if not isinstance(providers, dict) or not providers:
        raise ConfigError(f"{where}: needs at least one [providers.<id>] table")
    if len(providers) > limits.providers_max:
        raise ConfigError(f"{where}: at most {limits.providers_max} providers")
    return {
        provider_id: _provider(where, path.parent, provider_id, entry, window_s)
        for provider_id, entry in providers.items()
    }


def build_verifier(providers: Mapping[str, ProviderSettings]) -> CallbackVerifier:
    """Return the callback verifier for the configured providers."""
    default_s = limits.callback_window_s_default
    windows = {settings.window_s for settings in providers.values()} or {default_s}
    # One file has one window; load_providers copies it into every provider.
    assert len(windows) == 1, windows
    return CallbackVerifier(
        {provider_id: settings.secrets for provider_id, settings in providers.items()},
        window_s=windows.pop(),
    )


def create_providers(providers: Mapping[str, ProviderSettings]) -> dict[str, PaymentProvider]:
    """Return an adapter for every configured provider, by provider id (close them at exit)."""
    created: dict[str, PaymentProvider] = {}
    for provider_id, settings in providers.items():
        assert settings.kind in KINDS, settings.kind
        created[provider_id] = SandboxProvider(
            provider_id=provider_id,
            target=settings.target,
            timeout_s=settings.request_timeout_ms / 1000,
        )
    return created


def _provider(
    where: str, base: Path, provider_id: str, entry: object, window_s: int
) -> ProviderSettings:
    here = f"{where}: providers.{provider_id}"
    if not _ID.fullmatch(provider_id):
        raise ConfigError(f"{here}: a provider id is 1-64 of A-Z a-z 0-9 _ . : -")
    if not isinstance(entry, dict):
        raise ConfigError(f"{here}: expected a table")
    _only_keys(here, entry, _PROVIDER_KEYS)
    kind = entry.get("kind", "sandbox")
    if kind not in KINDS:
        raise ConfigError(f"{here}: kind: expected one of {sorted(KINDS)}, got {kind!r}")
    target = entry.get("target")
    if not isinstance(target, str) or not _is_host_port(target):
        raise ConfigError(f"{here}: target: expected host:port, got {target!r}")
    keys = entry.get("keys")
    secrets_max = limits.provider_secrets_max
    if not isinstance(keys, list) or not 1 <= len(keys) <= secrets_max:
        raise ConfigError(f"{here}: keys: expected 1 to {secrets_max} [[keys]] entries")
    secrets = tuple(_key(f"{here}.keys[{n}]", base, key) for n, key in enumerate(keys))
    if len({secret.key_id for secret in secrets}) != len(secrets):
        raise ConfigError(f"{here}: keys: two keys have the same key_id")
    return ProviderSettings(
        provider_id=provider_id,
        kind=kind,
        target=target,
        request_timeout_ms=_int(
            here,
            entry,
            "request_timeout_ms",
            limits.provider_request_timeout_ms_default,
            low=1,
            high=limits.provider_request_timeout_ms_max,
        ),
        secrets=ProviderSecrets(provider_id, secrets),
        window_s=window_s,
    )


def _key(here: str, base: Path, entry: object) -> ProviderSecret:
    if not isinstance(entry, dict):
        raise ConfigError(f"{here}: expected a table")
    _only_keys(here, entry, _KEY_KEYS)
    key_id = entry.get("key_id")
    if not isinstance(key_id, str) or not _ID.fullmatch(key_id):
        raise ConfigError(f"{here}: key_id: expected 1-64 of A-Z a-z 0-9 _ . : -")
    text, file = entry.get("secret", ""), entry.get("secret_file", "")
    if not isinstance(text, str) or not isinstance(file, str):
        raise ConfigError(f"{here}: secret and secret_file are strings")
    # A relative secret file is found beside the providers file, wherever the server starts.
    path = str(base / file) if file else ""
    return ProviderSecret(key_id, read_secret(here, text, path))


def _only_keys(here: str, table: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{here}: unknown keys {unknown}; expected some of {sorted(allowed)}")


def _int(
    here: str, table: Mapping[str, Any], key: str, default: int, *, low: int, high: int
) -> int:
    value = table.get(key, default)
    # bool is an int in Python; `true` is not a number of seconds.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{here}: {key}: expected a whole number in {low}..{high}")
    return value


def _is_host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and int(port) <= 65535)  # noqa: PLR2004
