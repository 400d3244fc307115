"""Security counters: one call site per event, whatever exports them.

Metrics export is wired in by ``bastion.observability.metrics`` when enabled; until then an
increment costs a dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Callable

_sinks: list[Callable[[str, dict[str, str]], None]] = []

NAMES = (
    "login_failures",
    "login_throttled",
    "2fa_failures",
    "rate_limited",
    "csrf_failures",
    "csp_reports",
    "upload_rejections",
    "token_reuse_detected",
)


def increment(name: str, **labels: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown counter {name}")
    for sink in _sinks:
        sink(name, labels)


def add_sink(sink: Callable[[str, dict[str, str]], None]) -> None:
    if sink not in _sinks:
        _sinks.append(sink)
