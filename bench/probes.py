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
from flask import Flask
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


def argon2_verify_rate(concurrency: int, seconds: float = 3.0) -> dict[str, Any]:
    """Raw verifications per second with Bastion's configured Argon2 parameters.

    Measured in this process (argon2-cffi releases the GIL) at one thread, one per core and
    at the login scenario's concurrency; the last is what the logins/s compare with.
    """
    from bastion.security.passwords import _hasher, hash_password

    stored = hash_password("bench password")
    rates = {}
    for threads in sorted({1, os.cpu_count() or 1, concurrency}):
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
        rates[threads] = round(total / (time.perf_counter() - start), 2)
    return {
        "verify_per_s": rates[concurrency],
        "verify_per_s_by_threads": rates,
        "time_cost": _hasher.time_cost,
        "memory_kib": _hasher.memory_cost,
        "parallelism": _hasher.parallelism,
    }


def login_cpu(app: Flask, users: list[str], password: str, attempts: int = 5) -> dict[str, float]:
    """CPU seconds of one whole login request against one bare verification, in-process.

    CPU time (all threads of this process) does not depend on what else the machine runs,
    so this shows what the application adds around the hash even on a busy machine. Call
    it outside an app context: each request must load its user afresh, as in a server.
    """
    import re

    from bastion.security.passwords import _hasher, hash_password

    stored = hash_password(password)
    start = time.process_time()
    for _ in range(attempts):
        _hasher.verify(stored, password)
    verify = (time.process_time() - start) / attempts
    login = 0.0
    headers = {**PROXY_HEADERS, "Referer": "https://127.0.0.1/auth/login"}
    for i, user in enumerate(users[:attempts]):
        client = app.test_client()
        page = client.get("/auth/login", headers=headers, base_url="http://127.0.0.1")
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True))
        if match is None:
            raise RuntimeError(f"no CSRF token on the login form ({page.status_code})")
        form = {"csrf_token": match.group(1), "username": user, "password": password}
        start = time.process_time()
        resp = client.post(
            "/auth/login",
            data=form,
            base_url="http://127.0.0.1",
            headers={**headers, "X-Forwarded-For": f"198.51.100.{i + 1}"},
        )
        login += time.process_time() - start
        if resp.status_code != 302:
            raise RuntimeError(f"in-process login answered {resp.status_code}")
    login /= attempts
    return {
        "login_cpu_s": round(login, 4),
        "verify_cpu_s": round(verify, 4),
        "overhead_pct": round(100 * (login - verify) / verify, 1),
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


def _load_until(server: Server, script: str, requests: int) -> int:
    """Short wrk runs until at least ``requests`` answers came back; returns the count."""
    done = 0
    while done < requests:
        done += wrk.run(server.url, script, connections=16, seconds=3).requests
    return done


def memory_growth(
    server: Server, script: str, first: int = 10_000, total: int = 50_000
) -> dict[str, Any]:
    """RSS of a single never-recycled worker after ``first`` and after ``total`` requests."""
    (pid,) = server.worker_pids()
    served_first = served = _load_until(server, script, first)
    after_first = _rss_kib(pid)
    served += _load_until(server, script, total - served)
    after_total = _rss_kib(pid)
    if server.worker_pids() != [pid]:
        raise RuntimeError("the measured worker was replaced during the memory probe")
    return {
        "rss_mib_after_first": round(after_first / 1024, 1),
        "rss_mib_after_total": round(after_total / 1024, 1),
        "growth_pct": round(100 * (after_total - after_first) / after_first, 1),
        "requests": [served_first, served],
    }
