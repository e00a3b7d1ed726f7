"""Bounds on every input of every RPC: oversized strings, repeated fields and pages refused.

For each RPC (from the service descriptors) the test starts from a request its caller may
make on its own objects, then changes one field at a time: every string field to 100,000
characters, every repeated field to 10,000 items, every page size to a million. Each such
request must get INVALID_ARGUMENT with a reason, and change nothing. A whole message over
the server's size limit gets RESOURCE_EXHAUSTED from gRPC itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pointex.client.callbacks import sign
from pointex.server import limits
from pointex.server.domain.values import Role
from pointex.server.grpc_edge.auth import METHOD_ROLES
from tests.e2e.chaos.rpcs import ALL_RPCS, COMMAND_RPCS, Rpc, call_raw, logged_events
from tests.e2e.conftest import ACME_TOKEN, OPERATOR_TOKEN, STACK_PROVIDER_SECRET, Stack, bearer
from tests.e2e.test_tenancy import ROWS, _acme, channels, payment_delay_ms

__all__ = ["channels", "payment_delay_ms"]  # Fixtures, for pytest.

LONG_TEXT = "x" * 100_000
MANY = 10_000
HUGE_PAGE = 1_000_000
# A signature of the wrong length is a signature that does not verify.
_SIGNATURE_REFUSED = grpc.StatusCode.PERMISSION_DENIED


def _variants(request: Message) -> list[tuple[str, Message]]:
    """Return (what changed, request) for each oversized change of one field, recursively."""
    variants: list[tuple[str, Message]] = []

    def visit(message: Message, path: list[str]) -> None:
        for field in message.DESCRIPTOR.fields:
            if field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
                if message.HasField(field.name):
                    visit(getattr(message, field.name), [*path, field.name])
                continue
            variant = _copy(request)
            target = _at(variant, path)
            what = _oversize(target, cast("FieldDescriptor", field), getattr(message, field.name))
            if what is not None:
                variants.append((".".join([*path, field.name]) + what, variant))

    visit(request, [])
    return variants


def _oversize(target: Message, field: FieldDescriptor, current: object) -> str | None:
    """Push `field` of `target` past every bound; say how, or None for a field without one."""
    if field.is_repeated:
        repeated = getattr(target, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            item = current[0] if current else None  # type: ignore[index]
            for _ in range(MANY):
                added = repeated.add()
                if item is not None:
                    added.CopyFrom(item)
        elif field.type == FieldDescriptor.TYPE_STRING:
            repeated.extend([f"id-{n}" for n in range(MANY)])
        elif field.type == FieldDescriptor.TYPE_ENUM:
            repeated.extend([1] * MANY)
        else:
            return None
        return f" x{MANY}"
    if field.type == FieldDescriptor.TYPE_STRING:
        setattr(target, field.name, LONG_TEXT)
        return f" of {len(LONG_TEXT)} characters"
    if field.type == FieldDescriptor.TYPE_BYTES:
        setattr(target, field.name, LONG_TEXT.encode())
        return f" of {len(LONG_TEXT)} bytes"
    if field.name in {"page_size", "depth", "limit", "max_violations", "max_batch_size"}:
        setattr(target, field.name, HUGE_PAGE)
        return f" = {HUGE_PAGE}"
    return None


def _copy(message: Message) -> Message:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def _at(message: Message, path: list[str]) -> Message:
    for name in path:
        message = getattr(message, name)
    return message


def _token(rpc: Rpc) -> str:
    return ACME_TOKEN if Role.PARTNER in METHOD_ROLES[rpc.path] else OPERATOR_TOKEN


async def test_every_oversized_field_of_every_rpc_is_refused_and_changes_nothing(
    tmp_path: Path, stack: Stack, channels: tuple[grpc.aio.Channel, grpc.aio.Channel]
) -> None:
    """One field at a time past every bound: INVALID_ARGUMENT with a reason, log unchanged."""
    command, query = channels
    acme = await _acme(command, query)
    store_file = tmp_path / "events.db"
    checked = 0
    for rpc in ALL_RPCS:
        build, _ = ROWS[rpc.path]
        base = build(acme)
        channel = command if rpc in COMMAND_RPCS else query
        for what, variant in _variants(base):
            if "callback" in variant.DESCRIPTOR.fields_by_name and "signature" not in what:
                # Signed as the provider would: the bounds, not the signature, are tested.
                callback = variant.callback  # type: ignore[attr-defined]
                callback.signature = sign(callback, STACK_PROVIDER_SECRET.encode())
            before = logged_events(store_file)
            outcome = await call_raw(
                channel, rpc, [variant.SerializeToString()], bearer(_token(rpc))
            )
            expected = (
                _SIGNATURE_REFUSED if "signature" in what else grpc.StatusCode.INVALID_ARGUMENT
            )
            assert outcome.code == expected, (rpc.path, what, outcome)
            assert outcome.reason, (rpc.path, what, outcome)
            assert logged_events(store_file) == before, (rpc.path, what)
            checked += 1
    assert checked > 50


@pytest.mark.parametrize("target", ["command", "query"])
async def test_a_message_over_the_size_limit_is_refused_by_grpc(
    stack: Stack, channels: tuple[grpc.aio.Channel, grpc.aio.Channel], target: str
) -> None:
    """A request one byte over grpc_message_bytes_max: RESOURCE_EXHAUSTED, from the library."""
    command, query = channels
    rpc = next(
        r for r in ALL_RPCS if r.name == ("OpenAccount" if target == "command" else "GetAccount")
    )
    oversized = (
        b"\x0a" + _varint(limits.grpc_message_bytes_max) + b"x" * limits.grpc_message_bytes_max
    )
    outcome = await call_raw(
        command if target == "command" else query, rpc, [oversized], bearer(OPERATOR_TOKEN)
    )
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
