"""Server-side callback checks: every rejection reason, key rotation, key ids, the window."""

from __future__ import annotations

import secrets

import pytest

from pointex.client.callbacks import sign
from pointex.server.domain import errors
from pointex.server.payments.verification import (
    CallbackVerifier,
    ProviderSecret,
    ProviderSecrets,
    validate_callback_fields,
)
from pointex.v1 import command_service_pb2, common_pb2, errors_pb2

NOW_S = 1_767_225_600
WINDOW_S = 300


def _secret() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def provider_id() -> str:
    """A random provider id, so no test depends on another's names."""
    return f"prov-{secrets.token_hex(4)}"


@pytest.fixture
def old() -> ProviderSecret:
    """The secret a provider is rotating away from."""
    return ProviderSecret(f"k-old-{secrets.token_hex(3)}", _secret())


@pytest.fixture
def new() -> ProviderSecret:
    """The secret a provider is rotating to."""
    return ProviderSecret(f"k-new-{secrets.token_hex(3)}", _secret())


@pytest.fixture
def verifier(provider_id: str, old: ProviderSecret, new: ProviderSecret) -> CallbackVerifier:
    """A verifier knowing one provider with two valid secrets (a rotation in progress)."""
    return CallbackVerifier(
        {provider_id: ProviderSecrets(provider_id, (old, new))}, window_s=WINDOW_S
    )


def callback(
    provider_id: str, key: ProviderSecret | None, *, signed_at_s: int = NOW_S, key_id: str = ""
) -> command_service_pb2.PaymentCallback:
    """Return a well-formed callback, signed with `key` when given."""
    message = command_service_pb2.PaymentCallback(
        provider_id=provider_id,
        payment_id=f"pay_{secrets.token_hex(6)}",
        trade_id=f"T-{secrets.token_hex(4)}",
        outcome=common_pb2.PAYMENT_OUTCOME_CONFIRMED,
        amount=common_pb2.Money(amount_minor=12550, currency="CNY"),
        provider_event_id=f"evt_{secrets.token_hex(6)}",
        key_id=key_id,
    )
    message.signed_at.seconds = signed_at_s
    if key is not None:
        message.signature = sign(message, key.secret)
    return message


def _reason(error: pytest.ExceptionInfo[errors.DomainError]) -> str:
    return error.value.reason


def test_reasons_are_error_reason_names() -> None:
    """Every reason the verifier raises is a pointex.v1.ErrorReason value name."""
    for reason in (
        errors.PROVIDER_MISMATCH,
        errors.UNKNOWN_PROVIDER,
        errors.SIGNATURE_MISSING,
        errors.SIGNATURE_INVALID,
        errors.SIGNATURE_EXPIRED,
    ):
        assert errors_pb2.ErrorReason.Value(f"ERROR_REASON_{reason}") > 0


def test_signed_with_either_secret_during_rotation(
    verifier: CallbackVerifier, provider_id: str, old: ProviderSecret, new: ProviderSecret
) -> None:
    """While a key rotates, a callback signed with the old or the new secret is accepted."""
    for key in (old, new):
        verifier.verify(
            callback(provider_id, key), caller_provider_id=provider_id, now_unix_s=NOW_S
        )


def test_operator_may_relay_a_signed_callback(
    verifier: CallbackVerifier, provider_id: str, new: ProviderSecret
) -> None:
    """No caller provider (an operator) skips the binding check but not the signature."""
    verifier.verify(callback(provider_id, new), caller_provider_id=None, now_unix_s=NOW_S)


def test_key_id_names_the_secret(
    verifier: CallbackVerifier, provider_id: str, old: ProviderSecret, new: ProviderSecret
) -> None:
    """With key_id set, only that secret is tried: the right one passes, the other fails."""
    verifier.verify(
        callback(provider_id, new, key_id=new.key_id), caller_provider_id=None, now_unix_s=NOW_S
    )
    with pytest.raises(errors.PermissionDenied) as caught:
        verifier.verify(
            callback(provider_id, new, key_id=old.key_id), caller_provider_id=None, now_unix_s=NOW_S
        )
    assert _reason(caught) == errors.SIGNATURE_INVALID


def test_provider_mismatch(
    verifier: CallbackVerifier, provider_id: str, new: ProviderSecret
) -> None:
    """A provider's credential cannot deliver a callback naming another provider."""
    with pytest.raises(errors.PermissionDenied) as caught:
        verifier.verify(
            callback(provider_id, new), caller_provider_id="someone-else", now_unix_s=NOW_S
        )
    assert _reason(caught) == errors.PROVIDER_MISMATCH
    assert caught.value.metadata["field"] == "callback.provider_id"


def test_provider_mismatch_comes_before_unknown_provider(verifier: CallbackVerifier) -> None:
    """The binding is checked first, so an unknown provider id from another caller is a mismatch."""
    with pytest.raises(errors.PermissionDenied) as caught:
        verifier.verify(callback("nobody", None), caller_provider_id="sandbox", now_unix_s=NOW_S)
    assert _reason(caught) == errors.PROVIDER_MISMATCH


