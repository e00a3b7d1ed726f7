"""The bearer-token file both servers read and `pointex admin token` writes.

One credential a line: `<role> <principal_id> sha256:<64 hex digits>`, where the digits
are the SHA-256 of the token; `#` starts a comment. Role is operator, partner,
payment_provider or query_server; a partner's principal id is its partner (tenant) id. A
file of digests gives nothing away when it is read: the tokens themselves exist only where
they were handed out. A line may instead hold the token itself (`<role> <principal_id>
<token>`, 16 characters or more): the servers accept it and warn, so that an older file
keeps working until it is converted.

A principal may have several lines, so a token is rotated without a gap: add the new one,
move the clients to it, revoke the old one. The servers read the file again when it changes.
A token's id is the first 12 hex digits of its digest: `list` shows it, `revoke` takes it.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROLES: Final = ("operator", "partner", "payment_provider", "query_server")
TOKEN_PREFIX: Final = "ptx_"  # noqa: S105 - a prefix, not a secret.
TOKEN_CLEAR_CHARS_MIN: Final = 16
TOKEN_ID_CHARS: Final = 12
_HASHED = re.compile(r"sha256:([0-9a-f]{64})")
_PRINCIPAL = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class TokenFileError(ValueError):
    """The tokens file cannot be used; the message names the file and the line."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One credential of the file."""

    role: str
    principal_id: str
    digest: bytes
    hashed: bool  # False: the line holds the token itself
    line: int

    @property
    def token_id(self) -> str:
        """Return the token's public id: the first hex digits of its digest."""
        return self.digest.hex()[:TOKEN_ID_CHARS]


def digest(token: str) -> bytes:
    """Return the SHA-256 of a token, as the file stores it."""
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    """Return a fresh token: 256 random bits, URL-safe, with a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse(text: str, source: str) -> list[Entry]:
    """Return the credentials of a file's text; raise TokenFileError naming a bad line."""
    entries: list[Entry] = []
    seen: set[bytes] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:  # noqa: PLR2004 - role, principal, token.
            raise TokenFileError(f"{source}:{number}: expected <role> <principal_id> <token>")
        role, principal_id, secret = parts
        if role.lower() not in ROLES:
            raise TokenFileError(f"{source}:{number}: unknown role {role!r}")
        if not _PRINCIPAL.fullmatch(principal_id):
            raise TokenFileError(f"{source}:{number}: a principal id is 1-64 id characters")
        hashed = _HASHED.fullmatch(secret)
        if hashed is None and secret.startswith("sha256:"):
            raise TokenFileError(f"{source}:{number}: a digest is sha256: and 64 hex digits")
        if hashed is None and len(secret) < TOKEN_CLEAR_CHARS_MIN:
            raise TokenFileError(
                f"{source}:{number}: a token needs {TOKEN_CLEAR_CHARS_MIN} or more characters"
            )
        value = bytes.fromhex(hashed.group(1)) if hashed else digest(secret)
        if value in seen:
            raise TokenFileError(f"{source}:{number}: this token is listed twice")
        seen.add(value)
        entries.append(Entry(role.lower(), principal_id, value, hashed is not None, number))
    if not entries:
        raise TokenFileError(f"{source}: no tokens")
    return entries


def read(path: Path) -> list[Entry]:
    """Return the credentials of the file at `path`."""
    try:
        text = path.read_text()
    except OSError as error:
        raise TokenFileError(f"{path}: {error.strerror or error}") from None
    return parse(text, str(path))


def add(path: Path, role: str, principal_id: str) -> tuple[str, Entry]:
    """Add a new token for `principal_id` to the file (created if missing); return it.

    Only the token's digest is written; the token is returned once, to be handed out.
    """
    role = role.lower()
    token = new_token()
    line = f"{role} {principal_id} sha256:{digest(token).hex()}\n"
    existing = path.read_text() if path.exists() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    text = existing + line
    entries = parse(text, str(path))  # Refuse to write a file the servers would refuse.
    _write(path, text)
    return token, entries[-1]


def revoke(path: Path, token_id: str) -> Entry:
    """Remove the one credential whose id starts with `token_id`; return it.

    Refused when no credential or more than one matches, or when it is the file's last.
    """
    token_id = token_id.lower()
    if len(token_id) < TOKEN_ID_CHARS // 2:
        raise TokenFileError(f"give at least {TOKEN_ID_CHARS // 2} characters of the token id")
    entries = read(path)
    matching = [e for e in entries if e.digest.hex().startswith(token_id)]
    if len(matching) != 1:
        found = "no token" if not matching else f"{len(matching)} tokens"
        raise TokenFileError(f"{path}: {found} with an id starting {token_id!r}")
    if len(entries) == 1:
        raise TokenFileError(f"{path}: this is the last token; nobody could call the servers")
    (revoked,) = matching
    lines = path.read_text().splitlines(keepends=True)
    del lines[revoked.line - 1]
    _write(path, "".join(lines))
    return revoked


def _write(path: Path, text: str) -> None:
    """Replace the file at once (readers see the old or the new file), readable by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).chmod(0o600)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
