"""Where one answer's CPU goes: each request hook and the view, timed in-process.

Why: the wrk rounds say how much more CPU an answer costs than bare Flask's, not which
control costs what. Here every ``before_request``/``after_request``/teardown hook and view
of an application is wrapped with a CPU timer (this thread's CPU, so waits on PostgreSQL
or Redis count only for the work of sending and reading), and one scenario's request is
replayed through the whole WSGI stack in this process. What no hook or view accounts for
is Flask and Werkzeug themselves: the request context, routing, the session interface and
building the response. No gunicorn and one thread: the figures are smaller than the
per-answer CPU of the wrk rounds, which add gunicorn's HTTP handling and thread hand-offs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

from bench.scenarios import Scenario
from bench.servers import PROXY_HEADERS

FLASK_ITSELF = "Flask and Werkzeug (context, routing, session, response)"
VIEW = "view"

# Friendlier names for the hooks of the libraries and modules Bastion registers; a hook
# from anywhere else is listed under its module's name, so nothing is lumped in silently.
RATE_LIMIT = "rate limit (Flask-Limiter; one Redis round trip, with an API token's state)"
LABELS = (
    ("flask_limiter.", RATE_LIMIT),
    ("bastion.security.ratelimit_headers", RATE_LIMIT),
    # Refuses sign-ins while the limiter's storage is down: part of the same control.
    ("bastion.observability.outages", RATE_LIMIT),
    # Names the token's revocation and state keys, which the limit's round trip reads.
    ("bastion.api.auth.offer_state_read", RATE_LIMIT),
    ("bastion.observability.logging", "request id and JSON request log"),
    ("bastion.observability.metrics", "Prometheus metrics"),
    ("bastion.security.talisman_fast", "security headers, CSP nonce, HTTPS"),
    ("bastion.security.headers", "security headers, CSP nonce, HTTPS"),
    ("flask_wtf.", "CSRF check"),
    # The policy is the first to look at current_user: a signed-in user is loaded here.
    ("bastion.security.access", "access policy (and loading a signed-in user)"),
    ("bastion.auth.sessions", "session identity"),
    ("flask_login.", "session identity"),
    ("bastion.api", "API: body limit, no cookie identity, CORS"),
    ("flask_sqlalchemy.", "database session clean-up"),
    ("bastion.errors", "ids beyond the schema's range"),
    ("bastion.static_assets", "static files: year-long caching of hashed URLs"),
)


def label_of(func: Callable[..., Any]) -> str:
    target = getattr(func, "func", func)  # functools.partial (Flask-Limiter's own hooks)
    name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
    for prefix, label in LABELS:
        if name.startswith(prefix):
            return label
    return getattr(target, "__module__", None) or repr(target)


@dataclass
class Timers:
    """CPU nanoseconds and calls per part, and what one timer costs (taken out again)."""

    spent: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    # Reading the thread's CPU clock is a system call here (about 0.6 us): half of a
    # timer's cost lands inside the part it times, half outside, in Flask's share.
    inside_ns: float = 0.0
    outside_ns: float = 0.0

    def clear(self) -> None:
        self.spent.clear()
        self.calls.clear()

    def calibrate(self, rounds: int = 20000) -> None:
        probe = _timed("calibration", lambda: None, self)
        begin = time.thread_time_ns()
        for _ in range(rounds):
            probe()
        timed = time.thread_time_ns() - begin
        begin = time.thread_time_ns()
        for _ in range(rounds):
            (lambda: None)()
        bare = time.thread_time_ns() - begin
        self.inside_ns = self.spent["calibration"] / rounds
        self.outside_ns = max(0.0, (timed - bare) / rounds - self.inside_ns)
        self.clear()


def _timed(label: str, func: Callable[..., Any], timers: Timers) -> Callable[..., Any]:
    spent, calls = timers.spent, timers.calls

    @wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time_ns()
        try:
            return func(*args, **kwargs)
        finally:
            spent[label] += time.thread_time_ns() - start
            calls[label] += 1

    return timed


def instrument(app: Flask) -> Timers:
    """Wrap every hook and view of ``app`` with a CPU timer."""
    timers = Timers()
    timers.calibrate()
    for attr in ("before_request_funcs", "after_request_funcs", "teardown_request_funcs"):
        table: dict[str | None, list[Callable[..., Any]]] = getattr(app, attr)
        for scope, funcs in table.items():
            table[scope] = [_timed(label_of(f), f, timers) for f in funcs]
    for scope, preprocessors in app.url_value_preprocessors.items():
        app.url_value_preprocessors[scope] = [_timed(label_of(f), f, timers) for f in preprocessors]
    app.teardown_appcontext_funcs = [
        _timed(label_of(f), f, timers) for f in app.teardown_appcontext_funcs
    ]
    for endpoint, view in list(app.view_functions.items()):
        app.view_functions[endpoint] = _timed(VIEW, view, timers)
    return timers


def _environ(s: Scenario, client_number: int) -> dict[str, Any]:
    """The scenario's request as the bench's proxy sends it, from its own client address."""
    headers = {**PROXY_HEADERS, **s.headers}
    headers["X-Forwarded-For"] = f"10.{client_number % 16}.{client_number // 16 % 256}.7"
    builder = EnvironBuilder(
        path=s.path,
        method=s.method,
        headers=list(headers.items()),
        data=s.body,
        base_url="http://127.0.0.1",
    )
    try:
        return builder.get_environ()
    finally:
        builder.close()


def measure(app: Flask, timers: Timers, s: Scenario, requests: int) -> dict[str, Any]:
    """Replay ``s`` ``requests`` times after a warm-up; microseconds per answer by part."""
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc: Any = None) -> Callable[[bytes], object]:
        statuses.append(status)
        return lambda _data: None  # the write() callable; Flask never uses it

    def replay(count: int, offset: int) -> int:
        cpu = 0
        for i in range(count):
            environ = _environ(s, offset + i)
            begin = time.thread_time_ns()
            body: Iterable[bytes] = app(environ, start_response)
            try:
                b"".join(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
            cpu += time.thread_time_ns() - begin
        return cpu

    replay(min(200, requests), 0)  # warm-up: pools, template and token caches
    timers.clear()
    statuses.clear()
    total = replay(requests, 200)
    wrong = [st for st in statuses if int(st.split()[0]) != s.expected_status]
    if wrong:
        raise RuntimeError(
            f"{s.name}: {len(wrong)} answers were {wrong[0]!r}, not {s.expected_status}"
        )
    # Without the timers' own cost: what the request costs when nothing measures it.
    total -= int((timers.inside_ns + timers.outside_ns) * sum(timers.calls.values()))
    parts = {
        label: max(0.0, ns - timers.inside_ns * timers.calls[label]) / requests / 1000
        for label, ns in timers.spent.items()
    }
    parts[FLASK_ITSELF] = max(0.0, total / requests / 1000 - sum(parts.values()))
    ordered = dict(sorted(parts.items(), key=lambda kv: -kv[1]))
    return {
        "total_us": round(total / requests / 1000, 1),
        "parts_us": {k: round(v, 1) for k, v in ordered.items()},
    }


def breakdown(app: Flask, scenarios: list[Scenario], requests: int = 2000) -> dict[str, Any]:
    """Per-part CPU for every available scenario but the login (Argon2 is the login)."""
    timers = instrument(app)
    result: dict[str, Any] = {"requests": requests, "scenarios": {}}
    for s in scenarios:
        if s.unavailable or s.name == "login":
            continue
        result["scenarios"][s.name] = measure(app, timers, s, requests)
    return result


def lines(doc: dict[str, Any]) -> list[str]:
    """A table: one row per part, one column per scenario, largest parts first."""
    scenarios: dict[str, Any] = doc.get("scenarios", {})
    if not scenarios:
        return []
    names = list(scenarios)
    totals: Counter[str] = Counter()
    for entry in scenarios.values():
        totals.update(entry["parts_us"])
    width = max(len(label) for label in totals) + 2
    out = [
        f"where an answer's CPU goes (in-process, one thread, {doc['requests']} requests; us):",
        " " * width + "".join(f"{n:>16}" for n in names),
    ]
    for label, _ in totals.most_common():
        cells = "".join(f"{scenarios[n]['parts_us'].get(label, 0.0):>16.0f}" for n in names)
        out.append(f"{label:<{width}}{cells}")
    out.append(f"{'total':<{width}}" + "".join(f"{scenarios[n]['total_us']:>16.0f}" for n in names))
    return out
