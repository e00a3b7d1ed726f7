"""Check a payment callback before it reaches a trade: syntax, provider, signature, time.

The contract (CommandService.ConfirmPayment) fixes the order of the checks: the caller's
provider binding, then field syntax, then the signature against each valid secret of the
provider, then the `signed_at` window. `CallbackVerifier.check` runs all of them in that
order; `validate_callback_fields` and `CallbackVerifier.verify` are its two halves.
Every rejection records nothing, so none of this touches a store.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pointex.client.callbacks import SIGNATURE_BYTES, sign
from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.grpc_edge.convert import identifier
from pointex.server.grpc_edge.status import InvalidRequest
from pointex.v1 import command_service_pb2, common_pb2

_LONG_ID: Final = re.compile(rf"[A-Za-z0-9_.:-]{{1,{limits.callback_id_chars_max}}}")
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_OUTCOMES: Final = frozenset(
    {common_pb2.PAYMENT_OUTCOME_CONFIRMED, common_pb2.PAYMENT_OUTCOME_FAILED}
)


@dataclass(frozen=True, slots=True)
class ProviderSecret:
    """One shared secret of a provider and the key id that names it."""

    key_id: str
    # Kept out of repr so that logging a configuration never prints a secret.
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        """Assert what the configuration loader has already checked."""
        assert self.key_id, "a secret needs a key id"
        assert len(self.secret) >= limits.provider_secret_bytes_min, self.key_id


@dataclass(frozen=True, slots=True)
class ProviderSecrets:
    """The currently valid secrets of one provider: one, or two while a key rotates."""

    provider_id: str
    keys: tuple[ProviderSecret, ...]

    def __post_init__(self) -> None:
        """Assert what the configuration loader has already checked."""
        assert 1 <= len(self.keys) <= limits.provider_secrets_max, self.provider_id
        assert len({key.key_id for key in self.keys}) == len(self.keys), self.provider_id


def _long_id(field_name: str, value: str) -> None:
    if _LONG_ID.fullmatch(value):
        return
    chars_max = limits.callback_id_chars_max
    if len(value) > chars_max:
        raise InvalidRequest(errors.FIELD_TOO_LONG, field_name, f"at most {chars_max} characters")
    raise InvalidRequest(errors.INVALID_FIELD, field_name, f"1-{chars_max} of A-Z a-z 0-9 _ . : -")


def validate_callback_fields(
    callback: command_service_pb2.PaymentCallback,
    *,
    outcome: common_pb2.PaymentOutcome.ValueType | None = None,
) -> None:
    """Raise InvalidArgument (INVALID_FIELD or FIELD_TOO_LONG) naming a malformed field.

    With `outcome`, the callback must carry exactly that outcome (CONFIRMED for
    ConfirmPayment, FAILED for FailPayment). The signature is not looked at here: its
    absence and its length are the verifier's (PERMISSION_DENIED) reasons.
    """
    identifier("callback.provider_id", callback.provider_id)
    _long_id("callback.payment_id", callback.payment_id)
    identifier("callback.trade_id", callback.trade_id)
    if callback.outcome not in _OUTCOMES or outcome not in {None, callback.outcome}:
        expected = "CONFIRMED or FAILED" if outcome is None else _outcome_name(outcome)
        raise InvalidRequest(errors.INVALID_FIELD, "callback.outcome", f"must be {expected}")
    if callback.amount.amount_minor <= 0:
        raise InvalidRequest(errors.INVALID_FIELD, "callback.amount", "must be positive")
    if not _CURRENCY.fullmatch(callback.amount.currency):
        raise InvalidRequest(
            errors.INVALID_FIELD, "callback.amount.currency", "three upper-case letters"
        )
    _long_id("callback.provider_event_id", callback.provider_event_id)
    if not callback.HasField("signed_at"):
        raise InvalidRequest(errors.INVALID_FIELD, "callback.signed_at", "required")
    if callback.key_id:
        identifier("callback.key_id", callback.key_id)


def _outcome_name(outcome: common_pb2.PaymentOutcome.ValueType) -> str:
    return common_pb2.PaymentOutcome.Name(outcome).removeprefix("PAYMENT_OUTCOME_")


class CallbackVerifier:
    """Decide whether a callback really comes from its provider, recently."""

    def __init__(self, providers: Mapping[str, ProviderSecrets], *, window_s: int) -> None:
        """Hold each provider's valid secrets and the accepted `signed_at` window (± seconds)."""
        assert window_s > 0, window_s
        for provider_id, secrets in providers.items():
            assert provider_id == secrets.provider_id, provider_id
        self._providers = dict(providers)
        self._window_s = window_s

    @property
    def window_s(self) -> int:
        """Return the accepted distance, in seconds, between `signed_at` and the server clock."""
        return self._window_s

    def check(
        self,
        callback: command_service_pb2.PaymentCallback,
        *,
        caller_provider_id: str | None,
        now_unix_s: int,
        outcome: common_pb2.PaymentOutcome.ValueType | None = None,
    ) -> None:
        """Run every check in the contract's order: binding, syntax, signature, window.

        Raises:
            PermissionDenied: see `verify`.
            InvalidArgument: see `validate_callback_fields`.
        """
        _check_binding(callback, caller_provider_id)
        validate_callback_fields(callback, outcome=outcome)
        self.verify(callback, caller_provider_id=caller_provider_id, now_unix_s=now_unix_s)

    def verify(
        self,
        callback: command_service_pb2.PaymentCallback,
        *,
        caller_provider_id: str | None,
        now_unix_s: int,
    ) -> None:
        """Raise PermissionDenied unless the callback is its caller's, signed and on time.

        `caller_provider_id` is the provider the caller's credential belongs to, or None when
        an operator calls (an operator may relay any provider's callback, still signed).
        Reasons, in order: PROVIDER_MISMATCH, UNKNOWN_PROVIDER, SIGNATURE_MISSING,
        SIGNATURE_INVALID (wrong length, an unknown or retired `key_id`, or no valid secret
        matches), SIGNATURE_EXPIRED (`signed_at` more than `window_s` from `now_unix_s`).
        """
        _check_binding(callback, caller_provider_id)
        secrets = self._providers.get(callback.provider_id)
        if secrets is None:
            raise errors.PermissionDenied(
                errors.UNKNOWN_PROVIDER,
                "no secrets are configured for this provider",
                field="callback.provider_id",
            )
        if not callback.signature:
            raise errors.PermissionDenied(errors.SIGNATURE_MISSING, "the callback is not signed")
        if not _signature_valid(callback, secrets):
            raise errors.PermissionDenied(
                errors.SIGNATURE_INVALID, "the signature does not match a valid secret"
            )
        if abs(now_unix_s - callback.signed_at.seconds) > self._window_s:
            raise errors.PermissionDenied(
                errors.SIGNATURE_EXPIRED,
                "signed_at is outside the accepted window; re-sign and redeliver",
                limit=str(self._window_s),
            )


def _check_binding(
    callback: command_service_pb2.PaymentCallback, caller_provider_id: str | None
) -> None:
    if caller_provider_id is not None and caller_provider_id != callback.provider_id:
        raise errors.PermissionDenied(
            errors.PROVIDER_MISMATCH,
            "the callback names another provider than the caller's credential",
            field="callback.provider_id",
        )


def _signature_valid(
    callback: command_service_pb2.PaymentCallback, secrets: ProviderSecrets
) -> bool:
    if len(callback.signature) != SIGNATURE_BYTES:
        return False
    if callback.key_id:
        candidates = [key for key in secrets.keys if key.key_id == callback.key_id]
        if not candidates:
            return False
    else:
        candidates = list(secrets.keys)
    try:
        expected = [sign(callback, key.secret) for key in candidates]
    except ValueError:
        # No canonical string (an outcome that is not CONFIRMED or FAILED): nothing matches.
        return False
    # Every candidate is compared, so the time taken does not tell which secret matched.
    matches = [hmac.compare_digest(digest, callback.signature) for digest in expected]
    return any(matches)
