"""The simulated world of one seed: a node over a faulty store, clients, a provider, crashes.

`World(seed).run()` runs, on a `VirtualLoop`, the command side as the server wires it (a
`Node`) over a `MemoryEventStore` whose faults the seed draws, with clients that send the
seed's schedule (tests/simulation/schedule.py) concurrently and retry what was not
acknowledged with the same request ids, and a payment provider that confirms, fails,
repeats, is late or stays silent. A crash cancels every task of the node and its clients
at once (oldest first) and drops the node; a new node starts over the same store and runs
recovery. The checks run at every commit (tests/simulation/audit.py), after each recovery,
and at the end (tests/simulation/verdicts.py), once the store is healed, every call has its
final word and the clock has passed every payment deadline.

Everything that varies comes from the seed: the schedule, the store's faults and round
trips, the provider's behaviour, the clients' deadlines and backoffs, and the jitter of the
command side's conflict pauses. The run takes no real time and no thread, so a seed replays
exactly (`Outcome.log_digest`).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import random
from collections import Counter
from dataclasses import dataclass, field

from pointex.server.actors.stream_actor import Decide
from pointex.server.command.app import runner
from pointex.server.domain.program import ProgramRules, SetProgramRules
from pointex.server.domain.values import OPERATOR, AccountKind
from pointex.server.eventstore.port import StoreError
from pointex.server.overload import Overloaded
from pointex.server.payments.port import PaymentRequest
from tests.market_node import START_MS, Clock, Node
from tests.simulation import loop as virtual
from tests.simulation.audit import LogAudit, Violation
from tests.simulation.calls import Call, Ending, SimProvider, ending_of, invoke, normal_form
from tests.simulation.known_bugs import known_assertion
from tests.simulation.memory_store import MemoryDatabase, MemoryEventStore, SeededFaults
from tests.simulation.schedule import (
    LATE_MEMBERS,
    MEMBERS,
    MERCHANTS,
    MINTED_EACH,
    Op,
    Settings,
    draw_fee,
    draw_schedule,
)
from tests.simulation.verdicts import check_acknowledged, check_node_view, order_id_of

_START_ATTEMPTS_MAX = 4  # Failed starts in a row before the store is healed.
_RETRIES_IN_RUN_MAX = 4  # Attempts of a call while the schedule runs; the rest at the end.
_FINAL_ROUNDS_MAX = 30  # Rounds at the end to answer every call and end every trade.
_KILL_ROUNDS_MAX = 10  # Rounds of cancelling a crashed node's tasks before giving up.
_QUIET_WAIT_S_MAX = 120  # Longest virtual wait for the detached steps to end, at the end.
# How often each behaviour of the provider is drawn for a new payment.
_BEHAVIOURS = {"confirm": 35, "fail": 15, "repeat": 15, "late": 10, "both": 10, "silent": 15}


def _number(op: Op) -> int:
    """Return the number an operation carries (which call, how far the clock jumps)."""
    (number,) = op.args
    assert isinstance(number, int), op
    return number


class SimClock(Clock):
    """The domain's clock: the start time, plus virtual time, plus every jump of the wall clock."""

    def __call__(self) -> int:
        """Return the time in Unix milliseconds."""
        return self.now_ms + int((virtual.current().time() - virtual.EPOCH_S) * 1000)


@dataclass
class Outcome:
    """What one seed's run did, and a digest of its whole event log."""

    seed: int
    counts: Counter[str] = field(default_factory=Counter)
    log_digest: str = ""


