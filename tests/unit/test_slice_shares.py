"""How servers that balance the slice ranges share them (slices.shares)."""

from __future__ import annotations

import itertools

from pointex.server.slices import SLICE_RANGES, shares


def _owner_by_range(members: list[str]) -> dict[int, str]:
    return {r: member for member, ranges in shares(members).items() for r in ranges}


def test_every_range_has_one_owner_and_shares_are_one_range_apart_at_most() -> None:
    """For 1 to 9 members, every range once, and the shares as even as 64 allows."""
    for count in range(1, 10):
        members = [f"command-{i:012x}" for i in range(count)]
        split = shares(members)
        assert sorted(r for ranges in split.values() for r in ranges) == list(range(SLICE_RANGES))
        sizes = [len(ranges) for ranges in split.values()]
        assert max(sizes) - min(sizes) <= 1, (count, sizes)


def test_every_member_computes_the_same_shares_whatever_order_it_reads_them_in() -> None:
    """The shares depend on the set of members, not on the order they are listed in."""
    members = ["command-a1", "command-b2", "command-c3", "command-d4"]
    expected = shares(members)
    for order in itertools.permutations(members):
        assert shares(list(order)) == expected


def test_a_member_joining_moves_little_besides_what_it_takes() -> None:
    """A third member joining two: it takes about a third, and few others move between the two."""
    before = _owner_by_range(["command-1f", "command-7c"])
    after = _owner_by_range(["command-1f", "command-7c", "command-e0"])
    taken = [r for r in range(SLICE_RANGES) if after[r] == "command-e0"]
    moved_between_old = [
        r for r in range(SLICE_RANGES) if after[r] != "command-e0" and after[r] != before[r]
    ]
    assert len(taken) in (21, 22)
    assert len(moved_between_old) <= 4, moved_between_old
    assert shares([]) == {}
