"""CPU time of processes on this machine, read from /proc (Linux): a server's, PostgreSQL's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

_CLOCK_TICKS_S: Final = os.sysconf("SC_CLK_TCK")


def _stat_cpu_ticks(stat: Path) -> int:
    """Return the user + system ticks of a /proc/<pid>/stat file."""
    # After the command name: state is field 3 of stat(5), utime 14 and stime 15.
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def process_cpu_s(pid: int) -> float:
    """Return a process's user + system CPU seconds so far (0 once it is gone)."""
    try:
        return _stat_cpu_ticks(Path(f"/proc/{pid}/stat")) / _CLOCK_TICKS_S
    except OSError:
        return 0.0


def postgres_cpu_s() -> float | None:
    """Return the CPU seconds used so far by this machine's PostgreSQL processes.

    None when none can be read here (PostgreSQL on another machine, or in a container).
    """
    ticks = 0
    found = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"postgres"):
                continue
            ticks += _stat_cpu_ticks(entry / "stat")
        except OSError:
            continue  # The process ended meanwhile.
        found = True
    return ticks / _CLOCK_TICKS_S if found else None
