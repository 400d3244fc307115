"""Measurements beside the load table: machine, hashing, throttling, start-up, memory."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis
import requests
from sqlalchemy import create_engine, text

from bench import wrk
from bench.servers import PG_URL, PROXY_HEADERS, REDIS_URL, ROOT, Server


def machine() -> str:
    """CPU model, cores and the versions of everything on the request path."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            pg = str(conn.execute(text("SHOW server_version")).scalar()).split()[0]
    finally:
        engine.dispose()
    redis_version = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores (load {load}); Python {platform.python_version()}, "
        f"Flask {version('flask')}, gunicorn {version('gunicorn')}, "
        f"PostgreSQL {pg}, Redis {redis_version}, {platform.system()} {platform.release()}"
    )


def argon2_verify_rate(seconds: float = 3.0) -> dict[str, Any]:
    """Raw verifications per second with Bastion's configured Argon2 parameters.

    Runs in this process (argon2-cffi releases the GIL), once with one thread and once with
    one per core; the better figure is the machine's ceiling for password logins.
    """
    from bastion.security.passwords import _hasher, hash_password

    stored = hash_password("bench password")
    best = 0.0
    for threads in sorted({1, os.cpu_count() or 1, 2 * (os.cpu_count() or 1)}):
        deadline = time.perf_counter() + seconds

        def work(deadline: float = deadline) -> int:
            n = 0
            while time.perf_counter() < deadline:
                _hasher.verify(stored, "bench password")
                n += 1
            return n

        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            total = sum(pool.map(lambda _: work(), range(threads)))
        best = max(best, total / (time.perf_counter() - start))
    params = _hasher
    return {
        "verify_per_s": round(best, 1),
        "time_cost": params.time_cost,
        "memory_kib": params.memory_cost,
        "parallelism": params.parallelism,
    }


def throttle_probe(
    server: Server, method: str, path: str, headers: dict[str, str], body: str, attempts: int = 30
) -> dict[str, int]:
    """Wrong passwords from ONE address: how many reach the hash before 429 stops them."""
    statuses: dict[int, int] = {}
    all_headers = {**PROXY_HEADERS, **headers, "X-Forwarded-For": "192.0.2.77"}
    for _ in range(attempts):
        resp = requests.request(
            method,
            server.url + path,
            headers=all_headers,
            data=body,
            timeout=120,
            allow_redirects=False,
        )
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
    return {
        "attempts": attempts,
        "throttled_429": statuses.get(429, 0),
        "reached_app": attempts - statuses.get(429, 0),
    }


_STARTUP_CODE = """
import time
t0, c0 = time.perf_counter(), time.process_time()
from bastion import create_app
app = create_app()
t1 = time.perf_counter()
client = app.test_client()
resp = client.get("/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.9.9.9"},
                  base_url="http://127.0.0.1")
assert resp.status_code == 200, resp.status_code
print(f"{t1 - t0:.4f} {time.perf_counter() - t0:.4f} {time.process_time() - c0:.4f}")
"""


def startup(env: dict[str, str], runs: int = 3) -> dict[str, float]:
    """Fresh processes: create_app() (with the imports it needs) and the first request.

    Wall time on a shared machine mostly measures the neighbours; the CPU time of the same
    span is reported beside it. The best of ``runs`` is kept.
    """
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _STARTUP_CODE],
            env={**os.environ, **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        samples.append([float(x) for x in out.split()[-3:]])
    return {
        "create_app_s": round(min(s[0] for s in samples), 3),
        "first_response_s": round(min(s[1] for s in samples), 3),
        "first_response_cpu_s": round(min(s[2] for s in samples), 3),
    }


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _counted_script(base: str, per_thread: int) -> str:
    """Append a response counter that stops each wrk thread after ``per_thread`` answers."""
    return base + (
        "local seen = 0\n"
        "response = function(status, headers, body)\n"
        f"  seen = seen + 1\n  if seen >= {per_thread} then wrk.thread:stop() end\n"
        "end\n"
    )


def memory_growth(
    server: Server, script: str, first: int = 10_000, total: int = 50_000
) -> dict[str, Any]:
    """RSS of a single never-recycled worker after ``first`` and after ``total`` requests."""
    (pid,) = server.worker_pids()
    threads = 2
    wrk.run(
        server.url,
        _counted_script(script, first // threads),
        connections=16,
        seconds=600,
        threads=threads,
    )
    after_first = _rss_kib(pid)
    wrk.run(
        server.url,
        _counted_script(script, (total - first) // threads),
        connections=16,
        seconds=600,
        threads=threads,
    )
    after_total = _rss_kib(pid)
    if server.worker_pids() != [pid]:
        raise RuntimeError("the measured worker was replaced during the memory probe")
    return {
        "rss_mib_after_first": round(after_first / 1024, 1),
        "rss_mib_after_total": round(after_total / 1024, 1),
        "growth_pct": round(100 * (after_total - after_first) / after_first, 1),
        "requests": [first, total],
    }
