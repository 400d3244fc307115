"""Drive wrk and read its report.

wrk is the load client because it is written in C and does not starve the servers it
measures (a Python client on the same two cores would). Headers, bodies and per-request
client addresses come from a small Lua script generated per scenario.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "wrk is not installed: `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`."

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_PERCENTILE_RE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_REQUESTS_RE = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", re.M)
_RPS_RE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_SOCKET_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)")


class WrkError(RuntimeError):
    """wrk failed or printed something this parser does not understand."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    # wrk counts answers with status >= 400 here (its own wording says "Non-2xx or 3xx").
    non_2xx: int

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


def parse(output: str) -> WrkResult:
    """Read wrk's text report (run with ``--latency``)."""
    percentiles = {p: float(v) * _UNITS_MS[u] for p, v, u in _PERCENTILE_RE.findall(output)}
    requests = _REQUESTS_RE.search(output)
    rps = _RPS_RE.search(output)
    if requests is None or rps is None or set(percentiles) != {"50", "99"}:
        raise WrkError(f"unexpected wrk output:\n{output}")
    socket = _SOCKET_RE.search(output)
    non2xx = _NON2XX_RE.search(output)
    return WrkResult(
        requests=int(requests.group(1)),
        rps=float(rps.group(1)),
        p50_ms=round(percentiles["50"], 3),
        p99_ms=round(percentiles["99"], 3),
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
    )


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def lua_script(
    method: str,
    path: str,
    headers: dict[str, str],
    body: str | None = None,
    *,
    body_template: str | None = None,
    users: list[str] | None = None,
) -> str:
    """A wrk script sending one request shape from many client addresses.

    Every request carries ``X-Forwarded-For`` with an address drawn from 2^20 private ones,
    as real traffic does: per-address rate limits stay in force without one bench client
    being throttled as a single abuser. ``body_template`` may contain ``{user}``, replaced
    by a random name from ``users`` (login scenario).
    """
    lines = [
        'math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0) % 100000)',
        "local headers = {}",
    ]
    for name, value in headers.items():
        lines.append(f"headers[{_lua_string(name)}] = {_lua_string(value)}")
    if users:
        lines.append("local users = {" + ", ".join(_lua_string(u) for u in users) + "}")
    template = body_template if body_template is not None else body
    if template is not None and users:
        before, _, after = template.partition("{user}")
        lines.append(f"local before, after = {_lua_string(before)}, {_lua_string(after)}")
        body_expr = "before .. users[math.random(#users)] .. after"
    elif template is not None:
        lines.append(f"local body = {_lua_string(template)}")
        body_expr = "body"
    else:
        body_expr = "nil"
    lines += [
        "request = function()",
        '  headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.random(0, 15),'
        " math.random(0, 255), math.random(1, 254))",
        f"  return wrk.format({_lua_string(method)}, {_lua_string(path)}, headers, {body_expr})",
        "end",
    ]
    return "\n".join(lines) + "\n"


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError(INSTALL_HINT)
    return path


def run(url: str, script: str, *, connections: int, seconds: float, threads: int = 2) -> WrkResult:
    """One wrk run against ``url`` (scheme, host and port; the script gives the path)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
        script_path = Path(fh.name)
    try:
        proc = subprocess.run(
            [
                wrk_path(),
                f"-t{min(threads, connections)}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "--latency",
                "-s",
                str(script_path),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    finally:
        script_path.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {proc.stderr or proc.stdout}")
    return parse(proc.stdout)
