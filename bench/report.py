"""Turn recorded runs into the report: rows, Pointex's ratios, the issue's targets, JSON, PNG.

`python -m bench.report bench/results/latest.json` prints the Markdown table that
docs/benchmarks.md shows, from a result file (so the document is filled from a real run).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.recorder import Recorded, percentile_us

Row = dict[str, Any]
_US_PER_MS: Final = 1000
POINTEX_REFERENCE: Final = ("pointex", "postgres")
PEER: Final = ("eventsourcing", "postgres")
PEER_SCENARIOS: Final = ("uniform", "hot100", "hot4", "bulk")
# The projection replay drives no load: its rows carry events/s instead of calls and
# latencies, and have a table of their own (markdown_replay).
REPLAY: Final = "replay"


def summarize(recorded: Recorded, measure_s: int) -> Row:
    """Return throughput, latency percentiles (ms) and errors of one run."""
    latencies = sorted(recorded.latencies_us)
    return {
        "ok": recorded.ok,
        "ops_per_s": round(recorded.ok / measure_s, 1),
        "p50_ms": percentile_us(latencies, 500) / _US_PER_MS,
        "p99_ms": percentile_us(latencies, 990) / _US_PER_MS,
        "max_ms": (latencies[-1] if latencies else 0) / _US_PER_MS,
        "samples": len(latencies),
        "unfinished": recorded.unfinished,
        "errors": dict(sorted(recorded.errors.items())),
        "aborts": sum(n for key, n in recorded.errors.items() if key.startswith("ABORTED")),
    }


def counters_delta(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """Return how much each of the contender's counters grew."""
    return {key: after[key] - before.get(key, 0) for key in sorted(after)}


