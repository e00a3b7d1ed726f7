"""Measure what the account's decide and evolve cost a transfer, in the domain alone.

One member account debits 1 point (a TransferPoints debit) and takes 1 point back (a
credit), decided and evolved as the account actor does, with no actor, store or gRPC
around it. Prints the best of five timings of 20,000 such pairs, in microseconds per pair.
With `--limits`, the program has a per-command maximum and a daily and a yearly cap on
transfers, so every debit is also checked against them.

Usage: .venv/bin/python scripts/measure_account_decisions.py [--limits]

To compare with an earlier commit, run the same script on that commit's sources:
  git worktree add <worktree> <commit>
  PYTHONPATH=<worktree>/server/src:<worktree>/client/src \
      .venv/bin/python scripts/measure_account_decisions.py
"""

from __future__ import annotations

import argparse
import inspect
import timeit

from pointex.server.domain import account
from pointex.server.domain.account import Account
from pointex.server.domain.commands import AccountCommand, CreditPoints, DebitPoints, OpenAccount
from pointex.server.domain.values import AccountKind, Caller, Role, TransferKind

PAIRS = 20_000
REPEATS = 5
NOW_MS = 1_767_225_600_000
ACME = Caller(Role.PARTNER, "acme")


def main() -> None:
    """Time the pairs and print the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", action="store_true", help="decide under transfer limits")
    args = parser.parse_args()
    rules = _rules(limited=args.limits) if _WITH_RULES else None
    state = _apply(None, OpenAccount(ACME, "u1", AccountKind.MEMBER, "acme", ""), rules)
    state = _apply(state, CreditPoints("u1", "t0", TransferKind.ISSUE, "m1", 10**9, ""), rules)
    debit = DebitPoints(ACME, "u1", "t1", TransferKind.TRANSFER, "u2", 1, "")
    credit = CreditPoints("u1", "t2", TransferKind.TRANSFER, "u2", 1, "")
    current = [state]

    def pair() -> None:
        current[0] = _apply(_apply(current[0], debit, rules), credit, rules)

    best = min(timeit.repeat(pair, number=PAIRS, repeat=REPEATS))
    print(f"{best / PAIRS * 1e6:.2f} µs per debit and credit (decide + evolve)")


def _rules(*, limited: bool) -> object:
    """Return the limits in force: none, or a maximum and both caps on transfers."""
    from pointex.server.domain import program  # noqa: PLC0415 - absent from earlier releases.

    if not limited:
        return program.NO_LIMITS
    cap = program.TransactionLimit(
        program.LimitedOperation.TRANSFER, None, "", 0, 10**6, 0, 10**12, 10**12
    )
    return program.LimitIndex(program.Program(1, program.ProgramRules((cap,))))


def _apply(state: Account | None, command: AccountCommand, rules: object) -> Account:
    extra = (rules, NOW_MS) if _WITH_RULES else ()
    for event in account.decide(state, command, *extra):
        state = account.evolve(state, event)
    assert state is not None
    return state


# A release from before the program's rules decides on the state and the command alone; the
# script measures it too (run it with that release's sources first on PYTHONPATH).
_WITH_RULES = "limits_in_force" in inspect.signature(account.decide).parameters


if __name__ == "__main__":
    main()
