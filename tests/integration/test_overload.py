"""Load shedding: full mailboxes and a full commit queue refuse at once and change nothing."""

from __future__ import annotations

import pytest

from pointex.server import limits
from pointex.server.actors.account_actor import Inspect
from pointex.server.actors.runtime import AccountActors
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import EventStore, NewEvent, StreamAppend
from pointex.server.overload import Overloaded


async def test_mailbox_full(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages past the mailbox bound of a loading actor get MAILBOX_FULL with a retry delay."""
    monkeypatch.setattr(limits, "mailbox_messages_max", 3)
    committer = GroupCommitter(store)
    committer.start()
    actors = AccountActors(store, committer, resident_max=10)
    actor = actors.actor("busy")
    accepted = [actor.tell(Inspect(lambda state: state)) for _ in range(3)]
    with pytest.raises(Overloaded) as caught:
        actor.tell(Inspect(lambda state: state))
    assert caught.value.reason == "MAILBOX_FULL"
    assert caught.value.retry_after_ms > 0
    assert [await reply for reply in accepted] == [None, None, None]
    await committer.stop()


async def test_commit_queue_overloaded(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Units past the commit-queue bound get OVERLOADED; the queued ones still commit."""
    monkeypatch.setattr(limits, "commit_queue_events_max", 2)
    committer = GroupCommitter(store)
    committer.start()
    event = NewEvent("PointsMinted", 1, b"")
    queued = [committer.submit((StreamAppend(f"account-q{i}", 0, (event,)),)) for i in range(2)]
    with pytest.raises(Overloaded) as caught:
        committer.submit((StreamAppend("account-q9", 0, (event,)),))
    assert caught.value.reason == "OVERLOADED"
    assert [len(await unit) for unit in queued] == [1, 1]
    assert await store.stream_version("account-q9") == 0
    await committer.stop()