class World:
    """One seed's run."""

    def __init__(self, seed: int, settings: Settings) -> None:
        """Draw the schedule and build the store, clock, provider and checker of `seed`."""
        self.seed = seed
        self.settings = settings
        self.schedule = draw_schedule(seed, settings)
        self.database = MemoryDatabase()
        self.faults = SeededFaults(
            random.Random(f"{seed}:store"),
            write_ms_max=settings.write_ms_max,
            read_ms_max=settings.read_ms_max,
        )
        self.clock = SimClock(START_MS)
        self.store = MemoryEventStore(
            self.database, faults=self.faults, clock_us=lambda: self.clock() * 1000
        )
        self.provider = SimProvider(
            draw=random.Random(f"{seed}:provider"), on_created=self._payment_created
        )
        self.clients = random.Random(f"{seed}:clients")
        self.audit = LogAudit(self.database)
        self.calls: list[Call] = []
        self.orders: list[Call] = []
        self.due: list[tuple[float, int, Call]] = []  # The provider's callbacks, by due time.
        self.broken: list[str] = []  # Violations seen by client tasks, raised by the driver.
        self.counts: Counter[str] = Counter()
        self.node: Node | None = None
        self.start_s = 0.0
        self.finishing = False
        self.left_at_start = 0  # `_left_to_restart()` when the node began to start.

    async def run(self) -> Outcome:
        """Run the schedule, then the end; return what happened. Raises Violation."""
        runner.jitter.seed(f"{self.seed}:jitter")
        await self.store.open()
        self.start_s = virtual.current().time()
        self.node = await self._start()
        node = self._node()
        for merchant in MERCHANTS:
            await node.open(merchant, AccountKind.MERCHANT, MINTED_EACH)
        for member in MEMBERS:
            await node.open(member, AccountKind.MEMBER)
        fee = draw_fee(self.seed)
        if fee is not None:
            rules = ProgramRules(transfer_fee=fee)
            await node.program.tell(Decide(SetProgramRules(OPERATOR, 0, rules)))
            self.counts["seeds with a transfer fee"] += 1
        self.faults.lose = self.settings.lose
        for op in self.schedule:
            await self._until(self.start_s + op.at_ms / 1000)
            await self.do(op)
            self._raise_broken()
            self.audit.consume()
        await self._finish()
        outcome = self._outcome()
        await self._kill()
        return outcome

    async def do(self, op: Op) -> None:
        """Make one operation of the schedule happen."""
        self.counts["operations"] += 1
        match op.kind:
            case "issue" | "transfer" | "redeem" | "order":
                self._spawn(self._new_call(op.kind, op.args))
            case "cancel" if self.orders:
                order = self.orders[_number(op) % len(self.orders)]
                self._spawn(self._new_call("cancel", (order_id_of(order),)))
            case "resend" if self.calls:
                self.counts["resends"] += 1
                self._spawn(self.calls[_number(op) % len(self.calls)])
            case "open":
                opened = sum(call.kind == "open" for call in self.calls)
                if opened < len(LATE_MEMBERS):
                    self._spawn(self._new_call("open", (LATE_MEMBERS[opened],)))
            case "jump":
                self.clock.now_ms += _number(op)
                self.counts["clock jumps"] += 1
            case "faults":
                rates = [rate for rate in op.args if isinstance(rate, float)]
                self.faults.fail_before, self.faults.fail_after, self.faults.fail_read = rates
            case "heal":
                self.faults.heal()
                self.faults.lose = self.settings.lose
            case "crash":
                self.counts["crashes"] += 1
                await self.restart()

    def _new_call(self, kind: str, args: tuple[object, ...]) -> Call:
        """Record a new call of the run (its request id derives from its number)."""
        call = Call(len(self.calls), kind, f"r{len(self.calls)}", args)
        self.calls.append(call)
        if kind == "order":
            self.orders.append(call)
        return call

    def _node(self) -> Node:
        """Return the running node (there is one, except inside a crash)."""
        assert self.node is not None, "no node is running"
        return self.node

    async def _until(self, at_s: float) -> None:
        """Wait until virtual time `at_s`, sending the provider's callbacks that fall due."""
        loop = virtual.current()
        while True:
            next_s = min(self.due[0][0], at_s) if self.due else at_s
            if next_s > loop.time():
                await asyncio.sleep(next_s - loop.time())
            if not self.due or self.due[0][0] > at_s:
                return
            _, _, call = heapq.heappop(self.due)
            self._spawn(call)

    # --- Clients ----------------------------------------------------------------------------

    def _spawn(self, call: Call) -> None:
        """Send `call` in a client task of its own (a crash cancels it with the node)."""
        asyncio.get_running_loop().create_task(self._send(call, retries=_RETRIES_IN_RUN_MAX))

    async def _send(self, call: Call, *, retries: int) -> None:
        """Send `call`, retrying with the same id after an unknown outcome, `retries` times."""
        for _ in range(retries + 1):
            if await self._attempt(call) is not Ending.UNKNOWN:
                return
            self.counts["unknown outcomes"] += 1
            await asyncio.sleep(self.clients.uniform(0.05, 2.0))

    async def _attempt(self, call: Call) -> Ending:
        """Send one attempt of `call` within a client deadline; record how it ended."""
        call.attempts += 1
        self.counts["attempts"] += 1
        node = self._node()
        try:
            async with asyncio.timeout(self.clients.uniform(1.0, 8.0)):
                reply = await invoke(node, call)
        except asyncio.CancelledError:
            # Cut by a crash: this attempt may have acted (a resend of a refused order may
            # have held it, for recovery to place), so an earlier refusal no longer holds and
            # the call is sent again after the restart.
            call.refusal = ""
            raise
        except Exception as error:  # noqa: BLE001 - sorted by ending_of; a bug is reported.
            return self._failed(call, error)
        self._answered(call, normal_form(reply))
        return Ending.ANSWERED

    def _failed(self, call: Call, error: Exception) -> Ending:
        """Record an attempt that raised `error`; return how it ended."""
        try:
            ending = ending_of(call, error)
        except AssertionError as bug:
            if known_assertion(bug) is None:
                self.broken.append(f"call {call.request_id} ({call.kind}) raised {bug!r}")
                return Ending.REFUSED
            self.counts["known bugs met"] += 1
            ending = Ending.UNKNOWN  # Answered INTERNAL: the client retries.
        except Exception as bug:  # noqa: BLE001 - a bug, reported by the driver.
            self.broken.append(f"call {call.request_id} ({call.kind}) raised {bug!r}")
            return Ending.REFUSED
        if ending is Ending.ANSWERED:
            self._answered(call, "opened")
        elif ending is Ending.REFUSED:
            self._refused(call, error)
        else:  # What an earlier refusal said no longer holds: this attempt may have acted.
            call.refusal = ""
        return ending

    def _answered(self, call: Call, answer: object) -> None:
        """Keep a call's first answer; a different later one is a violation."""
        if call.answer is None:
            call.answer = answer
            call.refusal = ""
            self.counts["acknowledged"] += 1
        elif call.answer != answer:
            self.broken.append(
                f"request {call.request_id} ({call.kind}) was answered {call.answer!r}, "
                f"then {answer!r} on a retry"
            )

    def _refused(self, call: Call, error: BaseException) -> None:
        """Keep a call's refusal; a refusal after an acknowledgement is a violation."""
        if call.answer is not None:
            self.broken.append(
                f"request {call.request_id} ({call.kind}) was acknowledged, then refused on a "
                f"retry: {error!r}"
            )
        call.refusal = str(getattr(error, "reason", "")) or repr(error)

    def _payment_created(self, request: PaymentRequest) -> None:
        """Plan the provider's callbacks for a new payment, as the provider's seed says."""
        draw = self.provider.draw
        now_s = virtual.current().time()
        to_deadline_s = max(request.payment_deadline_unix_s * 1000 - self.clock(), 0) / 1000
        soon_s = now_s + draw.uniform(0.05, 20.0)
        plans = {
            "confirm": [(soon_s, True)],
            "fail": [(soon_s, False)],
            "repeat": [(soon_s, True), (soon_s + draw.uniform(0, 3.0), True)],
            "late": [(now_s + to_deadline_s + draw.uniform(0.1, 10.0), True)],
            "both": [(soon_s, True), (soon_s + draw.uniform(0, 0.5), False)],
            "silent": [],
        }
        behaviour = draw.choices(list(_BEHAVIOURS), weights=list(_BEHAVIOURS.values()))[0]
        self.counts[f"payments {behaviour}"] += 1
        event_ids: dict[bool, str] = {}
        for due_s, confirmed in plans[behaviour]:
            # A repeat delivers the same provider event again, under a new request id.
            event_id = event_ids.setdefault(confirmed, f"evt-{len(self.calls)}")
            args = (request.trade_id, request.amount_minor, confirmed, event_id)
            call = self._new_call("callback", args)
            heapq.heappush(self.due, (due_s, call.number, call))

    def _raise_broken(self) -> None:
        """Raise the first violation a client task saw, in the driver's task."""
        if self.broken:
            raise Violation(self.broken[0])

    # --- Crashes ----------------------------------------------------------------------------

    async def restart(self) -> None:
        """Kill the node and its clients mid-flight, start a new node, check, resend."""
        await self._kill()
        # What the new node's own start leaves undone is its own to finish.
        self.left_at_start = self._left_to_restart()
        self.node = await self._start()
        self.audit.check_accounts("after recovery")
        if not self.finishing:
            for call in self.calls:
                if not call.settled and call.attempts:
                    self._spawn(call)

    async def _kill(self) -> None:
        """Cancel every task but the driver's, oldest first, and wait until all have ended."""
        loop = virtual.current()
        me = asyncio.current_task()
        self.node = None
        for _ in range(_KILL_ROUNDS_MAX):
            others = [task for task in loop.live_tasks() if task is not me]
            if not others:
                return
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
        raise Violation("tasks of a crashed node kept running after being cancelled")

    async def _start(self) -> Node:
        """Start a node and its recovery, again after each failed start (a restart loop)."""
        for _ in range(_START_ATTEMPTS_MAX):
            try:
                return await Node(self.store, self.provider, self.clock).start()
            except (StoreError, Overloaded):
                self.counts["failed starts"] += 1
                await self._kill()
        self.faults.heal()  # The operator repairs the database.
        return await Node(self.store, self.provider, self.clock).start()

    # --- The end ----------------------------------------------------------------------------

    async def _finish(self) -> None:
        """Heal the store, answer every call, pass every deadline, check it all."""
        self.finishing = True
        self.faults.heal()
        self.faults.lose = self.settings.lose
        for _ in range(_FINAL_ROUNDS_MAX):
            if self._settled():
                break
            await self._final_round()
        else:
            raise Violation(f"not settled after {_FINAL_ROUNDS_MAX} rounds: {self._left()}")
        self.audit.check_ended()
        await check_node_view(self._node(), self.audit)
        check_acknowledged(self.calls, self.audit)

    async def _final_round(self) -> None:
        """Deliver due callbacks, send each unsettled call once, let the clock pass deadlines."""
        if self.due:
            await self._until(max(due_s for due_s, _, _ in self.due))
        unsettled = [call for call in self.calls if not call.settled]
        await asyncio.gather(*(self._send(call, retries=0) for call in unsettled))
        self._raise_broken()
        self.audit.consume()
        deadlines = [t.created.payment_deadline.unix_ms for t in self.audit.trades.values()]
        await asyncio.sleep(max(max(deadlines, default=0) - self.clock(), 0) / 1000 + 2.0)
        node = self._node()
        try:
            async with asyncio.timeout(_QUIET_WAIT_S_MAX):
                while node.runner.busy:  # noqa: ASYNC110 - the runner is another task's state.
                    await asyncio.sleep(0.1)
        except TimeoutError:
            message = f"steps still running after {_QUIET_WAIT_S_MAX} s on a healed store"
            raise Violation(f"{message}: {self._left()}") from None
        self.counts["final rounds"] += 1
        quiet = all(call.settled for call in self.calls) and not self.due
        if quiet and not self._settled():
            if self._left_to_restart() == self.left_at_start:
                raise Violation(f"left undone, and nothing will do it: {self._left()}")
            # Steps this node left to its next start (a detached step failed, or met a known
            # bug): the next start is now.
            self.counts["restarts to finish"] += 1
            await self.restart()

    def _left_to_restart(self) -> int:
        """Count what may leave steps to the command side's next start, so far.

        A detached step that failed says so in the log, and a known bug's assertion stops
        one. A commit whose answer was lost leaves nothing to the next start: what follows
        it is driven once the store answers.
        """
        counts = self.counts
        return counts["steps left to restart"] + counts["known bugs met"]

    def _settled(self) -> bool:
        """Tell whether every call has its final word and nothing is left to happen."""
        return not self._left()

    def _left(self) -> str:
        """Say what is left to happen (nothing: the run may end)."""
        audit = self.audit
        audit.consume()
        ended = set(audit.ended_trades())
        left = {
            "calls": [call.request_id for call in self.calls if not call.settled],
            "callbacks due": len(self.due),
            "steps running": self._node().runner.running,
            "trades open": [trade_id for trade_id in audit.trades if trade_id not in ended],
            "order steps due": list(audit.placements),
            "buyer releases due": list(audit.buyer_release_due),
        }
        return ", ".join(f"{name} {value}" for name, value in left.items() if value)

    def _outcome(self) -> Outcome:
        """Return the run's figures and the digest of its whole log."""
        counts = self.counts
        counts["calls"] = len(self.calls)
        counts["faults injected"] = self.faults.injected + self.provider.failures
        counts["answers lost"] = self.faults.answers_lost
        counts["trades"] = len(self.audit.trades)
        counts["trades ended"] = len(self.audit.ended_trades())
        counts["events"] = len(self.database.events)
        counts["virtual ms"] = int((virtual.current().time() - self.start_s) * 1000)
        digest = hashlib.sha256()
        for event in self.database.events:
            digest.update(repr(tuple(event)).encode())
        return Outcome(self.seed, counts, digest.hexdigest())
