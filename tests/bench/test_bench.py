"""The bench's own logic: reading wrk, aggregating rounds, the JSON shape, the bare app.

No timings are asserted here: performance is judged from `make bench` output only.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from bench import breakdown, cpu, report, servers, wrk
from bench.bare_app import create_app as create_bare_app
from bench.run import summary_lines, unexpected_statuses
from bench.scenarios import Scenario

WRK_OUTPUT = """\
Running 4s test @ http://127.0.0.1:41234
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.12ms    2.01ms  30.11ms   80.00%
    Req/Sec     0.99k   100.00     1.20k    70.00%
  Latency Distribution
     50%    7.90ms
     75%    9.00ms
     90%   10.50ms
     99%   15.20ms
  7950 requests in 4.00s, 10.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 12
Requests/sec:   1987.50
Transfer/sec:      2.50MB
"""

CLEAN_OUTPUT = """\
Running 4s test @ http://127.0.0.1:41235
  2 threads and 64 connections
  Latency Distribution
     50%  812.00us
     75%    1.00ms
     90%    1.20ms
     99%    1.01s
  20000 requests in 4.00s, 20.00MB read
Requests/sec:   5000.00
Transfer/sec:      5.00MB
"""


def test_parse_reads_rate_percentiles_and_every_error() -> None:
    result = wrk.parse(WRK_OUTPUT)
    assert result.requests == 7950
    assert result.rps == 1987.5
    assert (result.p50_ms, result.p99_ms) == (7.9, 15.2)
    assert result.socket_errors == 3
    assert result.non_2xx == 12
    assert result.errors == 15


def test_parse_converts_units_and_defaults_absent_error_lines_to_zero() -> None:
    result = wrk.parse(CLEAN_OUTPUT)
    assert result.p50_ms == 0.812
    assert result.p99_ms == 1010.0
    assert result.errors == 0


def test_parse_refuses_output_it_does_not_understand() -> None:
    with pytest.raises(wrk.WrkError):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_lua_script_spreads_client_addresses_and_fills_in_users() -> None:
    script = wrk.lua_script(
        "POST",
        "/auth/login",
        {"Referer": 'https://h/"q"'},
        body_template="u={user}&p=x",
        users=["reader001", "reader002"],
    )
    assert 'headers["X-Forwarded-For"] = string.format("10.%d.%d.%d"' in script
    assert '"reader001", "reader002"' in script
    assert 'local before, after = "u=", "&p=x"' in script
    assert '\\"q\\"' in script  # quotes in header values are escaped for Lua
    assert 'wrk.format("POST", "/auth/login", headers, before .. users' in script


def _result(rps: float, p50: float = 2.0, p99: float = 5.0, non_2xx: int = 0) -> wrk.WrkResult:
    return wrk.WrkResult(
        requests=int(rps * 4), rps=rps, p50_ms=p50, p99_ms=p99, socket_errors=0, non_2xx=non_2xx
    )


def test_summarise_takes_medians_with_ranges_and_never_hides_errors() -> None:
    rounds = report.ScenarioRounds(
        "home_html",
        16,
        bastion=[_result(500, 3.0), _result(600, 2.0, non_2xx=2), _result(700, 4.0)],
        bare=[_result(1000), _result(1000), _result(2000)],
        unexpected_status=[0, 5, 0],
    )
    entry = report.summarise(rounds)
    assert entry["bastion_rps"] == 600
    assert entry["bare_rps"] == 1000
    assert entry["ratio"] == 0.5  # median of 0.5, 0.6, 0.35
    assert entry["range"]["ratio"] == {"median": 0.5, "min": 0.35, "max": 0.6}
    assert entry["p50_ms"] == 3.0
    # The log saw 5 unexpected answers, wrk 2 of the same kind: the larger count stands.
    assert entry["errors"] == 5


def test_document_has_the_shape_other_tools_read() -> None:
    entries = [
        report.summarise(
            report.ScenarioRounds("api_list", 16, bastion=[_result(800)], bare=[_result(1000)])
        ),
        report.summarise(report.ScenarioRounds("article_html", 64, unavailable="no page")),
    ]
    doc = json.loads(json.dumps(report.document("test machine", entries, {"workers": 5})))
    assert doc["machine"] == "test machine"
    required = {
        "name",
        "connections",
        "bastion_rps",
        "bare_rps",
        "ratio",
        "p50_ms",
        "p99_ms",
        "errors",
    }
    for entry in doc["scenarios"]:
        assert required <= set(entry)
        assert entry["name"] in report.SCENARIO_NAMES
    assert doc["scenarios"][0]["ratio"] == 0.8
    assert doc["scenarios"][1]["available"] is False
    assert doc["scenarios"][1]["bastion_rps"] is None


def test_table_shows_ranges_ratios_and_unavailable_scenarios() -> None:
    entries = [
        report.summarise(
            report.ScenarioRounds(
                "home_html", 16, bastion=[_result(450), _result(500)], bare=[_result(1000)] * 2
            )
        ),
        report.summarise(report.ScenarioRounds("api_list", 16, unavailable="no API here")),
    ]
    text = report.table(entries)
    assert "475 (450-500)" in text
    assert "0.47 (0.45-0.50)" in text
    assert "not available: no API here" in text


def test_summary_lines_judge_each_target_from_the_figures() -> None:
    entry = report.summarise(
        report.ScenarioRounds("login", 16, bastion=[_result(8.0, 100, 200)], bare=[_result(3000)])
    )
    doc = {
        "scenarios": [entry],
        "argon2": {"verify_per_s": 10.0, "time_cost": 3, "memory_kib": 65536, "parallelism": 4},
    }
    lines = summary_lines(doc)
    assert any("0.80 (target >= 0.8)" in line for line in lines)
    assert "api_list: not available" in lines


def test_unexpected_statuses_are_counted_from_the_request_log() -> None:
    s = Scenario("home_html", "GET", "/", 200)
    lines = [
        {"msg": "request", "path": "/", "status": 200},
        {"msg": "request", "path": "/", "status": 429},
        {"msg": "request", "path": "/", "status": 302},
        {"msg": "request", "path": "/other", "status": 500},
        {"msg": "something else", "path": "/", "status": 500},
    ]
    log = b"\n".join(orjson.dumps(x) for x in lines) + b"\nnot json\n"
    assert unexpected_statuses(log, s) == 2


def test_bare_app_replays_the_exact_bytes_status_and_type(tmp_path: Path) -> None:
    body = "<!doctype html><p>caf\u00e9 \u2014 same bytes</p>".encode()
    captured = [
        {
            "method": "GET",
            "path": "/articles/7",
            "status": 200,
            "content_type": "text/html; charset=utf-8",
            "body_b64": base64.b64encode(body).decode(),
        },
        {
            "method": "POST",
            "path": "/auth/login",
            "status": 302,
            "content_type": "text/html; charset=utf-8",
            "body_b64": base64.b64encode(b"moved").decode(),
        },
    ]
    path = tmp_path / "responses.json"
    path.write_text(json.dumps(captured))
    client = create_bare_app(str(path)).test_client()
    resp = client.get("/articles/7")
    assert (resp.status_code, resp.content_type) == (200, "text/html; charset=utf-8")
    assert resp.data == body
    assert client.post("/auth/login").status_code == 302
    assert client.get("/auth/login").status_code == 405


def test_stat_fields_are_counted_from_the_last_parenthesis() -> None:
    # A command name may hold spaces and parentheses; utime..cstime are fields 14-17.
    line = "4242 (gunicorn: (worker) x) S 1 4242 4242 0 -1 4194560 10 0 0 0 317 45 12 3 20 0 5"
    assert cpu.parse_stat(line) == (317, 45, 12, 3)


def test_server_cpu_counts_live_children_and_the_time_of_reaped_ones() -> None:
    """A worker that exits during a run moves its time into the master's cutime."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    # The master: a process that starts one child and waits for it, as gunicorn reaps workers.
    master = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "sys.stdin.readline()\n"
            f"subprocess.run([sys.executable, '-c', {burn!r}])\n"
            "time.sleep(30)\n",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        before = cpu.server_cpu_seconds(master.pid)
        assert before is not None
        master.stdin.write(b"go\n")  # type: ignore[union-attr]
        master.stdin.flush()  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while (
            cpu._children(master.pid) or (cpu.server_cpu_seconds(master.pid) or 0) - before < 0.25
        ):
            assert time.monotonic() < deadline, "the child's CPU was never counted"
            time.sleep(0.05)
        # The child has exited and been reaped: its time stays counted, once.
        assert not cpu._children(master.pid)
        total = cpu.server_cpu_seconds(master.pid)
        assert total is not None and 0.25 <= total - before < 1.5
    finally:
        master.kill()
        master.wait()
    assert cpu.server_cpu_seconds(master.pid) is None  # gone: absent, not an error


