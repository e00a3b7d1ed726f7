"""Stream names: one function per kind, categories as stored, entity ids read back."""

from __future__ import annotations

import pytest

from pointex.server.domain import streams


@pytest.mark.parametrize(
    ("name", "category"),
    [
        (streams.account, streams.ACCOUNT),
        (streams.market, streams.MARKET),
        (streams.transfer, streams.TRANSFER),
        (streams.trade, streams.TRADE),
        (streams.request, streams.REQUEST),
    ],
)
def test_each_kind_of_stream_is_named_category_dash_id(name: object, category: str) -> None:
    """A stream's id is its category, a dash and the entity id, which reads back whole."""
    assert callable(name)
    stream_id = name("acme:shop-1")
    assert stream_id == f"{category}-acme:shop-1"
    assert streams.entity_of(stream_id, category) == "acme:shop-1"
    assert category in streams.CATEGORIES


def test_the_stored_categories_never_change() -> None:
    """Categories are part of the stored log: renaming one would orphan every old event."""
    assert {"account", "market", "transfer", "trade", "request", "program"} == streams.CATEGORIES


def test_an_entity_of_another_category_is_none() -> None:
    """A trade stream is not an account stream, nor is a bare word."""
    assert streams.entity_of(streams.trade("t1"), streams.ACCOUNT) is None
    assert streams.entity_of("account", streams.ACCOUNT) is None
