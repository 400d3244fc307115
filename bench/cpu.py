"""CPU time spent per answer: a steadier figure than requests/s on a shared machine.

Requests per second on two shared cores move with the neighbours, and with how the kernel
happened to spread wrk's keep-alive connections over gunicorn's workers: the worker that
wakes first may accept all of them, and one process holds the GIL of one core, so the same
server can serve half as much in one run as in the next. The CPU a server spent on each
answer depends on neither, so the bench reports it beside the rates: Bastion's gunicorn
processes plus the Redis server they call, and the bare app's gunicorn processes.

Read from ``/proc`` (Linux); elsewhere the figures are simply absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROC = Path("/proc")


def parse_stat(text: str) -> tuple[int, int, int, int]:
    """utime, stime, cutime, cstime (clock ticks) from one ``/proc/<pid>/stat`` line.

    The command name may itself hold spaces and parentheses, so fields are counted from
    the last ``)``.
    """
    fields = text.rsplit(")", 1)[1].split()
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14])


def _stat(pid: int) -> tuple[int, int, int, int] | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, IndexError, ValueError):
        return None  # exited between listing and reading: its time is in the parent's


def _children(pid: int) -> list[int]:
    path = PROC / str(pid) / "task" / str(pid) / "children"
    try:
        return [int(p) for p in path.read_text().split()]
    except (OSError, ValueError):
        return []


def server_cpu_seconds(master_pid: int) -> float | None:
    """CPU used so far by a gunicorn master and every worker it has had.

    Live workers count with their own time; a worker that exited (recycled after its
    request quota) was reaped by the master, whose ``cutime``/``cstime`` then hold it, so
    a worker replaced during a run is neither lost nor counted twice.
    """
    master = _stat(master_pid)
    if master is None:
        return None
    ticks = sum(master)
    for child in _children(master_pid):
        stat = _stat(child)
        if stat is not None:
            ticks += stat[0] + stat[1]
    return ticks / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds(client: Any) -> float | None:
    """The Redis server's own CPU (``INFO cpu``: main and background threads)."""
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except Exception:
        return None  # a server that refuses INFO: the figure is absent, the run goes on


def per_request_us(before: float | None, after: float | None, requests: int) -> float | None:
    """Microseconds of CPU per answer between two readings, or None if either is missing."""
    if before is None or after is None or requests <= 0:
        return None
    return round((after - before) * 1e6 / requests, 1)
