"""Request smuggling: real gunicorn, with the project's gunicorn.conf.py, over a raw socket (V4.2.1)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gunicorn_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("gunicorn")
    port = _free_port()
    config = {"ENV_NAME": "testing", "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite'}",
              "UPLOAD_DIR": str(tmp / "uploads"), "OUTBOX_DIR": str(tmp / "outbox")}
    env = {**os.environ, "BASTION_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1",
           "GUNICORN_THREADS": "1", "BASTION_ANNOUNCE_SETUP": "0", "BASTION_ENV": "testing"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
         f"bastion:create_app({config!r})"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if b" 200 " in _send(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                                       b"Connection: close\r\n\r\n"):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"gunicorn did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    yield port
    proc.terminate()
    proc.wait(timeout=15)


def _send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        chunks = []
        try:
            while data := s.recv(65536):
                chunks.append(data)
        except TimeoutError:
            pass
    return b"".join(chunks)


def _statuses(reply: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", reply)]


SMUGGLED = b"GET /admin/users HTTP/1.1\r\nHost: localhost\r\n\r\n"
ATTACKS = {
    "cl-te": (b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    "te-cl": (b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Length: 4\r\n\r\n5c\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"),
    "duplicate-cl": (b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
                     b"Content-Length: " + str(len(SMUGGLED)).encode() + b"\r\n\r\n" + SMUGGLED),
    "obfuscated-te": (b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                      b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    "te-identity": (b"POST /healthz HTTP/1.1\r\nHost: localhost\r\n"
                    b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLED),
}


@pytest.mark.asvs("V4.2.1")
@pytest.mark.parametrize("name", list(ATTACKS))
def test_ambiguous_message_framing_is_refused(gunicorn_port: int, name: str) -> None:
    statuses = _statuses(_send(gunicorn_port, ATTACKS[name]))
    assert statuses, "no answer"
    # 400 for contradictory framing; 501 for a transfer coding gunicorn does not know.
    assert statuses[0] in (400, 501), statuses
    assert len(statuses) == 1, f"a second, smuggled request was answered: {statuses}"


BROKEN_CHUNKS = {
    "size-not-hex": b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk-overrun": b"2\r\nhello\r\n0\r\n\r\n",
    "bad-trailer": b"2\r\n{}\r\n0\r\nBad Trailer\r\n\r\n",
}


@pytest.mark.asvs("V4.2.1", "V16.5.3")
def test_a_body_gunicorn_cannot_dechunk_is_a_400_and_ends_the_connection(
    gunicorn_port: int,
) -> None:
    """gunicorn finds a broken chunk only when the app reads it: the app answered 500 (and
    logged a traceback) on any route that reads a body. Where the next request starts is
    unknown then, so what follows on the connection is never answered."""
    for name, chunks in BROKEN_CHUNKS.items():
        reply = _send(gunicorn_port, b"POST /csp-report HTTP/1.1\r\nHost: localhost\r\n"
                                     b"Content-Type: application/csp-report\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n" + chunks + SMUGGLED)
        assert _statuses(reply) == [400], (name, reply[:300])
        assert b"not valid chunked transfer coding" in reply, name


@pytest.mark.asvs("V4.2.1")
def test_a_plain_chunked_request_still_works(gunicorn_port: int) -> None:
    reply = _send(gunicorn_port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                                 b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n")
    assert _statuses(reply) == [200]


@pytest.mark.asvs("V4.2.1")
def test_the_proxy_reframes_every_request_body() -> None:
    """nginx buffers each body and sends it upstream with its own Content-Length (HTTP/1.1,
    keep-alive), so a framing trick aimed at the proxy never reaches gunicorn as sent."""
    conf = (ROOT / "deploy" / "nginx" / "bastion.conf").read_text(encoding="utf-8")
    assert "proxy_request_buffering off" not in conf
    assert re.search(r"proxy_request_buffering\s+on;", conf)
    assert re.search(r"proxy_http_version\s+1\.1;", conf)
    assert "underscores_in_headers on" not in conf
    assert "ignore_invalid_headers off" not in conf