def test_unknown_provider(verifier: CallbackVerifier, new: ProviderSecret) -> None:
    """A provider id with no configured secrets is refused."""
    with pytest.raises(errors.PermissionDenied) as caught:
        verifier.verify(callback("unconfigured", new), caller_provider_id=None, now_unix_s=NOW_S)
    assert _reason(caught) == errors.UNKNOWN_PROVIDER


def test_signature_missing(verifier: CallbackVerifier, provider_id: str) -> None:
    """A callback without a signature is refused before any HMAC is computed."""
    with pytest.raises(errors.PermissionDenied) as caught:
        verifier.verify(
            callback(provider_id, None), caller_provider_id=provider_id, now_unix_s=NOW_S
        )
    assert _reason(caught) == errors.SIGNATURE_MISSING


@pytest.mark.parametrize("length", [1, 31, 33, 64])
def test_signature_invalid_length(
    verifier: CallbackVerifier, provider_id: str, new: ProviderSecret, length: int
) -> None:
    """A signature that is not exactly 32 raw bytes (hex, truncated, padded) is invalid."""
    message = callback(provider_id, new)
    message.signature = (message.signature * 2)[:length]
    with pytest.raises(errors.PermissionDenied) as caught:
        verifier.verify(message, caller_provider_id=provider_id, now_unix_s=NOW_S)
    assert _reason(caught) == errors.SIGNATURE_INVALID


def test_signature_invalid_under_a_foreign_secret(
    verifier: CallbackVerifier, provider_id: str
) -> None:
    """A signature made with a secret the provider does not have is invalid."""
    stranger = ProviderSecret("k-stranger", _secret())
    with pytest.raises(errors.PermissionDenied) as caught:
        verifier.verify(callback(provider_id, stranger), caller_provider_id=None, now_unix_s=NOW_S)
    assert _reason(caught) == errors.SIGNATURE_INVALID


def test_signature_invalid_after_tampering(
    verifier: CallbackVerifier, provider_id: str, new: ProviderSecret
) -> None:
    """Changing a signed field after signing (here the amount) invalidates the signature."""
    message = callback(provider_id, new)
    message.amount.amount_minor += 1
    with pytest.raises(errors.PermissionDenied) as caught:
        verifier.verify(message, caller_provider_id=None, now_unix_s=NOW_S)
    assert _reason(caught) == errors.SIGNATURE_INVALID


@pytest.mark.parametrize("key_id", ["k-unknown", "k-retired"])
def test_signature_invalid_for_unknown_or_retired_key_id(
    provider_id: str, old: ProviderSecret, new: ProviderSecret, key_id: str
) -> None:
    """A key id the provider no longer has (retired by a rotation) is invalid, even if it signed."""
    retired = ProviderSecret("k-retired", old.secret)
    after_rotation = CallbackVerifier(
        {provider_id: ProviderSecrets(provider_id, (new,))}, window_s=WINDOW_S
    )
    with pytest.raises(errors.PermissionDenied) as caught:
        after_rotation.verify(
            callback(provider_id, retired, key_id=key_id), caller_provider_id=None, now_unix_s=NOW_S
        )
    assert _reason(caught) == errors.SIGNATURE_INVALID


def test_retired_secret_without_key_id_is_invalid(
    provider_id: str, old: ProviderSecret, new: ProviderSecret
) -> None:
    """Once rotation ends, a callback signed with the old secret no longer matches."""
    after_rotation = CallbackVerifier(
        {provider_id: ProviderSecrets(provider_id, (new,))}, window_s=WINDOW_S
    )
    with pytest.raises(errors.PermissionDenied) as caught:
        after_rotation.verify(callback(provider_id, old), caller_provider_id=None, now_unix_s=NOW_S)
    assert _reason(caught) == errors.SIGNATURE_INVALID


@pytest.mark.parametrize("offset_s", [-WINDOW_S, -1, 0, 1, WINDOW_S])
def test_window_edges_inside(
    verifier: CallbackVerifier, provider_id: str, new: ProviderSecret, offset_s: int
) -> None:
    """A signed_at up to window_s before or after the server clock is accepted."""
    message = callback(provider_id, new, signed_at_s=NOW_S + offset_s)
    verifier.verify(message, caller_provider_id=provider_id, now_unix_s=NOW_S)


@pytest.mark.parametrize("offset_s", [-WINDOW_S - 1, WINDOW_S + 1, -86_400])
def test_signature_expired(
    verifier: CallbackVerifier, provider_id: str, new: ProviderSecret, offset_s: int
) -> None:
    """A signed_at one second or more past the window, either way, is expired."""
    message = callback(provider_id, new, signed_at_s=NOW_S + offset_s)
    with pytest.raises(errors.PermissionDenied) as caught:
        verifier.verify(message, caller_provider_id=provider_id, now_unix_s=NOW_S)
    assert _reason(caught) == errors.SIGNATURE_EXPIRED
    assert caught.value.metadata["limit"] == str(WINDOW_S)


