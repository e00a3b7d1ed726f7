"""The one small interface every payment provider sits behind.

The command server asks a provider for a payment when a trade is matched; the provider
answers later, asynchronously, with a signed callback (ConfirmPayment or FailPayment).
It may also ask the provider to give a confirmed payment's money back (a refund).
An adapter translates its transport's errors into a refusal or ProviderUnavailable, so
the caller only ever decides between "this will never happen" and "retry later".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """What a trade asks a provider for: the buyer pays `amount_minor` before the deadline."""

    trade_id: str
    provider_id: str
    amount_minor: int
    currency: str
    payment_deadline_unix_s: int
    buyer_account_id: str

    def __post_init__(self) -> None:
        """Assert what the trade guarantees: a positive amount in a named currency."""
        assert self.amount_minor > 0, self.trade_id
        assert len(self.currency) == 3, self.currency  # noqa: PLR2004 - ISO 4217 codes.


@dataclass(frozen=True, slots=True)
class PaymentCreated:
    """The provider's payment for a trade and where the buyer pays it."""

    payment_id: str
    checkout_url: str


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Give `amount_minor` of a confirmed payment back to its buyer, once, as `refund_id`."""

    refund_id: str
    trade_id: str
    provider_id: str
    payment_id: str
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        """Assert what the caller guarantees: named ids, a positive amount, a named currency."""
        assert self.refund_id, self.trade_id
        assert self.payment_id, self.trade_id
        assert self.amount_minor > 0, self.refund_id
        assert len(self.currency) == 3, self.currency  # noqa: PLR2004 - ISO 4217 codes.


@dataclass(frozen=True, slots=True)
class RefundDone:
    """A refund the provider has made: the caller's id and the provider's own."""

    refund_id: str
    provider_refund_id: str


class PaymentRequestRefused(Exception):
    """The provider definitively refused the payment: the trade will be cancelled."""

    def __init__(self, reason: str, message: str) -> None:
        """Record a short machine-readable reason and a message for the log."""
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class RefundRefused(Exception):
    """The provider will never make this refund; retrying the same request changes nothing.

    For example the payment was never confirmed, the provider does not know it, or the
    payment's refunds would add up to more than was paid. `reason` is machine-readable and
    specific to the provider (the sandbox's are its RefundRefusalReason names).
    """

    def __init__(self, reason: str, message: str) -> None:
        """Record a short machine-readable reason and a message for the log."""
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class ProviderUnavailable(Exception):
    """The provider could not answer now; retry later with the same trade_id or refund_id."""


class PaymentProvider(Protocol):
    """A payment gateway as the command server sees it."""

    provider_id: str

    async def create_payment(self, request: PaymentRequest, *, timeout_s: float) -> PaymentCreated:
        """Create (or find again) the payment of `request.trade_id` within `timeout_s`.

        Idempotent on `trade_id`: a retry returns the same payment, so a caller that got
        ProviderUnavailable retries with the same request and never pays twice.

        Raises:
            PaymentRequestRefused: the provider will never create this payment.
            ProviderUnavailable: the outcome is unknown or the provider is down; retry.
        """
        ...

    async def refund_payment(self, request: RefundRequest, *, timeout_s: float) -> RefundDone:
        """Refund `request.amount_minor` of payment `request.payment_id` within `timeout_s`.

        Idempotent on `refund_id`: a retry with the same request returns the same refund and
        the money is never given back twice, so a caller that got ProviderUnavailable retries
        with the same refund_id until it gets an answer. A refund_id names one refund for good:
        never reuse one for another payment or amount.

        RefundDone means the provider has made the refund. An adapter for a provider that
        accepts a refund and confirms it later returns RefundDone only once it is confirmed:
        while it is pending the adapter raises ProviderUnavailable, and the caller's retry
        (same refund_id) looks at it again.

        Raises:
            RefundRefused: the provider will never make this refund (for example the payment
                was not confirmed, is unknown to the provider, or would be refunded beyond
                what was paid).
            ProviderUnavailable: the outcome is unknown or the provider is down; retry with
                the same refund_id.
        """
        ...

    async def close(self) -> None:
        """Release connections; no call is made afterwards."""
        ...
