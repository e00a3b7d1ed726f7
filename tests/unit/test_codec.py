"""The codec: every account event survives encode -> store -> decode unchanged."""

from __future__ import annotations

import pytest

from pointex.server.domain import events as ev
from pointex.server.domain.values import AccountKind, Role, TransferKind
from pointex.server.eventstore.codec import UnknownEventType, decode, encode
from pointex.server.eventstore.port import RecordedEvent
from pointex.v1 import common_pb2, events_pb2

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
    ev.TransferCompensated("t1", "ACCOUNT_CLOSED"),
    ev.CommandRecorded("r-1", "acme", "MintPoints", b"\x01" * 32, b"\x08\x05"),
]


def stored(type_name: str, version: int, data: bytes) -> RecordedEvent:
    """A recorded event carrying `data`."""
    return RecordedEvent(1, "account-u1", 1, 0, type_name, version, data, b"", 0)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(event: object) -> None:
    """Decoding what encode stored gives back an equal domain event."""
    new = encode(event)
    assert new.type == type(event).__name__
    assert new.schema_version == 1
    assert decode(stored(new.type, new.schema_version, new.data)) == event


def test_every_account_event_has_a_sample() -> None:
    """The samples cover every registered account event type."""
    assert {type(e) for e in SAMPLES} == set(ev.ACCOUNT_EVENT_TYPES) | set(ev.PROCESS_EVENT_TYPES)


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
