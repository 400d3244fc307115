"""`make bench`: Bastion in its production shape against bare Flask, side by side.

    python -m bench.run [--seconds 4] [--rounds 3] [--connections 16,64] [--no-memory]

Seeds a private PostgreSQL schema, starts both servers under the project's gunicorn
settings with the same worker count, loads them with wrk in interleaved rounds (A, B, A,
B...), and prints a table plus the probes the performance targets need. The same figures
go to ``bench/results/bench-<time>.json`` and ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis
from flask import Flask

from bench import breakdown, cpu, probes, report, servers, wrk
from bench.scenarios import Client, Scenario, prepare
from bench.seed import PASSWORD, Seeded, seed


def _migrate_and_seed(env: dict[str, str]) -> Seeded:
    """The real migrations (what `flask db upgrade` runs), then the bench data."""
    os.environ.update(env)
    from flask_migrate import upgrade

    from bastion import create_app
    from bastion.extensions import db

    app = create_app()
    with app.app_context():
        upgrade()
        seeded = seed()
        db.engine.dispose()
    return seeded


def script_for(s: Scenario) -> str:
    return wrk.lua_script(
        s.method,
        s.path,
        {**servers.PROXY_HEADERS, **s.headers},
        s.body,
        body_template=s.body_template,
        users=s.users,
    )


def unexpected_statuses(log: bytes, s: Scenario) -> int:
    """Bastion's own request log, read back: answers whose status was not the expected one."""
    count = 0
    for line in log.splitlines():
        if b'"msg":"request"' not in line:
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if entry.get("path") == s.path and entry.get("status") != s.expected_status:
            count += 1
    return count


def run_rounds(
    s: Scenario,
    conn: int,
    bastion: servers.Server,
    bare: servers.Server,
    seconds: float,
    rounds: int,
) -> report.ScenarioRounds:
    result = report.ScenarioRounds(s.name, conn)
    script = script_for(s)
    for server in (bastion, bare):  # warm-up: connection pools, template caches
        wrk.run(server.url, script, connections=conn, seconds=1)
    # Requests still queued when wrk stops (slow logins) finish before the next run starts.
    settle = 3.0 if s.name == "login" else 0.2
    store = redis.Redis.from_url(servers.REDIS_URL)
    for _ in range(rounds):
        time.sleep(settle)
        offset = bastion.log_offset()
        before = cpu.server_cpu_seconds(bastion.proc.pid), cpu.redis_cpu_seconds(store)
        run = wrk.run(bastion.url, script, connections=conn, seconds=seconds)
        after = cpu.server_cpu_seconds(bastion.proc.pid), cpu.redis_cpu_seconds(store)
        result.bastion.append(run)
        result.bastion_cpu_us.append(cpu.per_request_us(before[0], after[0], run.requests))
        result.redis_cpu_us.append(cpu.per_request_us(before[1], after[1], run.requests))
        time.sleep(settle)
        result.unexpected_status.append(unexpected_statuses(bastion.log_since(offset), s))
        start = cpu.server_cpu_seconds(bare.proc.pid)
        run = wrk.run(bare.url, script, connections=conn, seconds=seconds)
        result.bare.append(run)
        result.bare_cpu_us.append(
            cpu.per_request_us(start, cpu.server_cpu_seconds(bare.proc.pid), run.requests)
        )
    store.close()
    return result


def _write_bare_responses(scenarios: list[Scenario]) -> str:
    path = servers.RESULTS / "bare-responses.json"
    path.write_text(json.dumps([s.captured for s in scenarios if s.captured]))
    return str(path)


def _clear_redis(prefix: str) -> None:
    client = redis.Redis.from_url(servers.REDIS_URL)
    for key in client.scan_iter(f"*{prefix}*", count=1000):
        client.delete(key)


