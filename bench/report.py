"""Turn rounds of wrk results into the table and the JSON document `make bench` writes.

The JSON shape is fixed (other tools read it)::

    {"machine": "...", "scenarios": [{"name": "api_list", "connections": 16,
      "bastion_rps": ..., "bare_rps": ..., "ratio": ..., "p50_ms": ..., "p99_ms": ...,
      "errors": 0}, ...]}

Figures are medians over the rounds (latencies are Bastion's; the baseline's own p50/p99
are kept beside them as ``bare_p50_ms``/``bare_p99_ms``, and its p99/p50 is the table's
"bare" column); each also carries its min-max so a noisy run shows as noisy instead of
looking precise.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.wrk import WrkResult

SCENARIO_NAMES = ("api_list", "home_html", "article_html", "signed_in_html", "login")


@dataclass
class ScenarioRounds:
    """Every round of one scenario at one connection count, for both servers."""

    name: str
    connections: int
    bastion: list[WrkResult] = field(default_factory=list)
    bare: list[WrkResult] = field(default_factory=list)
    # Bastion answers whose status was not the one the scenario expects (from its log).
    unexpected_status: list[int] = field(default_factory=list)
    unavailable: str | None = None
    # CPU per answer (microseconds), per round; None where /proc or INFO gave nothing.
    bastion_cpu_us: list[float | None] = field(default_factory=list)
    redis_cpu_us: list[float | None] = field(default_factory=list)
    bare_cpu_us: list[float | None] = field(default_factory=list)


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def _cpu(rounds: ScenarioRounds) -> dict[str, Any] | None:
    """CPU per answer: Bastion's processes, the Redis server, the bare app; medians and ranges.

    ``cost`` is what one Bastion answer costs in CPU (its workers plus Redis) over what
    the bare app's answer costs: on a machine whose cores are all busy, the throughput
    ratio cannot be better than its inverse.
    """
    rows = [
        (a, r or 0.0, b)
        for a, r, b in zip(
            rounds.bastion_cpu_us, rounds.redis_cpu_us, rounds.bare_cpu_us, strict=False
        )
        if a is not None and b
    ]
    if not rows:
        return None
    return {
        "bastion_us": _spread([a for a, _, _ in rows]),
        "redis_us": _spread([r for _, r, _ in rows]),
        "bare_us": _spread([b for _, _, b in rows]),
        "cost": _spread([(a + r) / b for a, r, b in rows]),
    }


def summarise(rounds: ScenarioRounds) -> dict[str, Any]:
    """One JSON entry: medians with min-max, errors summed over every round, never hidden."""
    entry: dict[str, Any] = {"name": rounds.name, "connections": rounds.connections}
    if rounds.unavailable or not rounds.bastion or not rounds.bare:
        entry.update(
            bastion_rps=None,
            bare_rps=None,
            ratio=None,
            p50_ms=None,
            p99_ms=None,
            errors=None,
            available=False,
            reason=rounds.unavailable or "no rounds ran",
        )
        return entry
    bastion_rps = _spread([r.rps for r in rounds.bastion])
    bare_rps = _spread([r.rps for r in rounds.bare])
    ratios = _spread(
        [a.rps / b.rps if b.rps else 0.0 for a, b in zip(rounds.bastion, rounds.bare, strict=False)]
    )
    p50 = _spread([r.p50_ms for r in rounds.bastion])
    p99 = _spread([r.p99_ms for r in rounds.bastion])
    # The baseline's own tail on the same machine: what p99/p50 the machine allows.
    bare_p50 = statistics.median(r.p50_ms for r in rounds.bare)
    bare_p99 = statistics.median(r.p99_ms for r in rounds.bare)
    unexpected = sum(rounds.unexpected_status)
    # wrk's non-2xx count and the log's unexpected statuses describe the same answers
    # (>= 400 shows in both); the larger one is the honest count.
    bastion_errors = sum(r.socket_errors for r in rounds.bastion) + max(
        sum(r.non_2xx for r in rounds.bastion), unexpected
    )
    bare_errors = sum(r.errors for r in rounds.bare)
    entry.update(
        bastion_rps=bastion_rps["median"],
        bare_rps=bare_rps["median"],
        ratio=ratios["median"],
        p50_ms=p50["median"],
        p99_ms=p99["median"],
        errors=bastion_errors,
        bare_errors=bare_errors,
        bare_p50_ms=round(bare_p50, 3),
        bare_p99_ms=round(bare_p99, 3),
        rounds=len(rounds.bastion),
        range={
            "bastion_rps": bastion_rps,
            "bare_rps": bare_rps,
            "ratio": ratios,
            "p50_ms": p50,
            "p99_ms": p99,
        },
    )
    if (cpu := _cpu(rounds)) is not None:
        entry["cpu_per_request"] = cpu
    return entry


def document(machine: str, entries: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    return {"machine": machine, "scenarios": entries, **extra}


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def _cpu_cell(cpu: dict[str, Any] | None) -> str:
    """Bastion's CPU per answer (its workers plus Redis) / the bare app's, e.g. ``1420/330``."""
    if not cpu:
        return "-"
    ours = cpu["bastion_us"]["median"] + cpu["redis_us"]["median"]
    return f"{ours:.0f}/{cpu['bare_us']['median']:.0f}"


def table(entries: list[dict[str, Any]]) -> str:
    """A fixed-width table: one line per scenario and connection count."""
    header = (
        f"{'scenario':<16}{'conn':>5}{'bastion r/s':>20}{'bare r/s':>20}"
        f"{'ratio':>18}{'p50 ms':>9}{'p99 ms':>9}{'p99/p50':>8}{'bare':>6}{'errors':>8}"
        f"{'cpu us/req':>18}"
    )
    lines = [header, "-" * len(header)]
    for e in entries:
        if not e.get("available", True):
            lines.append(f"{e['name']:<16}{e['connections']:>5}   not available: {e['reason']}")
            continue

        def cell(key: str, spec: str, rng: dict[str, Any] = e["range"]) -> str:
            r = rng[key]
            return (
                f"{format(r['median'], spec)} ({format(r['min'], spec)}-{format(r['max'], spec)})"
            )

        skew = e["p99_ms"] / e["p50_ms"] if e["p50_ms"] else 0.0
        bare_p50 = e.get("bare_p50_ms") or 0.0
        bare_skew = (e.get("bare_p99_ms") or 0.0) / bare_p50 if bare_p50 else 0.0
        errors = f"{e['errors']}" + (f"/{e['bare_errors']}" if e.get("bare_errors") else "")
        lines.append(
            f"{e['name']:<16}{e['connections']:>5}{cell('bastion_rps', '.0f'):>20}"
            f"{cell('bare_rps', '.0f'):>20}{cell('ratio', '.2f'):>18}"
            f"{_fmt(e['p50_ms'], '.1f'):>9}{_fmt(e['p99_ms'], '.1f'):>9}{skew:>8.1f}"
            f"{bare_skew:>6.1f}{errors:>8}{_cpu_cell(e.get('cpu_per_request')):>18}"
        )
    return "\n".join(lines)
