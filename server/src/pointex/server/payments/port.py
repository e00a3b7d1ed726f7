"""The one small interface every payment provider sits behind.

The command server asks a provider for a payment when a trade is matched; the provider
answers later, asynchronously, with a signed callback (ConfirmPayment or FailPayment).
An adapter translates its transport's errors into the two exceptions below, so the
settlement process only ever decides between "cancel the trade" and "retry later".
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


class PaymentRequestRefused(Exception):
    """The provider definitively refused the payment: the trade will be cancelled."""

    def __init__(self, reason: str, message: str) -> None:
        """Record a short machine-readable reason and a message for the log."""
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class ProviderUnavailable(Exception):
    """The provider could not answer now; retry later with the same trade_id."""


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

    async def close(self) -> None:
        """Release connections; no call is made afterwards."""
        ...
