"""The codec: every event survives encode -> store -> decode unchanged."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pointex.server.domain import events as ev
from pointex.server.domain import market_events as mev
from pointex.server.domain import program as prog
from pointex.server.domain.lots import Lot
from pointex.server.domain.values import (
    AccountKind,
    FeeSchedule,
    Instant,
    Market,
    Money,
    OrderCancelReason,
    OrderSide,
    Role,
    Span,
    TimeInForce,
    TradeCancelReason,
    TransferKind,
)
from pointex.server.eventstore.codec import UnknownEventType, decode, encode
from pointex.server.eventstore.port import RecordedEvent
from pointex.v1 import common_pb2, events_pb2

_LOT = Lot(Instant(1_000), Instant(9_000), 3)
_LOT2 = Lot(Instant(2_000), Instant(10_000), 2)
SAMPLES = [
    ev.AccountOpened("u1", AccountKind.MERCHANT, "acme", "Shop"),
    ev.PointsMinted("m1", 10, "funding", 10),
    ev.PointsBurned("m1", 3, "", 7),
    ev.PointsDebited("u1", "t1", TransferKind.REDEEM, "m1", 5, "coffee", 0),
    ev.PointsCredited("m1", "t1", TransferKind.REDEEM, "u1", 5, "coffee", 12),
    ev.PointsReturned("u1", "t1", TransferKind.ISSUE, "m1", 5, 5),
    ev.AccountFrozen("u1", "fraud", Role.OPERATOR),
    ev.AccountUnfrozen("u1", "cleared"),
    ev.AccountClosed("u1", "moved"),
    ev.TransferInitiated("t1", TransferKind.TRANSFER, "u1", "u2", 5, "gift", "r-1", 0),
    ev.TransferCompleted("t1"),
    ev.PointsDebited(
        "u1", "t3", TransferKind.TRANSFER, "u2", 10, "", 7, fee_points=3, fee_account_id="fees"
    ),
    ev.PointsCredited("fees", "t3", TransferKind.FEE, "u1", 3, "", 3),
    ev.PointsReturned("u1", "t3", TransferKind.FEE, "fees", 3, 10),
    ev.TransferCredited("t3"),
    ev.TransferCompleted("t3", "ACCOUNT_CLOSED"),
    ev.TransferCompensated("t1", "ACCOUNT_CLOSED"),
    ev.CommandRecorded("r-1", "acme", "MintPoints", b"\x01" * 32, b"\x08\x05"),
    ev.PointsHeld("u1", "o1", "PTS-CNY", 5, 120, TimeInForce.IOC, "c-1", 5, 5),
    ev.PointsReleased("u1", "o1", "t1", 2, 7, 3),
    ev.PointsSold("u1", "t1", "o1", 3, 0),
    ev.PointsBought("u2", "t1", "o2", 3, 3),
    ev.BuyReserved("u2", "o2", "PTS-CNY", 7, 130, TimeInForce.GTC, "c-2", 7),
    ev.BuyReleased("u2", "o2", "t1", 3, 4),
    ev.AccountTierSet("u1", "gold"),
    ev.TransferReversed("t1", "t2", 3),
    ev.PointsPending("u1", "t3", "m1", 4, "later", Instant(1_767_225_600_000), 4),
    ev.PointsActivated("u1", "t3", 4, 9, 0),
    ev.PointsDebited("u1", "t2", TransferKind.REVERSE_ISSUE, "m1", 3, "", 2, Instant(5), "t1"),
    ev.TransferInitiated("t3", TransferKind.ISSUE, "m1", "u1", 4, "", "r-3", 6, Instant(7)),
    ev.PointsCredited("u2", "t4", TransferKind.TRANSFER, "u1", 5, "", 5, (_LOT, _LOT2)),
    ev.PointsExpired("u2", 3, 2, (_LOT,), Instant(9_000)),
    ev.PointsExpiringSoon("u2", 2, Instant(10_000), Instant(10_000)),
    ev.PointsActivated("u1", "t3", 4, 9, 0, (Lot(Instant(3_000), Instant(9_000), 4),)),
    ev.BoughtPointsReturned("u2", "tr1", 3, 2, (_LOT,)),
    ev.SoldPointsReturned("u1", "tr1", 3, 13, ()),
    ev.BoughtPointsRestored("u2", "tr1", 3, 5, (_LOT,)),
]
_CNY = Money(12550, "CNY")
_AT = Instant(1_767_225_600_123)
MARKET_SAMPLES = [
    mev.MarketConfigured(
        Market(
            "PTS-CNY",
            "CNY",
            FeeSchedule(25, 1),
            FeeSchedule(0, 0),
            Span(900_500),
            10**6,
            10**9,
            "sandbox",
            True,
        )
    ),
    mev.OrderPlaced("o1", "PTS-CNY", "u1", OrderSide.SELL, 5, 120, "CNY", TimeInForce.GTC, ""),
    mev.OrderRejected("o1", "PTS-CNY", "u1", OrderSide.SELL, 5, "MARKET_CLOSED"),
    mev.TradeMatched("t1", "PTS-CNY", "o2", "o1", "u2", "u1", OrderSide.SELL, 3, 120, 0, 2),
    mev.OrderCancelled("o1", "PTS-CNY", "u1", OrderSide.SELL, OrderCancelReason.REQUESTED, 2),
    mev.OrderQuantityReturned("o1", "PTS-CNY", "t1", 3, 5),
    mev.TradeCreated(
        "t1",
        "PTS-CNY",
        "o2",
        "o1",
        "u2",
        "u1",
        OrderSide.SELL,
        3,
        120,
        "CNY",
        360,
        1,
        0,
        361,
        360,
        _AT,
    ),
    mev.PaymentRequested("t1", "sandbox", "pay_1", "https://pay.example/1", _CNY, _AT),
    mev.PaymentConfirmed("t1", "sandbox", "pay_1", "evt_1", _CNY, _AT, "k1", late=True),
    mev.PaymentFailed("t1", "sandbox", "pay_1", "evt_2", _CNY, _AT, ""),
    mev.TradeSettled("t1", _CNY),
    mev.TradeCancelled("t1", TradeCancelReason.PAYMENT_DEADLINE_PASSED),
    mev.RefundRequired("t1", "sandbox", "pay_1", "evt_1", _CNY),
    mev.RefundRequested("t1", "r-1", _CNY),
    mev.TradeRefunded("t1", "r-1", "rfd_1"),
    mev.RefundDeclined("t1", "r-1", "REFUND_EXCEEDS_PAYMENT"),
]
PROGRAM_SAMPLES = [
    prog.ProgramRulesSet(
        prog.ProgramRules(
            (
                prog.TransactionLimit(prog.LimitedOperation.TRANSFER, None, "", 1, 25_000, 0),
                prog.TransactionLimit(
                    prog.LimitedOperation.MARKET_BUY, AccountKind.MEMBER, "gold", 0, 0, 1_000
                ),
            )
        )
    ),
    prog.ProgramRulesSet(prog.ProgramRules()),
]


def stored(type_name: str, version: int, data: bytes) -> RecordedEvent:
    """A recorded event carrying `data`."""
    return RecordedEvent(1, "account-u1", 1, 0, type_name, version, data, b"", 0)


@pytest.mark.parametrize(
    "event", SAMPLES + MARKET_SAMPLES + PROGRAM_SAMPLES, ids=lambda e: type(e).__name__
)
def test_round_trip(event: object) -> None:
    """Decoding what encode stored gives back an equal domain event."""
    new = encode(event)
    assert new.type == type(event).__name__
    assert new.schema_version == (2 if isinstance(event, ev.TransferInitiated) else 1)
    assert decode(stored(new.type, new.schema_version, new.data)) == event


def test_a_transfer_record_of_schema_1_reads_as_one_that_takes_its_steps() -> None:
    """A version 1 TransferInitiated (no `completed`) upcasts to an open one; 2 keeps it."""
    initiated = ev.TransferInitiated("t1", TransferKind.TRANSFER, "u1", "u2", 5, "", "r-1", 0)
    data = encode(initiated).data
    assert decode(stored("TransferInitiated", 1, data)) == initiated
    settled = replace(initiated, completed=True)
    assert decode(stored("TransferInitiated", 2, encode(settled).data)).completed
    with pytest.raises(UnknownEventType):
        decode(stored("TransferInitiated", 3, data))


def test_every_event_type_has_a_sample() -> None:
    """The samples cover every registered event type."""
    assert {type(e) for e in SAMPLES} == set(ev.ACCOUNT_EVENT_TYPES) | set(ev.PROCESS_EVENT_TYPES)
    assert {type(e) for e in MARKET_SAMPLES} == set(mev.MARKET_EVENT_TYPES) | set(
        mev.TRADE_EVENT_TYPES
    )
    assert {type(e) for e in PROGRAM_SAMPLES} == set(prog.PROGRAM_EVENT_TYPES)


def test_limits_travel_as_repeated_messages_with_unset_kinds() -> None:
    """A limit for every kind has ACCOUNT_KIND_UNSPECIFIED; one for members names MEMBER."""
    stored_rules = events_pb2.ProgramRulesSet.FromString(encode(PROGRAM_SAMPLES[0]).data).rules
    every_kind, members = stored_rules.limits
    assert every_kind.account_kind == common_pb2.ACCOUNT_KIND_UNSPECIFIED
    assert every_kind.operation == common_pb2.LIMITED_OPERATION_TRANSFER
    assert (every_kind.min_points, every_kind.max_points) == (1, 25_000)
    assert members.account_kind == common_pb2.ACCOUNT_KIND_MEMBER
    assert (members.tier, members.step_points) == ("gold", 1_000)


def test_nested_values_travel_as_their_proto_messages() -> None:
    """Money, Instant, Span and the market configuration map to Money, Timestamp, Duration."""
    created = events_pb2.TradeCreated.FromString(encode(MARKET_SAMPLES[6]).data)
    assert created.payment_deadline.seconds == 1_767_225_600
    assert created.payment_deadline.nanos == 123_000_000
    configured = events_pb2.MarketConfigured.FromString(encode(MARKET_SAMPLES[0]).data)
    assert configured.market.payment_window.seconds == 900
    assert configured.market.buyer_fee.rate_bps == 25
    paid = events_pb2.PaymentRequested.FromString(encode(MARKET_SAMPLES[7]).data)
    assert (paid.amount.amount_minor, paid.amount.currency) == (12550, "CNY")


def test_payload_is_the_events_proto_message() -> None:
    """The stored bytes parse as the events.proto message, with enums by name."""
    new = encode(SAMPLES[3])
    message = events_pb2.PointsDebited.FromString(new.data)
    assert message.kind == common_pb2.TRANSFER_KIND_REDEEM
    assert message.amount_points == 5


def test_unknown_type_and_newer_schema_are_refused() -> None:
    """A type this release does not know, or a newer schema version, is UnknownEventType."""
    with pytest.raises(UnknownEventType):
        decode(stored("NoSuchEvent", 1, b""))
    with pytest.raises(UnknownEventType):
        decode(stored("PointsMinted", 2, b""))


# Bytes the codec stored before its encoders were compiled per type: the stored form is
# kept forever, so a faster encoder must give the same bytes. Between them they cover a
# time at zero (an empty Timestamp, still present), enums, an error reason and a nested
# message at all defaults (present, and empty).
_STORED_BYTES = [
    (SAMPLES[3], "0a02753112027431180222026d3128053206636f666665654200"),
    (SAMPLES[9], "0a02743110031a0275312202753228053204676966743a03722d314a00"),
    (SAMPLES[15], "0a027433100b"),
    (
        MARKET_SAMPLES[0],
        (
            "0a360a075054532d434e591203434e591a040819100122002a090884071080cab5ee0130c0843d38"
            "8094ebdc03420773616e64626f784801"
        ),
    ),
]


@pytest.mark.parametrize(("event", "stored_hex"), _STORED_BYTES, ids=lambda e: type(e).__name__)
def test_encoding_keeps_the_stored_bytes(event: object, stored_hex: str) -> None:
    """Each sample encodes to exactly the bytes the codec has always stored for it."""
    assert encode(event).data.hex() == stored_hex