def test_redis_cpu_is_read_from_info_or_left_absent(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    first = cpu.redis_cpu_seconds(client)
    assert first is not None and first > 0
    client.close()
    assert cpu.redis_cpu_seconds(
        redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2, retry=None)
    ) is None


def test_cpu_per_request_is_summarised_and_shown_beside_the_rates() -> None:
    rounds = report.ScenarioRounds(
        "api_list",
        16,
        bastion=[_result(1000), _result(1200), _result(900)],
        bare=[_result(5000)] * 3,
        bastion_cpu_us=[1300.0, 1250.0, None],  # a round /proc could not be read is left out
        redis_cpu_us=[100.0, 110.0, 90.0],
        bare_cpu_us=[350.0, 340.0, 330.0],
    )
    entry = report.summarise(rounds)
    c = entry["cpu_per_request"]
    assert c["bastion_us"] == {"median": 1275.0, "min": 1250.0, "max": 1300.0}
    assert c["redis_us"]["median"] == 105.0
    assert c["bare_us"]["median"] == 345.0
    assert c["cost"]["min"] == 4.0  # (1300 + 100) / 350
    assert "1380/345" in report.table([entry])
    lines = summary_lines({"scenarios": [entry]})
    assert any(
        "CPU per answer 1380 us (gunicorn 1275 + Redis 105) vs bare 345 us" in line
        for line in lines
    )
    # Without readings the entry simply has no CPU figures.
    plain = report.summarise(
        report.ScenarioRounds("home_html", 16, bastion=[_result(1)], bare=[_result(2)])
    )
    assert "cpu_per_request" not in plain
    assert cpu.per_request_us(1.0, 1.5, 1000) == 500.0
    assert cpu.per_request_us(None, 1.5, 1000) is None
    assert cpu.per_request_us(1.0, 1.5, 0) is None