def test_invalid_signature_is_reported_before_expiry(
    verifier: CallbackVerifier, provider_id: str
) -> None:
    """A callback both badly signed and stale is SIGNATURE_INVALID: the signature comes first."""
    stranger = ProviderSecret("k-stranger", _secret())
    message = callback(provider_id, stranger, signed_at_s=NOW_S - 10 * WINDOW_S)
    with pytest.raises(errors.PermissionDenied) as caught:
        verifier.verify(message, caller_provider_id=None, now_unix_s=NOW_S)
    assert _reason(caught) == errors.SIGNATURE_INVALID


def _set(message: command_service_pb2.PaymentCallback, path: str, value: object) -> None:
    target: object = message
    *parents, leaf = path.split(".")
    for name in parents:
        target = getattr(target, name)
    setattr(target, leaf, value)


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("provider_id", "", errors.INVALID_FIELD),
        ("provider_id", "has space", errors.INVALID_FIELD),
        ("provider_id", "p" * 65, errors.FIELD_TOO_LONG),
        ("payment_id", "", errors.INVALID_FIELD),
        ("payment_id", "pay\nment", errors.INVALID_FIELD),
        ("payment_id", "p" * 129, errors.FIELD_TOO_LONG),
        ("trade_id", "", errors.INVALID_FIELD),
        ("trade_id", "t" * 65, errors.FIELD_TOO_LONG),
        ("outcome", common_pb2.PAYMENT_OUTCOME_UNSPECIFIED, errors.INVALID_FIELD),
        ("outcome", 7, errors.INVALID_FIELD),
        ("amount.amount_minor", 0, errors.INVALID_FIELD),
        ("amount.amount_minor", -1, errors.INVALID_FIELD),
        ("amount.currency", "cny", errors.INVALID_FIELD),
        ("amount.currency", "CNYY", errors.INVALID_FIELD),
        ("amount.currency", "", errors.INVALID_FIELD),
        ("provider_event_id", "", errors.INVALID_FIELD),
        ("provider_event_id", "e" * 129, errors.FIELD_TOO_LONG),
        ("key_id", "bad key", errors.INVALID_FIELD),
        ("key_id", "k" * 65, errors.FIELD_TOO_LONG),
    ],
)
def test_field_syntax(path: str, value: object, reason: str) -> None:
    """Each malformed field is INVALID_ARGUMENT naming the field, with the right reason."""
    message = callback("sandbox", None)
    _set(message, path, value)
    with pytest.raises(errors.InvalidArgument) as caught:
        validate_callback_fields(message)
    assert caught.value.reason == reason
    assert caught.value.metadata["field"].startswith(f"callback.{path.partition('.')[0]}")


def test_field_syntax_accepts_the_longest_ids() -> None:
    """Ids at their documented maximum lengths (64 and 128) and an empty key_id pass."""
    message = callback("p" * 64, None)
    message.payment_id = "p" * 128
    message.trade_id = "t" * 64
    message.provider_event_id = "e" * 128
    validate_callback_fields(message)


def test_signed_at_is_required() -> None:
    """A callback without signed_at is malformed, not merely expired."""
    message = callback("sandbox", None)
    message.ClearField("signed_at")
    with pytest.raises(errors.InvalidArgument) as caught:
        validate_callback_fields(message)
    assert caught.value.metadata["field"] == "callback.signed_at"


def test_outcome_must_be_the_rpcs(provider_id: str) -> None:
    """FailPayment accepts FAILED only: a signed confirmation is not replayed as a failure."""
    message = callback(provider_id, None)
    validate_callback_fields(message, outcome=common_pb2.PAYMENT_OUTCOME_CONFIRMED)
    with pytest.raises(errors.InvalidArgument) as caught:
        validate_callback_fields(message, outcome=common_pb2.PAYMENT_OUTCOME_FAILED)
    assert caught.value.reason == errors.INVALID_FIELD
    assert caught.value.metadata["field"] == "callback.outcome"


def test_check_runs_binding_then_syntax_then_signature(
    verifier: CallbackVerifier, provider_id: str, new: ProviderSecret
) -> None:
    """check() follows the contract: a mismatch beats bad syntax, which beats a bad signature."""
    message = callback(provider_id, None)
    message.trade_id = ""
    with pytest.raises(errors.PermissionDenied) as mismatch:
        verifier.check(message, caller_provider_id="other", now_unix_s=NOW_S)
    assert _reason(mismatch) == errors.PROVIDER_MISMATCH
    with pytest.raises(errors.InvalidArgument) as syntax:
        verifier.check(message, caller_provider_id=provider_id, now_unix_s=NOW_S)
    assert syntax.value.reason == errors.INVALID_FIELD
    message = callback(provider_id, new)
    verifier.check(
        message,
        caller_provider_id=provider_id,
        now_unix_s=NOW_S,
        outcome=common_pb2.PAYMENT_OUTCOME_CONFIRMED,
    )