def median_row(runs: list[Row]) -> Row:
    """Return the run with the median throughput, with every run attached under `runs`."""
    ordered = sorted(runs, key=lambda run: run["ops_per_s"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        median["runs"] = [
            {key: run[key] for key in ("ok", "ops_per_s", "p50_ms", "p99_ms", "max_ms")}
            for run in runs
        ]
    return median


def _find(rows: list[Row], contender: str, store: str, scenario: str) -> Row | None:
    for row in rows:
        key = (row["contender"], row["store"], row["scenario"])
        if key == (contender, store, scenario) and row.get("status") == "ok":
            return row
    return None


def _x(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def ratios(rows: list[Row]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Return Pointex's throughput and p99 ratios to every other contender, per scenario."""
    result: dict[str, dict[str, dict[str, float | None]]] = {}
    pointex_rows = [r for r in rows if r["contender"] == "pointex" and r.get("status") == "ok"]
    for mine in pointex_rows:
        for other in rows:
            if other["contender"] == "pointex" or other.get("status") != "ok":
                continue
            if other["scenario"] != mine["scenario"]:
                continue
            key = f"pointex/{mine['store']} vs {other['contender']}/{other['store']}"
            ratio = {
                "throughput_x": _x(mine["ops_per_s"], other["ops_per_s"]),
                "p99_x": _x(mine["p99_ms"], other["p99_ms"]),
            }
            if mine["scenario"] == "market":
                # Orders are the throughput; settled trades are what the market is for.
                ratio["settled_x"] = _x(mine["settled_per_s"], other["settled_per_s"])
            result.setdefault(key, {})[mine["scenario"]] = ratio
        echo = _find(rows, "grpc-echo", "none", "echo")
        if echo is not None and mine["scenario"] == "uniform":
            key = f"pointex/{mine['store']} uniform vs grpc-echo/none echo"
            result[key] = {"uniform": {"throughput_x": _x(mine["ops_per_s"], echo["ops_per_s"])}}
    return result


def _target(
    name: str, value: float | None, goal: float, *, at_most: bool = False
) -> dict[str, Any]:
    """Return one target's verdict: value >= goal (value < goal when `at_most`)."""
    met = value is not None and (value < goal if at_most else value >= goal)
    return {"target": name, "goal": goal, "value": value, "met": met}


def _ratio_target(
    name: str, mine: float | None, other: float | None, goal: float
) -> dict[str, Any]:
    """Return the verdict on mine / other >= goal; met, with no value, when other did none."""
    if mine is not None and mine > 0 and other == 0:
        # A deadlock storm can leave the lock-based contender with no transfer at all: the
        # ratio is then unbounded, which meets any goal rather than going unmeasured.
        verdict = _target(name, None, goal)
        verdict.update(met=True, note="the other contender completed none")
        return verdict
    return _target(name, None if mine is None or other is None else _x(mine, other), goal)


def targets(rows: list[Row]) -> list[dict[str, Any]]:
    """Evaluate the issue's targets for Pointex on PostgreSQL (None: a row is missing)."""
    name, store = POINTEX_REFERENCE

    def ops(contender: str, row_store: str, scenario: str) -> float | None:
        row = _find(rows, contender, row_store, scenario)
        return None if row is None else float(row["ops_per_s"])

    def p99(contender: str, row_store: str, scenario: str) -> float | None:
        row = _find(rows, contender, row_store, scenario)
        return None if row is None else float(row["p99_ms"])

    def x(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else _x(a, b)

    hot4 = ops(name, store, "hot4")
    uniform = ops(name, store, "uniform")
    plain, sorted_ = "lockbased-request-order", "lockbased-sorted-order"
    return [
        _ratio_target("hot4 vs lockbased-request", hot4, ops(plain, "postgres", "hot4"), 10),
        _ratio_target("hot4 vs lockbased-sorted", hot4, ops(sorted_, "postgres", "hot4"), 3),
        _target(
            "hot4 p99 vs lockbased-request",
            x(p99(name, store, "hot4"), p99(plain, "postgres", "hot4")),
            1,
            at_most=True,
        ),
        _target(
            "hot4 p99 vs lockbased-sorted",
            x(p99(name, store, "hot4"), p99(sorted_, "postgres", "hot4")),
            1,
            at_most=True,
        ),
        _ratio_target("hot4 vs own uniform", hot4, uniform, 0.9),
        _ratio_target(
            "uniform vs lockbased-request", uniform, ops(plain, "postgres", "uniform"), 2
        ),
        _ratio_target("uniform vs grpc-echo unary", uniform, ops("grpc-echo", "none", "echo"), 0.5),
        _target("bulk transfers per second", ops(name, store, "bulk"), 20_000),
        # "Ahead of the eventsourcing peer in every scenario."
        *(
            _ratio_target(
                f"{scenario} vs eventsourcing peer",
                ops(name, store, scenario),
                ops(PEER[0], PEER[1], scenario),
                1,
            )
            for scenario in PEER_SCENARIOS
        ),
    ]


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write the result document, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def _label(row: Row) -> str:
    return f"{row['contender']}/{row['store']}" if row["store"] != "none" else row["contender"]


def _bar_text(value: float) -> str:
    # Below 10 the first decimal matters: 0.1 transfers/s is not nothing.
    if not value:
        return ""
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def peer_ratios(rows: list[Row]) -> dict[str, dict[str, float | None]]:
    """Return Pointex on PostgreSQL's throughput and p99 over the eventsourcing peer's."""
    result: dict[str, dict[str, float | None]] = {}
    for scenario in PEER_SCENARIOS:
        mine = _find(rows, *POINTEX_REFERENCE, scenario)
        peer = _find(rows, *PEER, scenario)
        if mine is not None and peer is not None:
            result[scenario] = {
                "throughput_x": _x(mine["ops_per_s"], peer["ops_per_s"]),
                "p99_x": _x(mine["p99_ms"], peer["p99_ms"]),
            }
    return result


def _peer_caption(rows: list[Row]) -> str:
    parts = [f"{s} {r['throughput_x']}x" for s, r in peer_ratios(rows).items()]
    if not parts:
        return ""
    return "pointex/postgres throughput over eventsourcing/postgres: " + ", ".join(parts)


def write_png(path: Path, rows: list[Row]) -> None:
    """Draw throughput and p99 per scenario, contenders side by side (log scales).

    The replay's rows are left out: they have no latency, and events/s is not calls/s.
    """
    import matplotlib as mpl  # noqa: PLC0415 - only the runner's last step needs it.

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the Agg backend.

    rows = [row for row in rows if row["scenario"] != REPLAY]
    scenarios = list(dict.fromkeys(row["scenario"] for row in rows))
    labels = list(dict.fromkeys(_label(row) for row in rows))
    figure, axes = plt.subplots(2, 1, figsize=(12, 8), constrained_layout=True)
    width = 0.8 / max(1, len(labels))
    for metric, axis, title in (
        ("ops_per_s", axes[0], "throughput (ok operations/s, log scale)"),
        ("p99_ms", axes[1], "p99 latency (ms, log scale)"),
    ):
        for offset, label in enumerate(labels):
            values = []
            for scenario in scenarios:
                row = next(
                    (r for r in rows if _label(r) == label and r["scenario"] == scenario), None
                )
                ok = row is not None and row.get("status") == "ok"
                values.append(row[metric] if ok and row is not None and row[metric] else 0)
            xs = [i + offset * width for i in range(len(scenarios))]
            bars = axis.bar(xs, values, width, label=label)
            # Upright, so that neighbouring bars' figures do not run into each other.
            texts = [_bar_text(v) for v in values]
            axis.bar_label(bars, labels=texts, fontsize=7, rotation=90, padding=2)
        axis.set_yscale("log")
        low, high = axis.get_ylim()
        axis.set_ylim(low, high * 8)  # Room above the tallest bar for its upright figure.
        axis.set_title(title)
        axis.set_xticks([i + width * (len(labels) - 1) / 2 for i in range(len(scenarios))])
        axis.set_xticklabels(scenarios)
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncol=3, fontsize=8)
    if caption := _peer_caption(rows):
        figure.suptitle(caption, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _count(value: int | None) -> str:
    """Return a server counter for the table: `n/a` when the contender does not keep it."""
    return "n/a" if value is None else f"{value:,}"


def markdown_table(document: dict[str, Any]) -> str:
    """Return the rows as a Markdown table (one line per contender and scenario)."""
    lines = [
        (
            "| contender | store | scenario | load | ok ops/s | p50 ms | p99 ms | max ms "
            "| errors | deadlocks | aborts | conflicts | retries |"
        ),
        "|---|---|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|",
    ]
    for row in document["rows"]:
        if row["scenario"] == REPLAY:
            continue  # In markdown_replay.
        if row.get("status") != "ok":
            lines.append(
                f"| {row['contender']} | {row['store']} | {row['scenario']} | "
                f"{row['concurrency']} | {row.get('status')} | | | | {row.get('note', '')} "
                "| | | | |"
            )
            continue
        errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "none"
        deadlocks, conflicts, retries = (
            _count(row.get(key)) for key in ("deadlocks", "conflicts", "retries")
        )
        lines.append(
            f"| {row['contender']} | {row['store']} | {row['scenario']} | {row['load']} | "
            f"{row['ops_per_s']:,.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['max_ms']:.1f} | {errors} | {deadlocks} | {row['aborts']} | "
            f"{conflicts} | {retries} |"
        )
    return "\n".join(lines)


def markdown_targets(document: dict[str, Any]) -> str:
    """Return the issue's targets and how this run fares against them, as a Markdown table."""
    lines = ["| target (Pointex on PostgreSQL) | goal | measured | met |", "|---|--:|--:|---|"]
    for target in document["targets"]:
        relation = "< " if target["target"].startswith("hot4 p99") else ">= "
        value = "n/a" if target["value"] is None else f"{target['value']:,}"
        if target.get("note"):
            value = f"{value} ({target['note']})"
        met = "yes" if target["met"] else "**no**"
        lines.append(f"| {target['target']} | {relation}{target['goal']:,} | {value} | {met} |")
    return "\n".join(lines)


def markdown_peer(document: dict[str, Any]) -> str:
    """Return Pointex's ratios to the eventsourcing peer as a Markdown table ('' if absent)."""
    found = peer_ratios(document["rows"])
    if not found:
        return ""
    lines = [
        "| scenario | Pointex/postgres throughput ÷ peer | Pointex/postgres p99 ÷ peer |",
        "|---|--:|--:|",
    ]
    lines += [f"| {s} | {r['throughput_x']} | {r['p99_x']} |" for s, r in found.items()]
    return "\n".join(lines)


def markdown_market(document: dict[str, Any]) -> str:
    """Return the market rows (orders, trades, settlements, the check) as a table ('' if none)."""
    rows = [r for r in document["rows"] if r["scenario"] == "market" and "check" in r]
    if not rows:
        return ""
    lines = [
        (
            "| contender | store | orders/s | trades/s | settled/s | p50 ms | p99 ms | max ms "
            "| errors | deadlocks | aborts | settled / cancelled (all) | points conserved |"
        ),
        "|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|---|",
    ]
    for row in rows:
        check = row["check"]
        errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "none"
        verdict = "yes" if check["ok"] else "**no**: " + "; ".join(check["failures"])
        lines.append(
            f"| {row['contender']} | {row['store']} | {row['ops_per_s']:,.0f} | "
            f"{row['trades_per_s']:,.0f} | {row['settled_per_s']:,.0f} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['max_ms']:.1f} | {errors} | "
            f"{_count(row.get('deadlocks'))} | {row['aborts']} | "
            f"{check['trades_settled']:,} / {check['trades_cancelled']:,} | {verdict} |"
        )
    return "\n".join(lines)


def markdown_replay(document: dict[str, Any]) -> str:
    """Return the projection replay rows as a Markdown table ('' if the run had none)."""
    rows = [r for r in document["rows"] if r["scenario"] == REPLAY]
    if not rows:
        return ""
    lines = [
        (
            "| contender | store | read store | events in log | added by top-up "
            "| events replayed | replay s | replay events/s | live catch-up s "
            "| catch-up events/s |"
        ),
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        read_store = row.get("read_store", "n/a")
        if row.get("status") != "ok":
            note = f"{row.get('status')}: {row.get('note', '')}"
            lines.append(
                f"| {row['contender']} | {row['store']} | {read_store} | {note} | | | | | | |"
            )
            continue
        lines.append(
            f"| {row['contender']} | {row['store']} | {read_store} | {row['log_events']:,} | "
            f"{row['topped_up_events']:,} | {row['events_replayed']:,} | {row['replay_s']:.2f} | "
            f"{row['events_per_s']:,.0f} | {row['catch_up_s']:.2f} | "
            f"{row['catch_up_events_per_s']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the Markdown tables (rows, then targets) of a result file; redraw its chart."""
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("result", type=Path, nargs="?", default=Path("bench/results/latest.json"))
    parser.add_argument("--png", type=Path, help="also redraw the chart from the file, here")
    args = parser.parse_args(argv)
    document = json.loads(args.result.read_text())
    if args.png is not None:
        write_png(args.png, [row for row in document["rows"] if row.get("status") == "ok"])
    print(markdown_table(document))
    print()
    print(markdown_targets(document))
    if market := markdown_market(document):
        print()
        print(market)
    if replay := markdown_replay(document):
        print()
        print(replay)
    if peer := markdown_peer(document):
        print()
        print(peer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
