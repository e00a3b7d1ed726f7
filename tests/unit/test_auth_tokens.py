"""The tokens table: who a bearer token is, what is remembered of it, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from pointex.server import limits
from pointex.server.domain.errors import Unauthenticated
from pointex.server.domain.values import Principal, Role
from pointex.server.grpc_edge.auth import TokenTable

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
