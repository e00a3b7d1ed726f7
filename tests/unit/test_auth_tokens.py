"""The tokens table: who a bearer token is, what is remembered of it, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from pointex.client import token_file
from pointex.server import limits
from pointex.server.domain.errors import Unauthenticated
from pointex.server.domain.values import Principal, Role
from pointex.server.grpc_edge.auth import TokenTable
from pointex.server.overload import Overloaded

OPERATOR_TOKEN = "operator-token-0123456789"
PARTNER_TOKEN = "partner-token-0123456789"


@pytest.fixture
def table(tmp_path: Path) -> TokenTable:
    """A table read from a file with an operator, a partner and comments."""
    path = tmp_path / "tokens"
    path.write_text(
        f"operator ops {OPERATOR_TOKEN}\n# a comment\npartner acme {PARTNER_TOKEN}  # trailing\n"
    )
    return TokenTable.from_file(path)


def _header(token: str) -> tuple[tuple[str, str], ...]:
    return (("x-other", "1"), ("authorization", f"Bearer {token}"))


def _reason(table: TokenTable, metadata: object) -> str:
    with pytest.raises(Unauthenticated) as caught:
        table.authenticate(metadata)
    return caught.value.reason


def test_each_token_names_its_principal_every_time(table: TokenTable) -> None:
    """Repeated calls (answered from the remembered headers) give the same principals."""
    for _ in range(3):
        assert table.authenticate(_header(OPERATOR_TOKEN)) == Principal("ops", Role.OPERATOR)
        assert table.authenticate(_header(PARTNER_TOKEN)) == Principal("acme", Role.PARTNER)


def test_unknown_and_missing_tokens_are_refused_every_time(table: TokenTable) -> None:
    """A valid call in between does not make an unknown token or a missing header pass."""
    for _ in range(2):
        assert _reason(table, _header("not-a-known-token-at-all")) == "TOKEN_INVALID"
        assert _reason(table, _header(OPERATOR_TOKEN + "x")) == "TOKEN_INVALID"
        assert _reason(table, (("x-other", "1"),)) == "TOKEN_MISSING"
        assert _reason(table, _header("")) == "TOKEN_INVALID"
        table.authenticate(_header(OPERATOR_TOKEN))


def test_remembered_headers_are_bounded(table: TokenTable, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound, spacing variants of a valid token still authenticate, none is kept."""
    monkeypatch.setattr(limits, "proven_tokens_max", 2)
    for spaces in range(1, 6):
        metadata = (("authorization", "Bearer " + OPERATOR_TOKEN + " " * spaces),)
        assert table.authenticate(metadata) == Principal("ops", Role.OPERATOR)
    assert len(table._proven) == 2  # The bound is what is tested.


# --- The tokens file: digests, rotation, revocation, reloading ----------------------------


def test_a_created_token_is_stored_as_its_digest_only(tmp_path: Path) -> None:
    """`add` returns the token once; the file holds its SHA-256, and the table accepts it."""
    path = tmp_path / "tokens"
    token, entry = token_file.add(path, "partner", "acme")
    text = path.read_text()
    assert token not in text
    assert f"sha256:{token_file.digest(token).hex()}" in text
    assert (entry.role, entry.principal_id, entry.hashed) == ("partner", "acme", True)
    assert path.stat().st_mode & 0o777 == 0o600
    table = TokenTable.from_file(path)
    assert table.authenticate(_header(token)) == Principal("acme", Role.PARTNER)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("partner acme\n", "expected <role> <principal_id> <token>"),
        ("admin root sha256:" + "0" * 64 + "\n", "unknown role"),
        ("partner acme short\n", "16 or more characters"),
        ("partner acme sha256:" + "0" * 63 + "\n", "64 hex digits"),
        ("partner a/b " + "t" * 20 + "\n", "principal id"),
        (f"partner a {'t' * 20}\npartner b {'t' * 20}\n", "listed twice"),
        ("# only a comment\n", "no tokens"),
    ],
)
def test_a_file_the_servers_cannot_use_is_refused_naming_the_line(text: str, message: str) -> None:
    """Every refusal names the file and, for a bad line, its number."""
    with pytest.raises(token_file.TokenFileError, match=message) as refused:
        token_file.parse(text, "tokens")
    assert str(refused.value).startswith("tokens")


