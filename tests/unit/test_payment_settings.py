"""Payment settings: the sandbox provider's settings and the command server's providers file."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from pointex.server.config import ConfigError, command_config, sandbox_config
from pointex.server.payments.providers import build_verifier, create_providers, load_providers

TOKEN = "cb-0123456789abcdef"
SECRET = "whsec_0123456789abcdef"


@pytest.fixture
def sandbox_env() -> dict[str, str]:
    """The least a sandbox provider needs: a secret and a callback token."""
    return {"POINTEX_PROVIDER_SECRET": SECRET, "POINTEX_CALLBACK_TOKEN": TOKEN}


def test_sandbox_defaults(sandbox_env: dict[str, str]) -> None:
    """With a secret and a token only, the sandbox listens on :50053 and confirms after 1 s."""
    config = sandbox_config([], env=sandbox_env)
    assert config.listen == "127.0.0.1:50053"
    assert config.command_target == "127.0.0.1:50051"
    assert config.provider_id == "sandbox"
    assert config.key_id == ""
    assert config.secret == SECRET.encode()
    assert config.callback_token == TOKEN
    assert (config.delay_ms, config.failure_rate_bps, config.duplicate_rate_bps) == (1000, 0, 0)
    assert SECRET not in repr(config)
    assert TOKEN not in repr(config)


def test_sandbox_reads_secret_and_token_files(tmp_path: Path) -> None:
    """Secret and token may come from files; a final newline is ignored."""
    secret, token = tmp_path / "secret", tmp_path / "token"
    secret.write_text(SECRET + "\n")
    token.write_text(TOKEN + "\n")
    config = sandbox_config(
        ["--provider-secret-file", str(secret), "--callback-token-file", str(token)], env={}
    )
    assert config.secret == SECRET.encode()
    assert config.callback_token == TOKEN


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"POINTEX_PROVIDER_SECRET": ""}, "provider_secret"),
        ({"POINTEX_PROVIDER_SECRET": "short"}, "provider_secret"),
        ({"POINTEX_PROVIDER_SECRET_FILE": "/nonexistent/secret"}, "provider_secret"),
        ({"POINTEX_CALLBACK_TOKEN": ""}, "callback_token"),
        ({"POINTEX_CALLBACK_TOKEN_FILE": "/nonexistent/token"}, "callback_token"),
        ({"POINTEX_PROVIDER_ID": "has space"}, "provider_id"),
        ({"POINTEX_PROVIDER_KEY_ID": "k" * 65}, "provider_key_id"),
        ({"POINTEX_PAYMENT_DELAY_MS": "-1"}, "payment_delay_ms"),
        ({"POINTEX_PAYMENT_FAILURE_RATE_BPS": "10001"}, "payment_failure_rate_bps"),
        ({"POINTEX_PAYMENT_FAILURE_RATE_BPS": "0.5"}, "payment_failure_rate_bps"),
        ({"POINTEX_CALLBACK_DUPLICATE_RATE_BPS": "-3"}, "callback_duplicate_rate_bps"),
        ({"POINTEX_COMMAND_TARGET": "nohostport"}, "command_target"),
    ],
)
def test_sandbox_invalid_values_name_the_setting(
    sandbox_env: dict[str, str], env: dict[str, str], named: str
) -> None:
    """Every invalid sandbox value raises ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=named):
        sandbox_config([], env={**sandbox_env, **env})


def test_secret_and_secret_file_are_exclusive(sandbox_env: dict[str, str], tmp_path: Path) -> None:
    """A secret given both inline and as a file is ambiguous and refused."""
    path = tmp_path / "secret"
    path.write_text(SECRET)
    with pytest.raises(ConfigError, match="exactly one"):
        sandbox_config([], env={**sandbox_env, "POINTEX_PROVIDER_SECRET_FILE": str(path)})