def test_the_bench_runs_as_many_workers_as_production_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GUNICORN_WORKERS", raising=False)
    assert servers.default_workers() == max(2, min(len(os.sched_getaffinity(0)), 8))
    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    assert servers.default_workers() == 3


def _burn(cpu_ns: int) -> None:
    """Spend at least ``cpu_ns`` of this thread's CPU."""
    end = time.thread_time_ns() + cpu_ns
    while time.thread_time_ns() < end:
        pass


def test_breakdown_charges_each_hook_and_the_view_with_the_cpu_it_spent() -> None:
    from flask import Flask

    app = Flask(__name__)
    app.before_request(lambda: _burn(300_000))  # 0.3 ms of CPU, every request

    @app.get("/")
    def index() -> str:
        _burn(100_000)
        return "ok"

    timers = breakdown.instrument(app)
    assert timers.inside_ns > 0  # calibrated: the timers' own cost is known
    result = breakdown.measure(app, timers, Scenario("page", "GET", "/", 200), requests=20)
    assert timers.calls[__name__] == timers.calls[breakdown.VIEW] == 20
    parts = result["parts_us"]
    assert parts[__name__] >= 290  # a hook from an unknown module is named by its module
    assert parts[breakdown.VIEW] >= 90
    assert list(parts.values()) == sorted(parts.values(), reverse=True)  # largest first
    # Whatever no hook or view accounts for is Flask's own; the parts add up to the total.
    assert parts[breakdown.FLASK_ITSELF] >= 0
    assert abs(sum(parts.values()) - result["total_us"]) < 1
    # The timers' cost is taken out of each part: a timer costing more than the work
    # leaves nothing of it.
    timers.inside_ns = 10**9
    again = breakdown.measure(app, timers, Scenario("page", "GET", "/", 200), requests=20)
    assert again["parts_us"][__name__] == again["parts_us"][breakdown.VIEW] == 0


def test_breakdown_refuses_to_report_answers_that_are_not_the_scenarios() -> None:
    from flask import Flask

    app = Flask(__name__)
    app.get("/")(lambda: ("slow down", 429))
    timers = breakdown.instrument(app)
    with pytest.raises(RuntimeError, match="429"):
        breakdown.measure(app, timers, Scenario("page", "GET", "/", 200), requests=5)


def test_breakdown_names_bastions_controls(make_app) -> None:  # type: ignore[no-untyped-def]
    """Every hook Bastion registers on a page is under a control's name, none lumped."""
    app = make_app(RATELIMIT_ENABLED=True)
    timers = breakdown.instrument(app)
    result = breakdown.measure(
        app, timers, Scenario("home", "GET", "/", 200, headers={"Host": "localhost"}), requests=5
    )
    named = {label for _, label in breakdown.LABELS}
    assert set(result["parts_us"]) <= named | {breakdown.VIEW, breakdown.FLASK_ITSELF}
    for control in (
        breakdown.RATE_LIMIT,
        "request id and JSON request log",
        "security headers, CSP nonce, HTTPS",
        "CSRF check",
    ):
        assert control in result["parts_us"]


def test_breakdown_table_has_a_row_per_part_and_a_column_per_scenario() -> None:
    doc = {
        "requests": 2000,
        "scenarios": {
            "api_list": {"total_us": 600.0, "parts_us": {"view": 150.0, "rate limit": 170.0}},
            "home_html": {"total_us": 480.0, "parts_us": {"rate limit": 168.0, "view": 70.0}},
        },
    }
    lines = breakdown.lines(doc)
    assert "2000 requests" in lines[0]
    assert lines[1].split() == ["api_list", "home_html"]
    assert lines[2].split()[-2:] == ["170", "168"] and lines[2].startswith("rate limit")
    assert lines[3].split() == ["view", "150", "70"]
    assert lines[-1].split() == ["total", "600", "480"]
    assert breakdown.lines({}) == []
