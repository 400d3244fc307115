"""Gunicorn's own log lines: JSON like the app's, and never the request line it refused.

Before, gunicorn wrote "[date] [pid] [WARNING] Invalid request from ip=…: Invalid HTTP
request line: 'GET /auth/reset/<token>?… HTTP/1.1'" in plain text on the same stderr as the
app's JSON, and a worker that could not boot as a traceback of many lines.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from bastion.observability.gunicorn_log import hide_request_targets
from tests.deploy.test_gunicorn_conf import load
from tests.ops.processes import GUNICORN, ROOT, Gunicorn

SECRET = "Zq9SecretTok3nXv"


def _json_lines(text: str) -> list[dict[str, object]]:
    """Every line of ``text`` as JSON; fails on the first line that is not."""
    entries = []
    for line in text.splitlines():
        assert line.startswith("{"), line
        entries.append(json.loads(line))
    return entries


def _send_raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        return conn.recv(64)


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("gunicorn.error", logging.WARNING, __file__, 1, msg, args, None)


def test_the_configuration_uses_the_json_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _ = load(monkeypatch)
    assert cfg.logger_class.__name__ == "JSONLogger"


@pytest.mark.asvs("V16.2.5")
def test_refused_and_failed_requests_are_logged_without_their_target() -> None:
    refused = _record(
        f"Invalid request from ip=10.0.0.1: Invalid HTTP request line: 'GET /auth/reset/{SECRET}"
        f"?password={SECRET} HTTP/1.1'"
    )
    header = _record(f'Invalid request from ip=10.0.0.1: Invalid HTTP Header: "Authorization {SECRET}\'"')
    too_long = _record("Invalid request from ip=10.0.0.1: Request Line is too large (5056 > 4094)")
    failed = _record("Error handling request %s %s", "GET", f"/setup/{SECRET}?next={SECRET}")
    for record in (refused, header, too_long, failed):
        assert hide_request_targets(record)
    assert refused.getMessage() == "Invalid request from ip=10.0.0.1: Invalid HTTP request line"
    assert header.getMessage() == "Invalid request from ip=10.0.0.1: Invalid HTTP Header"
    assert too_long.getMessage().endswith("Request Line is too large (5056 > 4094)")
    assert failed.getMessage() == "Error handling request GET /setup/[redacted]"


@pytest.mark.asvs("V16.2.4", "V16.2.5", "V16.4.1")
def test_gunicorn_writes_json_lines_without_the_secrets_of_refused_requests(tmp_path: Path) -> None:
    server = Gunicorn(
        tmp_path,
        {
            "BASTION_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
            "BASTION_ANNOUNCE_SETUP": "0",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
            # An operator troubleshooting: gunicorn's debug lines quote the most.
            "GUNICORN_LOG_LEVEL": "debug",
        },
        workers=1,
        threads=2,
    )
    try:
        server.start()
        target = f"/auth/reset/{SECRET}?password={SECRET}"
        refusals = (
            # Raw UTF-8 in the target, as a script (or a proxy passing one on) may send.
            f"GET {target}&q=caf\u00e9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
            # A header line without its colon: gunicorn quotes the whole line.
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization Bearer {SECRET}\r\n\r\n".encode(),
            f"GET {target} HTTP/1.1 x\r\nHost: 127.0.0.1\r\n\r\n".encode(),
        )
        for request in refusals:
            assert _send_raw(server.port, request).startswith(b"HTTP/1.1 400")
        # Well-formed: gunicorn's own debug line for the request named the emailed link's
        # token before the app ran.
        for path in (f"/auth/reset/{SECRET}", f"/setup/{SECRET}"):
            assert _send_raw(server.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Connection: close\r\n\r\n".encode()).startswith(b"HTTP/1.1 ")
        # Headers that never end: "Ignored premature client disconnection. No more data
        # after: b'...'" quoted them at the debug level.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(f"GET {target} HTTP/1.1\r\nAuthorization: Bearer {SECRET}\r\n".encode())
        for _ in range(50):
            if "premature client disconnection" in server.output():
                break
            time.sleep(0.1)
    finally:
        server.stop()
    output = server.output()
    assert SECRET not in output
    entries = _json_lines(output)
    warnings = [e["msg"] for e in entries if e["logger"] == "gunicorn.error" and e["level"] == "warning"]
    assert any(e["msg"] == "Ignored premature client disconnection. NoMoreData" for e in entries)
    assert any(e["msg"] == "GET /auth/reset/[redacted]" for e in entries)
    assert len(warnings) == 3 and all(str(w).startswith("Invalid request from ip=") for w in warnings)
    assert any(e["msg"] == "Booting worker with pid: " + str(e["msg"]).rpartition(" ")[2]
               for e in entries)


@pytest.mark.asvs("V16.2.4", "V16.3.4")
def test_a_worker_that_cannot_boot_is_one_json_line_with_its_traceback(tmp_path: Path) -> None:
    """A refused configuration is the error an operator must find: one line, not forty."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "GUNICORN_"))}
    env.update(BASTION_ENV="production", BASTION_BIND=f"127.0.0.1:{_free_port()}",
               GUNICORN_WORKERS="1", BASTION_ANNOUNCE_SETUP="0",
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    done = subprocess.run(
        [str(GUNICORN), "-c", str(ROOT / "gunicorn.conf.py"), "bastion:create_app()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode != 0
    # gunicorn prints the exception's own message once more as plain text after logging it
    # (arbiter.spawn_worker, not configurable); everything it logs is JSON.
    lines = done.stderr.splitlines()
    entries = _json_lines("\n".join(line for line in lines if line.startswith("{")))
    boot = [e for e in entries if "ConfigError" in str(e.get("exc", ""))]
    assert boot and boot[0]["msg"] == "Exception in worker process"
    assert "BASTION_SECRET_KEY is missing" in str(boot[0]["exc"])
    assert entries[-1]["msg"] == "Reason: Worker failed to boot."
    assert all(line in str(boot[0]["exc"]) for line in lines if not line.startswith("{"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
