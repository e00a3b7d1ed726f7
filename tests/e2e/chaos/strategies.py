"""Hypothesis strategies built from protobuf descriptors: well-formed requests with wild values.

Every field gets values from across its type's range: strings from empty to past every
limit, with odd characters; integers at and beyond the edges; enum numbers the proto does
not define; repeated fields from empty to larger than any batch the server takes; nested
messages to a small depth. Unknown fields are appended to some messages. The raw-bytes
strategy adds what no generator of messages would send.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)
INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)
_RANGES = {
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
}
REPEATED_MAX = 40
DEPTH_MAX = 3
# Printable and not: identifiers, separators, control characters, non-ASCII, long runs.
_TEXT = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="acme:-_.0123456789", max_size=40),
    st.sampled_from(["", " ", "acme", "ops", "a" * 65, "x" * 300, "\x00", "é", "../..", "%s"]),
    st.text(min_size=200, max_size=5000),
)
# Bytes that do not parse as a protobuf message (or not as this one).
MALFORMED = (
    b"\xff",  # a tag with an invalid wire type (7)
    b"\x0a\x05ab",  # a length-delimited field cut short
    b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # a varint longer than 10 bytes
    b"\x0b",  # a start-group tag with no end
)


def malformed(descriptor: Descriptor) -> tuple[bytes, ...]:
    """Return bytes that cannot decode as `descriptor`'s message."""
    strings = [f for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING]
    if not strings:
        return MALFORMED
    # A string field holding bytes that are not UTF-8 (proto3 strings must be).
    tag = bytes([strings[0].number << 3 | 2]) if strings[0].number < 16 else None
    return (*MALFORMED, tag + b"\x02\xff\xfe") if tag else MALFORMED


def _integers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = _RANGES[field.type]
    edges = [low, high, -1, 0, 1, 2**31, 2**53 + 1]
    return st.one_of(
        st.sampled_from([e for e in edges if low <= e <= high]),
        st.integers(min_value=low, max_value=high),
    )


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _RANGES:
        return _integers(field)
    if kind == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=300)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None, field.full_name
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-5, max(numbers) + 5))
    if kind in {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}:
        raise AssertionError(f"a float on the wire: {field.full_name}")
    assert kind == FieldDescriptor.TYPE_MESSAGE, field.full_name
    assert field.message_type is not None, field.full_name
    return messages(field.message_type, depth + 1)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Return a strategy of `descriptor`'s messages with any value in any field."""
    cls = GetMessageClass(descriptor)
    if depth > DEPTH_MAX:
        return st.just(cls())
    fields = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE and depth == DEPTH_MAX:
            continue
        value = _scalar(field, depth)
        if field.is_repeated:
            value = st.lists(value, max_size=REPEATED_MAX)
        fields[field.name] = st.none() | value

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for name, strategy in fields.items():
            value = draw(strategy)
            if value is None:
                continue
            field = descriptor.fields_by_name[name]
            _set(message, field, value)
        return message

    return build()


def _set(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if field.is_repeated:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def request_bytes(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Return request bodies: well-formed messages (some with unknown fields) and raw bytes."""
    unknown = st.sampled_from([b"", b"\xf8\x07\x01", b"\x82\x3e\x03abc"])  # fields 127, 999
    well_formed = st.builds(
        lambda message, extra: message.SerializeToString() + extra, messages(descriptor), unknown
    )
    return st.one_of(well_formed, st.sampled_from(malformed(descriptor)), st.binary(max_size=200))