def test_a_rotation_keeps_both_tokens_valid_until_the_old_one_is_revoked(tmp_path: Path) -> None:
    """Add a second token for acme; both work; revoke the first by its id; it stops working."""
    path = tmp_path / "tokens"
    token_file.add(path, "operator", "ops")
    old, old_entry = token_file.add(path, "partner", "acme")
    table = TokenTable.from_file(path)
    assert table.authenticate(_header(old)).principal_id == "acme"
    new, _ = token_file.add(path, "partner", "acme")
    assert table.reload_if_changed()
    assert table.authenticate(_header(old)) == table.authenticate(_header(new))
    revoked = token_file.revoke(path, old_entry.token_id[:8])
    assert revoked.digest == old_entry.digest
    assert table.reload_if_changed()
    assert _reason(table, _header(old)) == "TOKEN_INVALID"  # Not remembered across a reload.
    assert table.authenticate(_header(new)).principal_id == "acme"
    assert not table.reload_if_changed()  # Nothing changed since.


def test_revoke_refuses_an_ambiguous_id_and_the_last_token(tmp_path: Path) -> None:
    """A short, unknown or shared id, and the file's only token, are refused; nothing changes."""
    path = tmp_path / "tokens"
    _, only = token_file.add(path, "operator", "ops")
    with pytest.raises(token_file.TokenFileError, match="last token"):
        token_file.revoke(path, only.token_id)
    with pytest.raises(token_file.TokenFileError, match="at least"):
        token_file.revoke(path, only.token_id[:3])
    with pytest.raises(token_file.TokenFileError, match="no token"):
        token_file.revoke(path, "ffffffffffff" if not only.token_id.startswith("f") else "000000")
    assert token_file.read(path) == [only]


def test_an_unusable_file_keeps_the_tokens_in_use(tmp_path: Path) -> None:
    """A reload that meets a broken file logs it and keeps serving with the last good tokens."""
    path = tmp_path / "tokens"
    token, _ = token_file.add(path, "partner", "acme")
    table = TokenTable.from_file(path)
    path.write_text("partner acme\n")
    assert not table.reload_if_changed()
    assert table.authenticate(_header(token)).principal_id == "acme"
    path.unlink()
    assert not table.reload_if_changed()
    assert table.authenticate(_header(token)).principal_id == "acme"


def test_a_peer_that_fails_too_often_is_refused_but_a_proven_token_still_works(
    table: TokenTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the failures allowed, even a valid but new header is refused; others are not."""
    monkeypatch.setattr(limits, "auth_failures_per_peer_max", 3)
    table.authenticate(_header(PARTNER_TOKEN), lambda: "ipv4:10.0.0.1:4000")  # Proven before.
    for port in range(3):
        assert _reason_from(table, "not-a-known-token-at-all", f"ipv4:10.0.0.1:{port}")
    with pytest.raises(Overloaded) as limited:
        table.authenticate(_header(OPERATOR_TOKEN), lambda: "ipv4:10.0.0.1:5000")
    assert limited.value.reason == "AUTH_RATE_LIMITED"
    assert 0 < limited.value.retry_after_ms <= limits.auth_failure_window_ms
    proven = table.authenticate(_header(PARTNER_TOKEN), lambda: "ipv4:10.0.0.1:6000")
    assert proven.principal_id == "acme"
    elsewhere = table.authenticate(_header(OPERATOR_TOKEN), lambda: "ipv4:10.0.0.2:1")
    assert elsewhere.principal_id == "ops"
    assert (table.failures, table.rate_limited) == (3, 1)


def _reason_from(table: TokenTable, token: str, peer: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        table.authenticate(_header(token), lambda: peer)
    return caught.value.reason
