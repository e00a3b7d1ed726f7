"""Per-partner admission: a partner's share of calls and streams, and nobody else's."""

from __future__ import annotations

import contextlib

import pytest

from pointex.server import limits
from pointex.server.domain.values import Principal, Role
from pointex.server.grpc_edge.admission import PartnerAdmission
from pointex.server.overload import Overloaded

ACME = Principal("acme", Role.PARTNER)
OTHER = Principal("other", Role.PARTNER)
OPERATOR = Principal("ops", Role.OPERATOR)


@pytest.mark.parametrize("stream", [False, True])
def test_a_partner_past_its_share_is_shed_and_others_go_on(
    monkeypatch: pytest.MonkeyPatch, *, stream: bool
) -> None:
    """Up to the limit acme is admitted; one more is OVERLOADED; other and the operator pass."""
    monkeypatch.setattr(limits, "partner_calls_in_flight_max", 3)
    monkeypatch.setattr(limits, "partner_streams_max", 2)
    allowed = 2 if stream else 3
    admission = PartnerAdmission()
    with contextlib.ExitStack() as held:
        for _ in range(allowed):
            held.enter_context(admission.admitted(ACME, stream=stream))
        with pytest.raises(Overloaded) as shed, admission.admitted(ACME, stream=stream):
            pass
        assert (shed.value.reason, shed.value.retry_after_ms) == (
            "OVERLOADED",
            limits.overload_retry_after_ms,
        )
        with admission.admitted(OTHER, stream=stream), admission.admitted(ACME, stream=not stream):
            pass  # Another partner, and acme's other kind of call, are not affected.
        for _ in range(10):
            held.enter_context(admission.admitted(OPERATOR, stream=stream))
        held.enter_context(admission.admitted(None, stream=stream))  # No authentication.
    with admission.admitted(ACME, stream=stream):
        pass  # Every place was given back.
    assert admission.shed == 1


def test_a_call_that_fails_gives_its_place_back() -> None:
    """An exception inside the call still frees the place; nothing is kept for idle partners."""
    admission = PartnerAdmission()
    with pytest.raises(RuntimeError), admission.admitted(ACME, stream=False):
        raise RuntimeError
    assert admission._calls == {}  # The bound on the map is what is tested.
