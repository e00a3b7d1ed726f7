"""Page tokens and notification cursors: opaque, signed, bound to the caller.

Layout (before base64url for page tokens; raw bytes for cursors):
``version (1) | kind (1) | caller tag (8) | filter digest (8) | payload | MAC (16)``.
The MAC is HMAC-SHA256 under the read store's secret (kept across restarts and rebuilds),
so a token this server did not issue is CURSOR_INVALID, one issued to another caller is
NOT_OWNER, and one reused with other filters is CURSOR_INVALID. Notification cursors carry
`(position, index)`, which every rebuild reproduces, so they stay valid across rebuilds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Iterable

from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.domain.values import Principal
from pointex.server.grpc_edge.status import InvalidRequest

_VERSION = 1
_TAG_BYTES = 8
_DIGEST_BYTES = 8
_MAC_BYTES = 16
_HEADER = struct.Struct(f">BB{_TAG_BYTES}s{_DIGEST_BYTES}s")
_CURSOR_PAYLOAD = struct.Struct(">QI")
_NO_FILTER = bytes(_DIGEST_BYTES)

# The reason of a malformed, forged or misused token (pointex.v1.ErrorReason).
CURSOR_INVALID = "CURSOR_INVALID"

KIND_ACCOUNTS = ord("A")
KIND_HISTORY = ord("H")
KIND_NOTIFICATION = ord("N")
KIND_ORDERS = ord("O")
KIND_TRADES = ord("T")


def filter_digest(parts: Iterable[object]) -> bytes:
    """Return a digest of a request's filters (their canonical text), for binding tokens."""
    text = "\x1f".join(repr(part) for part in parts)
    return hashlib.sha256(text.encode()).digest()[:_DIGEST_BYTES]


class TokenCodec:
    """Issue and check tokens under one secret."""

    def __init__(self, secret: bytes) -> None:
        """Sign with `secret` (at least 16 bytes)."""
        assert len(secret) >= 16, "the token secret is too short"  # noqa: PLR2004
        self._secret = secret

    def _tag(self, caller: Principal) -> bytes:
        who = f"{caller.role.value}\x1f{caller.principal_id}".encode()
        return hmac.new(self._secret, b"caller\x1f" + who, hashlib.sha256).digest()[:_TAG_BYTES]

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def _seal(self, kind: int, caller: Principal, digest: bytes, payload: bytes) -> bytes:
        body = _HEADER.pack(_VERSION, kind, self._tag(caller), digest) + payload
        return body + self._mac(body)

    def _open(self, data: bytes, kind: int, caller: Principal, digest: bytes, field: str) -> bytes:
        invalid = InvalidRequest(CURSOR_INVALID, field, "not a token of this listing")
        if len(data) < _HEADER.size + _MAC_BYTES:
            raise invalid
        body, mac = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise invalid
        version, found_kind, tag, found_digest = _HEADER.unpack_from(body)
        if version != _VERSION or found_kind != kind:
            raise invalid
        if not hmac.compare_digest(tag, self._tag(caller)):
            raise errors.PermissionDenied(
                errors.NOT_OWNER, "the token was issued to another caller", field=field
            )
        if found_digest != digest:
            raise InvalidRequest(CURSOR_INVALID, field, "issued for other filters")
        return body[_HEADER.size :]

    def page_token(self, kind: int, caller: Principal, digest: bytes, payload: bytes) -> str:
        """Return the `next_page_token` resuming after `payload` (a key of the listing)."""
        return base64.urlsafe_b64encode(self._seal(kind, caller, digest, payload)).decode()

    def read_page_token(
        self, token: str, kind: int, caller: Principal, digest: bytes, field: str = "page_token"
    ) -> bytes:
        """Return the key a `page_token` resumes after.

        Raises:
            InvalidRequest: CURSOR_INVALID (malformed, forged, or other filters).
            PermissionDenied: NOT_OWNER (issued to another caller).
        """
        if len(token) > limits.page_token_chars_max:
            raise InvalidRequest(CURSOR_INVALID, field, "not a token of this listing")
        try:
            data = base64.urlsafe_b64decode(token.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise InvalidRequest(CURSOR_INVALID, field, "not a token of this listing") from None
        return self._open(data, kind, caller, digest, field)

    def cursor(self, caller: Principal, position: int, index: int) -> bytes:
        """Return the notification cursor of `(position, index)` for `caller`."""
        payload = _CURSOR_PAYLOAD.pack(position, index)
        return self._seal(KIND_NOTIFICATION, caller, _NO_FILTER, payload)

    def read_cursor(self, data: bytes, caller: Principal) -> tuple[int, int]:
        """Return the `(position, index)` a notification cursor resumes after."""
        if len(data) > limits.notification_cursor_bytes_max:
            raise InvalidRequest(
                errors.FIELD_TOO_LONG, "cursor", f"at most {limits.notification_cursor_bytes_max}"
            )
        payload = self._open(data, KIND_NOTIFICATION, caller, _NO_FILTER, "cursor")
        if len(payload) != _CURSOR_PAYLOAD.size:
            raise InvalidRequest(CURSOR_INVALID, "cursor", "not a notification cursor")
        position, index = _CURSOR_PAYLOAD.unpack(payload)
        return int(position), int(index)
