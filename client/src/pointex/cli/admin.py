"""`pointex audit` and `pointex status`: is the data consistent, are the servers well."""

from __future__ import annotations

import argparse
from typing import Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pointex.cli import formatting
from pointex.cli.errors import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE
from pointex.cli.output import Cell, Output, status_text, to_json
from pointex.cli.registry import Subcommands, add_after, bounded_int, leaf
from pointex.cli.session import Session
from pointex.client.errors import PointexError, from_rpc_error
from pointex.v1 import command_service_pb2 as cmd
from pointex.v1 import query_service_pb2 as qry

_INVARIANT = qry.Invariant.DESCRIPTOR
_REBUILD = qry.RebuildState.DESCRIPTOR
_VIOLATIONS_MAX: Final = 1000  # The server's bound on listed violations.
_UNREACHABLE: Final = "UNREACHABLE"


def register(group: Subcommands) -> None:
    """Add `audit` and `status`."""
    audit = leaf(
        group,
        "audit",
        "check the invariants (I1 conservation, I2 escrow, bounds); exit 1 on a violation",
        _audit,
    )
    audit.add_argument(
        "--max-violations",
        type=bounded_int(1, _VIOLATIONS_MAX),
        default=100,
        help="most violations to list; all are counted (default %(default)s)",
    )
    add_after(audit)
    leaf(group, "status", "health of both servers and the projections' progress", _status)


def _audit(session: Session, out: Output, args: argparse.Namespace) -> int:
    request = qry.CheckInvariantsRequest(
        min_position=args.after, max_violations=args.max_violations
    )
    reply = session.read(session.queries.CheckInvariants, request)
    code = EXIT_OK if reply.ok else EXIT_REFUSED
    if out.json_mode:
        out.json(to_json(reply))
        return code
    totals: list[tuple[str, Cell]] = [
        ("result", status_text("OK") if reply.ok else status_text("REJECTED")),
        ("as of", formatting.position_text(reply.as_of)),
        ("accounts", f"{reply.account_count:,}"),
        ("minted", formatting.points(reply.minted_points)),
        ("burned", formatting.points(reply.burned_points)),
        ("available", formatting.points(reply.available_points)),
        ("held", formatting.points(reply.held_points)),
        ("pending", formatting.points(reply.pending_points)),
        ("in flight", formatting.points(reply.in_flight_points)),
        ("open sell orders", formatting.points(reply.open_sell_quantity_points)),
        ("pending trades", formatting.points(reply.pending_trade_quantity_points)),
        ("violations", f"{reply.violation_count:,}"),
    ]
    out.fields("invariant audit", totals)
    if reply.violations:
        rows = [
            (
                formatting.enum_label(_INVARIANT, violation.invariant),
                ", ".join(violation.account_ids) or "(all)",
                formatting.points(violation.expected_points),
                formatting.points(violation.actual_points),
                violation.message,
            )
            for violation in reply.violations
        ]
        caption = f"{len(rows)} of {reply.violation_count:,} listed"
        columns = ("invariant", "accounts", "expected#", "actual#", "message")
        out.table("violations", columns, rows, caption=caption)
    return code


def _health(session: Session, target: str) -> str:
    """Return a server's health status name, or UNREACHABLE; health needs no token."""
    stub = health_pb2_grpc.HealthStub(session.channel(target))
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=session.settings.timeout_s)
    except grpc.RpcError as error:
        failure = from_rpc_error(error)
        return _UNREACHABLE if failure.unreachable else failure.code.name
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _status(session: Session, out: Output, _args: argparse.Namespace) -> int:
    settings = session.settings
    health = {
        "command_server": (settings.command_target, _health(session, settings.command_target)),
        "query_server": (settings.query_target, _health(session, settings.query_target)),
    }
    projection: qry.GetProjectionStatusResponse | None = None
    problem = ""
    if health["query_server"][1] != _UNREACHABLE:
        try:
            projection = session.read(
                session.queries.GetProjectionStatus, qry.GetProjectionStatusRequest()
            )
        except PointexError as failed:
            problem = failed.line()
    leases, leases_problem = _slice_leases(session, health["command_server"][1])
    code = _status_code([state for _, state in health.values()], projection)
    if out.json_mode:
        out.json(
            {
                **{
                    name: {"target": target, "health": state}
                    for name, (target, state) in health.items()
                },
                "projections": to_json(projection) if projection else None,
                "projections_error": problem or None,
                "slice_leases": to_json(leases) if leases is not None else None,
                "slice_leases_error": leases_problem or None,
            }
        )
        return code
    rows = [
        (name.replace("_", " "), target, status_text(state))
        for name, (target, state) in health.items()
    ]
    out.table("servers", ("server", "target", "health"), rows)
    if projection is not None:
        out.fields("projections", _projection_fields(projection))
    elif problem:
        out.error(f"projection status: {problem}")
    if leases is not None:
        _print_slice_leases(out, leases)
    elif leases_problem:
        out.error(f"slice leases: {leases_problem}")
    return code