def _probe(extra: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    """Run one probe; a failure is reported in the results instead of losing the run."""
    try:
        extra[name] = fn()
    except Exception as exc:
        extra[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  probe {name} failed: {exc}", flush=True)


def _memory(env: dict[str, str], scenario: Scenario, counts: tuple[int, int]) -> dict[str, Any]:
    """One worker that is never recycled, so growth shows instead of being reset."""
    single = servers.start(
        "bastion-memory", "bastion:create_app()", env, 1, extra_env={"GUNICORN_MAX_REQUESTS": "0"}
    )
    try:
        first, total = counts
        result = probes.memory_growth(single, script_for(scenario), first=first, total=total)
        return {**result, "scenario": scenario.name}
    finally:
        single.stop()


def _in_process(log_name: str, fn: Callable[[Flask], dict[str, Any]]) -> dict[str, Any]:
    """``fn`` on an app made here with the same production settings, logging to a file."""
    from bastion import create_app
    from bastion.extensions import db

    app = create_app()
    quiet = logging.FileHandler(servers.RESULTS / log_name)
    for logger in (logging.getLogger("bastion"), app.logger):
        logger.handlers[:] = [quiet]
    try:
        return fn(app)
    finally:
        quiet.close()
        with app.app_context():
            db.engine.dispose()


def _login_cpu(seeded: Seeded) -> dict[str, Any]:
    return _in_process(
        "login-cpu.log", lambda app: probes.login_cpu(app, seeded.logins[-10:], PASSWORD)
    )


def bench(args: argparse.Namespace) -> dict[str, Any]:
    machine = probes.machine()
    print(f"machine: {machine}", flush=True)
    connections = [int(c) for c in args.connections.split(",")]
    workers = args.workers or servers.default_workers()
    extra: dict[str, Any] = {
        "workers": workers,
        "gunicorn_conf": servers.gunicorn_conf().name,
        "seconds": args.seconds,
        "rounds": args.rounds,
    }
    servers.compile_bytecode()
    with servers.pg_schema() as database_url:
        env = servers.bastion_env(database_url)
        seeded = _migrate_and_seed(env)
        extra["data"] = {
            "users": seeded.users,
            "articles": seeded.articles,
            "comments": seeded.comments,
        }
        print(
            f"seeded {seeded.users} users, {seeded.articles} articles, {seeded.comments} comments; "
            f"{workers} workers each",
            flush=True,
        )
        bastion = servers.start("bastion", "bastion:create_app()", env, workers)
        bare = None
        entries: list[dict[str, Any]] = []
        try:
            scenarios = prepare(Client(bastion.url), seeded)
            bare = servers.start(
                "bare",
                "bench.bare_app:create_app()",
                {"BENCH_BARE_RESPONSES": _write_bare_responses(scenarios)},
                workers,
            )
            for s in scenarios:
                if args.only and s.name not in args.only.split(","):
                    continue
                # Logins are bounded by Argon2: more connections only lengthen the queue,
                # and each run needs longer to finish enough of them to count.
                for conn in connections[:1] if s.name == "login" else connections:
                    if s.unavailable:
                        rounds = report.ScenarioRounds(s.name, conn, unavailable=s.unavailable)
                    else:
                        seconds = max(3 * args.seconds, 10) if s.name == "login" else args.seconds
                        rounds = run_rounds(s, conn, bastion, bare, seconds, args.rounds)
                    entries.append(report.summarise(rounds))
                    print("  " + report.table(entries[-1:]).splitlines()[-1].strip(), flush=True)
            extra["notes"] = {s.name: s.note for s in scenarios if s.note}
            chosen = [s for s in scenarios if not args.only or s.name in args.only.split(",")]
            _probe(
                extra,
                "breakdown",
                lambda: _in_process("breakdown.log", lambda app: breakdown.breakdown(app, chosen)),
            )
            if args.only:  # a partial run (while working on one path): no probes
                return report.document(machine, entries, extra)
            time.sleep(3)  # let queued logins drain before measuring the hash on its own
            _probe(extra, "argon2", lambda: probes.argon2_verify_rate(connections[0]))
            _probe(extra, "login_cpu", lambda: _login_cpu(seeded))
            login = next(s for s in scenarios if s.name == "login")
            wrong = (
                (login.body_template or "")
                .replace("{user}", seeded.reader)
                .replace("bench%3A", "wrong%3A")
                .replace("bench:", "wrong:")
            )
            _probe(
                extra,
                "throttle",
                lambda: probes.throttle_probe(
                    bastion, login.method, login.path, login.headers, wrong
                ),
            )
            home = next(s for s in scenarios if s.name == "home_html")
        finally:
            bastion.stop()
            if bare is not None:
                bare.stop()
        _probe(extra, "startup", lambda: probes.startup(env))
        if not args.no_memory:
            first, total = (int(n) for n in args.memory_requests.split(","))
            _probe(extra, "memory", lambda: _memory(env, home, (first, total)))
        _clear_redis(env["BASTION_RATELIMIT_KEY_PREFIX"])
    return report.document(machine, entries, extra)


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """The performance targets, each with the figure that decides it."""
    by = {(e["name"], e["connections"]): e for e in doc["scenarios"]}
    lines = []
    for name, target in (("api_list", 0.5), ("home_html", 0.4)):
        e = by.get((name, 16))
        if e and e.get("ratio") is not None:
            line = f"{name}: ratio {e['ratio']:.2f} (target >= {target})"
            if c := e.get("cpu_per_request"):
                bastion, redis_us, bare = (
                    c[k]["median"] for k in ("bastion_us", "redis_us", "bare_us")
                )
                line += (
                    f"; CPU per answer {bastion + redis_us:.0f} us (gunicorn {bastion:.0f} + "
                    f"Redis {redis_us:.0f}) vs bare {bare:.0f} us: {c['cost']['median']:.1f}x"
                )
            lines.append(line)
        else:
            lines.append(f"{name}: not available")
    for e in doc["scenarios"]:
        if e["connections"] == 16 and e.get("p50_ms"):
            bare = e.get("bare_p99_ms", 0) / e["bare_p50_ms"] if e.get("bare_p50_ms") else 0
            lines.append(
                f"{e['name']} @16: p99/p50 {e['p99_ms'] / e['p50_ms']:.1f} (target <= 3; "
                f"bare Flask {bare:.1f}), errors {e['errors']}"
            )
    login = by.get(("login", 16))
    argon = doc.get("argon2", {})
    for name in ("argon2", "login_cpu", "throttle", "startup", "memory", "breakdown"):
        if "error" in doc.get(name, {}):
            lines.append(f"{name}: probe failed: {doc[name]['error']}")
            doc.pop(name)
    if login and login.get("bastion_rps") and "verify_per_s" in argon:
        lines.append(
            f"login: {login['bastion_rps']:.1f} logins/s vs raw Argon2id verify "
            f"{argon['verify_per_s']:.1f}/s at the same concurrency (t={argon['time_cost']}, m={argon['memory_kib']} KiB, "
            f"p={argon['parallelism']}) -> {login['bastion_rps'] / argon['verify_per_s']:.2f} (target >= 0.8)"
        )
    if lc := doc.get("login_cpu"):
        lines.append(
            f"login CPU: {lc['login_cpu_s'] * 1000:.0f} ms per login request vs "
            f"{lc['verify_cpu_s'] * 1000:.0f} ms per bare verify -> the app adds "
            f"{lc['overhead_pct']:.0f}% around the hash (target <= 20%)"
        )
    if t := doc.get("throttle"):
        lines.append(
            f"throttling: {t['attempts']} wrong passwords from one address -> "
            f"{t['reached_app']} reached the app, {t['throttled_429']} got 429"
        )
    if st := doc.get("startup"):
        lines.append(
            f"start-up: create_app() {st['create_app_s']:.3f} s, first response after "
            f"{st['first_response_s']:.3f} s wall / {st['first_response_cpu_s']:.3f} s CPU "
            "(target < 1 s)"
        )
    if m := doc.get("memory"):
        lines.append(
            f"worker RSS: {m['rss_mib_after_first']} MiB after {m['requests'][0]} requests, "
            f"{m['rss_mib_after_total']} MiB after {m['requests'][1]} "
            f"({m['growth_pct']:+.1f}%; target < 10%)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=4, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds per scenario")
    parser.add_argument("--connections", default="16,64")
    parser.add_argument(
        "--workers", type=int, default=0, help="gunicorn workers (default: gunicorn.conf.py's)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the worker memory probe")
    parser.add_argument(
        "--only", default="", help="comma-separated scenario names; skips the probes too"
    )
    parser.add_argument(
        "--memory-requests",
        default="10000,50000",
        help="RSS of one worker is read after the first and after the second count",
    )
    args = parser.parse_args(argv)
    try:
        wrk.wrk_path()
    except wrk.WrkError as exc:
        print(exc, file=sys.stderr)
        return 2
    doc = bench(args)
    print()
    print(report.table(doc["scenarios"]))
    print()
    for line in summary_lines(doc):
        print(line)
    if parts := breakdown.lines(doc.get("breakdown", {})):
        print()
        print("\n".join(parts))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    payload = json.dumps(doc, indent=2)
    (servers.RESULTS / f"bench-{stamp}.json").write_text(payload)
    (servers.RESULTS / "latest.json").write_text(payload)
    print(f"\nwritten to bench/results/bench-{stamp}.json")
    # A run whose answers were not all the expected ones is a failed run.
    return 1 if any(e.get("errors") for e in doc["scenarios"]) else 0


if __name__ == "__main__":
    sys.exit(main())
