"""Command servers that balance the slice ranges among themselves (scale-out.md).

Started with `POINTEX_SLICE_RANGES=balanced`, each server is a member while it renews its
row in `slice_members`, and every member computes the same share of the 64 ranges for each
live member. Under load from clients on every server: a third server joins and takes its
share from the two running ones, which hand their ranges over (the work under way ends, the
new owner finds what is open and resumes it); then a member is killed and the two left share
its ranges once its leases expire; a member stopping cleanly hands its ranges over at once.
Each time every acknowledged transfer is in the log once, none open, points conserved.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ServerProcess, StartCommandServer, wait_balanced
from tests.e2e.test_cluster import assert_exactly_once, under_cluster_load
from tests.e2e.test_crash import open_funded_members
from tests.e2e.test_metrics import METRICS_ON, scrape
from tests.e2e.test_split_ranges import start_split

pytestmark = pytest.mark.parametrize(
    "_backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def start_balanced(
    start_command_server: StartCommandServer, store_url: str, count: int
) -> list[ServerProcess]:
    """Start `count` servers that balance the ranges, each once it serves."""
    parts = ("balanced",) * count
    return await start_split(start_command_server, store_url, *parts, extra_env=METRICS_ON)


async def test_a_member_joins_then_one_dies_under_load_and_the_ranges_follow(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """A third server joins under load, then the first is killed: shares move both times."""
    first, second = await start_balanced(start_command_server, store_url, 2)
    two = await wait_balanced(store_url, [first, second])
    members = await open_funded_members(second.target)
    shares: list[dict[str, int]] = []

    async def join_then_die() -> None:
        [third] = await start_balanced(start_command_server, store_url, 1)
        shares.append(await wait_balanced(store_url, [first, second, third]))
        first.process.kill()
        await first.process.wait()
        shares.append(await wait_balanced(store_url, [second, third]))

    attempts = await under_cluster_load([first, second], members, join_then_die)
    await assert_exactly_once(store_url, second, attempts)
    three, after = shares
    assert set(two) < set(three), (two, three)  # The newcomer took ranges from both.
    assert all(three[owner] < two[owner] for owner in two), (two, three)
    assert len(set(three) - set(after)) == 1  # The dead member's ranges went to the others.
    assert set(after) < set(three), (three, after)


async def test_a_member_stopping_cleanly_hands_its_ranges_over_under_load(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """Of three members under load, one stops (SIGTERM): the other two share all at once."""
    first, second, third = await start_balanced(start_command_server, store_url, 3)
    await wait_balanced(store_url, [first, second, third])
    members = await open_funded_members(first.target)

    async def leave() -> None:
        assert await third.terminate() == 0

    attempts = await under_cluster_load([first, second, third], members, leave)
    await assert_exactly_once(store_url, first, attempts)
    after = await wait_balanced(store_url, [first, second])
    assert "slice ranges not released" not in third.log()
    # Each survivor counts the ranges it took: its first share, then part of the leaver's.
    for server in (first, second):
        taken = _counter(await scrape(server), "pointex_slice_ranges_taken_total")
        assert taken > 64 // 3, taken
    assert sorted(after.values()) == [32, 32]


def _counter(page: str, name: str) -> float:
    return next(float(line.split()[1]) for line in page.splitlines() if line.startswith(name))