def _slice_leases(
    session: Session, command_health: str
) -> tuple[cmd.ListSliceLeasesResponse | None, str]:
    """Return who owns the slice ranges (operator only), or why it is not known."""
    if command_health == _UNREACHABLE:
        return None, ""
    try:
        return session.read(session.commands.ListSliceLeases, cmd.ListSliceLeasesRequest()), ""
    except PointexError as failed:
        if failed.code == grpc.StatusCode.PERMISSION_DENIED:
            return None, ""  # A partner's status: the owners are the operator's to see.
        return None, failed.line()


def _print_slice_leases(out: Output, reply: cmd.ListSliceLeasesResponse) -> None:
    """Print the slice ranges' owners, one row per owner and epoch (docs/scale-out.md)."""
    if not reply.leases:
        out.fields("slice ranges", [("owners", "none: the command server runs alone")])
        return
    groups: dict[tuple[str, str, int], list[cmd.SliceLease]] = {}
    for lease in reply.leases:
        groups.setdefault((lease.owner_id, lease.owner_address, lease.epoch), []).append(lease)
    rows = [
        (
            owner_id + (" (answered)" if owner_id == reply.answered_by else ""),
            address or "-",
            f"{epoch:,}",
            _ranges_text([lease.slice_range for lease in leases]),
            _lease_age_text(min(lease.expires_in_ms for lease in leases)),
        )
        for (owner_id, address, epoch), leases in groups.items()
    ]
    out.table("slice ranges", ("owner", "address", "epoch#", "ranges", "lease"), rows)


def _ranges_text(ranges: list[int]) -> str:
    """Return ranges as runs, e.g. "0-31, 40"."""
    runs: list[list[int]] = []
    for slice_range in sorted(ranges):
        if runs and slice_range == runs[-1][-1] + 1:
            runs[-1].append(slice_range)
        else:
            runs.append([slice_range])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}" for run in runs)


def _lease_age_text(expires_in_ms: int) -> str:
    """Return how long the soonest lease of a row has yet, or since when it expired."""
    if expires_in_ms >= 0:
        return f"expires in {expires_in_ms / 1000:.1f} s"
    return f"expired {-expires_in_ms / 1000:.1f} s ago"


def _status_code(states: list[str], projection: qry.GetProjectionStatusResponse | None) -> int:
    if _UNREACHABLE in states:
        return EXIT_UNREACHABLE
    serving = all(state == "SERVING" for state in states)
    return EXIT_OK if serving and projection is not None else EXIT_REFUSED


def _projection_fields(reply: qry.GetProjectionStatusResponse) -> list[tuple[str, Cell]]:
    connected = status_text("SERVING" if reply.feed_connected else "NOT_SERVING")
    connected.plain = "connected" if reply.feed_connected else "disconnected"
    pairs: list[tuple[str, Cell]] = [
        ("applied through", formatting.position_text(reply.as_of)),
        ("feed head", formatting.position_text(reply.feed_head)),
        ("head seen at", formatting.timestamp(reply.feed_head_seen_at)),
        ("lag", f"{reply.lag_events:,} events"),
        ("feed", connected),
    ]
    if reply.HasField("rebuild"):
        rebuild = reply.rebuild
        state = formatting.enum_label(_REBUILD, rebuild.state)
        progress = f"{rebuild.events_applied:,} of at least {rebuild.events_at_start:,} events"
        pairs.append(("rebuild", f"{rebuild.rebuild_id} {state}: {progress}"))
        if rebuild.error_message:
            pairs.append(("rebuild error", rebuild.error_message))
    return pairs