def _tokens(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "tokens"
    path.write_text("operator ops 0123456789abcdef0123\n")
    return {"POINTEX_AUTH_TOKENS_FILE": str(path)}


def test_command_server_names_its_providers_file(tmp_path: Path) -> None:
    """The providers file is optional; when named it must exist."""
    env = _tokens(tmp_path)
    assert command_config([], env=env).payment_providers_file is None
    providers = tmp_path / "providers.toml"
    providers.write_text("")
    named = command_config(["--payment-providers-file", str(providers)], env=env)
    assert named.payment_providers_file == providers
    with pytest.raises(ConfigError, match="payment_providers_file"):
        command_config([], env={**env, "POINTEX_PAYMENT_PROVIDERS_FILE": str(tmp_path / "none")})


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"providers-{secrets.token_hex(3)}.toml"
    path.write_text(text)
    return path


async def test_load_providers_with_rotation_and_a_secret_file(tmp_path: Path) -> None:
    """A provider with two keys, one inline and one in a file beside the providers file."""
    (tmp_path / "sandbox.secret").write_text("file-secret-0123456789\n")
    path = _write(
        tmp_path,
        """
callback_window_s = 120
[providers.sandbox]
kind = "sandbox"
target = "127.0.0.1:50053"
[[providers.sandbox.keys]]
key_id = "old"
secret_file = "sandbox.secret"
[[providers.sandbox.keys]]
key_id = "new"
secret = "inline-secret-0123456789"
""",
    )
    providers = load_providers(path)
    sandbox = providers["sandbox"]
    assert sandbox.target == "127.0.0.1:50053"
    assert sandbox.request_timeout_ms == 5000
    assert sandbox.window_s == 120
    assert [(k.key_id, k.secret) for k in sandbox.secrets.keys] == [
        ("old", b"file-secret-0123456789"),
        ("new", b"inline-secret-0123456789"),
    ]
    assert build_verifier(providers).window_s == 120
    adapters = create_providers(providers)
    assert {a.provider_id for a in adapters.values()} == {"sandbox"}
    for adapter in adapters.values():
        await adapter.close()


_KEY = '[[providers.p.keys]]\nkey_id = "k1"\nsecret = "' + SECRET + '"\n'
_HEAD = '[providers.p]\ntarget = "127.0.0.1:1"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not = [toml", "not valid TOML"),
        ("", "at least one"),
        ("colour = 1\n" + _HEAD + _KEY, "unknown keys"),
        ("callback_window_s = 0\n" + _HEAD + _KEY, "callback_window_s"),
        ("callback_window_s = true\n" + _HEAD + _KEY, "callback_window_s"),
        ('[providers."bad id"]\ntarget = "h:1"\n', "provider id"),
        ('[providers.p]\nkind = "stripe"\ntarget = "h:1"\n' + _KEY, "kind"),
        ('[providers.p]\ntarget = "nohostport"\n' + _KEY, "target"),
        (_HEAD, "keys"),
        (_HEAD + _KEY + _KEY.replace("k1", "k2") + _KEY.replace("k1", "k3"), "keys"),
        (_HEAD + _KEY + _KEY, "same key_id"),
        (_HEAD + '[[providers.p.keys]]\nkey_id = "k1"\n', "exactly one"),
        (_HEAD + '[[providers.p.keys]]\nkey_id = "k1"\nsecret = "short"\n', "16 or more"),
        (_HEAD + '[[providers.p.keys]]\nsecret = "' + SECRET + '"\n', "key_id"),
        (_HEAD + '[[providers.p.keys]]\nkey_id = "k1"\nsecret_file = "missing"\n', "cannot read"),
        (_HEAD + "request_timeout_ms = 0\n" + _KEY, "request_timeout_ms"),
    ],
)
def test_bad_providers_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """Every mistake in the providers file is a ConfigError naming the file and the problem."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_providers(path)
    assert str(path) in str(caught.value)
    assert SECRET not in str(caught.value)


def test_unreadable_providers_file(tmp_path: Path) -> None:
    """A providers file that cannot be read is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_providers(tmp_path / "absent.toml")
