"""Cooling-off refunds of market purchases: RefundPurchase, driven as a step of the trade.

A buyer (or the operator) asks for a settled trade to be refunded. The trade process takes
the purchase's points back from the buyer's account, which refuses a purchase outside its
cooling-off window or whose points were spent (domain/account_market.py), and records the
refund requested; then it asks the payment provider, and the points go to the seller
(REFUNDED) or back to the buyer (declined). The refund id is the request's key, so a retry
with the same request id answers the same refund as it stands, and the provider, asked again
with that id, never refunds twice. When the provider cannot answer now, the answer is
REFUNDING and the trade process keeps asking in the background (and after a restart).
"""

from __future__ import annotations

from dataclasses import dataclass

from pointex.server.actors.runtime import AccountActors
from pointex.server.command.app.idempotency import request_key
from pointex.server.command.app.trade_processes import TradeConflict, TradeProcesses
from pointex.server.domain import errors
from pointex.server.domain.processes import trade as process
from pointex.server.domain.trade import TradeStatus
from pointex.server.domain.values import Principal
from pointex.server.eventstore.port import StoreError
from pointex.server.overload import Overloaded
from pointex.server.payments.port import ProviderUnavailable


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    """Where a refund stands after RefundPurchase."""

    trade_id: str
    status: TradeStatus  # REFUNDED, REFUNDING, or SETTLED when the provider declined.
    declined_reason: str
    position: int
    buyer_available_points: int


class PurchaseRefunds:
    """RefundPurchase: checks who asks, then drives the trade's refund steps."""

    def __init__(self, processes: TradeProcesses, accounts: AccountActors) -> None:
        """Refund through `processes`' trade steps, on `accounts`' actors."""
        self._processes = processes
        self._accounts = accounts

    async def refund(self, principal: Principal, request_id: str, trade_id: str) -> RefundOutcome:
        """Refund a purchase, or answer the refund of this request as it stands."""
        loaded = await self._processes.load(trade_id)
        if loaded is None:
            raise errors.NotFound(errors.TRADE_NOT_FOUND, "no such trade", trade_id=trade_id)
        buyer_id = loaded.trade.created.buyer_account_id
        buyer = await self._accounts.peek(buyer_id)
        assert buyer is not None, trade_id
        if not principal.caller.may_act_for(buyer.owner_partner_id):
            raise errors.PermissionDenied(
                errors.NOT_OWNER,
                "the buyer's account belongs to another partner",
                trade_id=trade_id,
            )
        refund_id = request_key(principal, request_id)
        asked = process.RefundAsked(refund_id, principal.caller)
        position = await self._processes.advance(trade_id, asked)
        try:
            position = await self._processes.advance(trade_id, process.Resumed())
        except (ProviderUnavailable, StoreError, Overloaded, TradeConflict, errors.DomainError):
            # The provider (or the store, or the seller's account) cannot answer now: the
            # refund is driven on in the background, and found again after a restart.
            self._processes.refund_later(trade_id)
        ended = await self._processes.load(trade_id)
        assert ended is not None, trade_id
        trade = ended.trade
        declined = trade.declined.reason if trade.declined is not None else ""
        buyer = await self._accounts.peek(buyer_id)
        assert buyer is not None, trade_id
        return RefundOutcome(
            trade_id,
            trade.status,
            declined if trade.status is TradeStatus.SETTLED else "",
            max(position or 0, ended.position),
            buyer.available_points,
        )
