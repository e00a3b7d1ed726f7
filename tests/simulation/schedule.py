"""What a seed makes happen: the clients' operations, clock jumps, store faults and crashes.

`draw_schedule(seed, settings)` draws every operation with its virtual time from
`random.Random(f"{seed}:schedule")`. What happens at run time (which payment a provider
confirms, which append fails, how long a round trip takes) is drawn from generators of
their own, seeded alike, so the schedule stays the same whatever the run does with them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pointex.server.domain.program import TransferFee
from pointex.server.domain.values import OrderSide, TimeInForce

MERCHANTS = ("m0", "m1")
MEMBERS = ("u0", "u1", "u2", "u3")
LATE_MEMBERS = ("u4", "u5")  # Opened during the run; until then, sends to them are refused.
MINTED_EACH = 1_000
FEE_ACCOUNT = MERCHANTS[1]  # Where the program's transfer fees go, when it charges one.


@dataclass(frozen=True, slots=True)
class Settings:
    """The size of one seed's run (the same in `make test` and `make chaos`).

    Attributes:
        operations: Client operations, clock jumps and fault windows drawn.
        crashes_max: Most crashes drawn (0 to this many).
        fault_windows_max: Most periods during which the store fails (0 to this many).
        gap_ms_max: Longest virtual pause between two operations.
        write_ms_max: Longest round trip of an append (virtual milliseconds).
        read_ms_max: Longest round trip of a read.
        lose: Chance that the store silently drops an acknowledged commit (a broken store,
            to show that the checks catch one); 0 for a correct store.
    """

    operations: int = 40
    crashes_max: int = 3
    fault_windows_max: int = 2
    gap_ms_max: int = 800
    write_ms_max: float = 4.0
    read_ms_max: float = 1.0
    lose: float = 0.0


@dataclass(frozen=True, slots=True)
class Op:
    """One thing that happens at virtual time `at_ms` after the start (see `World.do`)."""

    at_ms: int
    kind: str
    args: tuple[object, ...] = ()


# Client operations, by how often each is drawn.
_CLIENT_KINDS = (
    ("issue", 4),
    ("transfer", 4),
    ("redeem", 2),
    ("order", 9),
    ("cancel", 2),
    ("resend", 3),
    ("open", 1),
    ("jump", 1),
)


def _client_op(draw: random.Random, at_ms: int, kind: str) -> Op:
    """Draw the arguments of one client operation of `kind` at `at_ms`."""
    members = (*MEMBERS, *LATE_MEMBERS)
    match kind:
        case "issue":
            args: tuple[object, ...] = (
                draw.choice(MERCHANTS),
                draw.choice(members),
                draw.randint(1, 60),
            )
            return Op(at_ms, kind, args)
        case "transfer":
            source, target = draw.sample(members, 2)
            return Op(at_ms, kind, (source, target, draw.randint(1, 40)))
        case "redeem":
            return Op(
                at_ms, kind, (draw.choice(members), draw.choice(MERCHANTS), draw.randint(1, 30))
            )
        case "order":
            side = draw.choice((OrderSide.BUY, OrderSide.SELL))
            account = draw.choice((*MERCHANTS, *MEMBERS))
            price = draw.randint(99, 102) if side is OrderSide.BUY else draw.randint(98, 101)
            tif = draw.choice((TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC))
            return Op(at_ms, kind, (account, side, draw.randint(1, 12), price, tif))
        case "jump":
            return Op(at_ms, kind, (draw.randint(1_000, 90_000),))
        case _:  # cancel, resend: which earlier call, chosen at run time; open: the next one.
            return Op(at_ms, kind, (draw.randrange(1 << 30),))


def draw_fee(seed: int) -> TransferFee | None:
    """Return the transfer fee the program charges in `seed`'s run (half the seeds: none)."""
    draw = random.Random(f"{seed}:fee")
    if draw.random() < 0.5:
        return None
    return TransferFee(draw.randint(0, 3), draw.randint(0, 50), FEE_ACCOUNT)


def draw_schedule(seed: int, settings: Settings) -> list[Op]:
    """Return the operations of `seed`, in time order."""
    draw = random.Random(f"{seed}:schedule")
    kinds = [kind for kind, weight in _CLIENT_KINDS for _ in range(weight)]
    ops: list[Op] = []
    at_ms = 0
    for _ in range(settings.operations):
        # Often at the same instant as the one before: concurrent calls.
        at_ms += 0 if draw.random() < 0.35 else draw.randint(1, settings.gap_ms_max)
        ops.append(_client_op(draw, at_ms, draw.choice(kinds)))
    end_ms = at_ms
    for _ in range(draw.randint(0, settings.fault_windows_max)):
        start_ms = draw.randint(0, end_ms)
        rates = (draw.uniform(0, 0.3), draw.uniform(0, 0.15), draw.uniform(0, 0.05))
        ops.append(Op(start_ms, "faults", rates))
        ops.append(Op(start_ms + draw.randint(200, 5_000), "heal"))
    ops.extend(
        Op(draw.randint(0, end_ms), "crash") for _ in range(draw.randint(0, settings.crashes_max))
    )
    # Stable: ops drawn for one instant keep their drawing order.
    return sorted(ops, key=lambda op: op.at_ms)
