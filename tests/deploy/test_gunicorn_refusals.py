"""The answers gunicorn gives itself, before the app: plain text with the app's headers.

A malformed request line, method, version or header, and a request line or headers over
the ``limit_request_*`` settings, never reach Flask. Stock gunicorn answered them with an
HTML page quoting the request and no security header at all, on the port that the health
check and the internal TLS clients reach directly. Real Bastion under gunicorn with the
project's ``gunicorn.conf.py``, over plain HTTP and over TLS (with ``BASTION_HSTS_PRELOAD``
on, which only the app's configuration says); each refusal is compared with the app's own
JSON error answer from the same server.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ops import processes
from tests.support.pki import InternalCA

MARK = "Zq7InjectedMark"
# Every security header the app sends on its answers (Cache-Control is checked apart: the
# app's anonymous GET answers say no-cache, a refusal says no-store).
SECURITY_HEADERS = (
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "x-permitted-cross-domain-policies",
    "strict-transport-security",
)
HOST = b"Host: 127.0.0.1\r\n"
INJECTED = f"<script>alert('{MARK}')</script>".encode()
# Each attack, the status it must get, and the fixed sentence that answers it.
REFUSALS = {
    "malformed request line": (
        b"GET " + INJECTED + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        "400 Bad Request",
        "Bad Request: the request line is malformed.",
    ),
    "malformed method": (
        b"G<script>" + MARK.encode() + b" / HTTP/1.1\r\n" + HOST + b"\r\n",
        "400 Bad Request",
        "Bad Request: the request method is malformed.",
    ),
    "unsupported version": (
        b"GET /" + MARK.encode() + b" HTTP/2.0\r\n" + HOST + b"\r\n",
        "505 HTTP Version Not Supported",
        "HTTP Version Not Supported: this server speaks HTTP/1.0 and HTTP/1.1.",
    ),
    "malformed version": (
        b"GET / HTTP/" + INJECTED + b"\r\n" + HOST + b"\r\n",
        "400 Bad Request",
        "Bad Request: the HTTP version is malformed.",
    ),
    "invalid header name": (
        b"GET / HTTP/1.1\r\n" + HOST + INJECTED + b": 1\r\n\r\n",
        "400 Bad Request",
        "Bad Request: a header name is invalid.",
    ),
    "header line without a colon": (
        b"GET / HTTP/1.1\r\n" + HOST + b"Authorization Bearer " + INJECTED + b"\r\n\r\n",
        "400 Bad Request",
        "Bad Request: a header is malformed or contradicts another.",
    ),
    "over-long header": (
        b"GET / HTTP/1.1\r\n" + HOST + b"X-Long: " + INJECTED + b"a" * 9000 + b"\r\n\r\n",
        "431 Request Header Fields Too Large",
        "Request Header Fields Too Large: the request has more or longer headers than this "
        "server accepts.",
    ),
    "too many headers": (
        b"GET / HTTP/1.1\r\n" + HOST
        + b"".join(b"X-%d: " % i + INJECTED + b"\r\n" for i in range(70)) + b"\r\n",
        "431 Request Header Fields Too Large",
        "Request Header Fields Too Large: the request has more or longer headers than this "
        "server accepts.",
    ),
    "over-long request line": (
        b"GET /" + INJECTED + b"a" * 5000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        "414 URI Too Long",
        "URI Too Long: the request line is longer than this server accepts.",
    ),
}


@dataclass
class Server:
    port: int
    log: Path
    context: ssl.SSLContext | None  # None: plain HTTP

    def exchange(self, request: bytes) -> tuple[str, dict[str, list[str]], bytes]:
        """Send raw bytes; the status, headers and body the server sent until it closed."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock = self.context.wrap_socket(raw, server_hostname="127.0.0.1") if self.context else raw
        with sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):  # a TimeoutError here: the server kept it open
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        return status_line.removeprefix("HTTP/1.1 "), headers, body


@pytest.fixture(scope="module", params=["http", "https"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Bastion under gunicorn, its port plain or TLS as ``GUNICORN_CERT_FILE`` says."""
    tmp = tmp_path_factory.mktemp(f"refusals-{request.param}")
    port = processes.free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")},
        "BASTION_ENV": "development",
        "BASTION_SECRET_KEY": processes.SECRET_KEY,
        "BASTION_JWT_KEYS": processes.JWT_KEYS,
        "BASTION_DATABASE_URL": f"sqlite:///{tmp / 'app.db'}",
        "BASTION_TRUSTED_HOSTS": "127.0.0.1,localhost",
        "BASTION_BIND": f"127.0.0.1:{port}",
        "BASTION_ANNOUNCE_SETUP": "0",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
    }
    context = None
    if request.param == "https":
        ca = InternalCA.create(tmp / "pki")
        leaf = ca.issue("app")
        env |= {
            "GUNICORN_CERT_FILE": str(leaf.cert),
            "GUNICORN_KEY_FILE": str(leaf.key),
            "BASTION_HSTS_PRELOAD": "true",
        }
        context = ssl.create_default_context(cafile=str(ca.ca))
    log_path = tmp / "gunicorn.log"
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [str(processes.GUNICORN), "-c", str(processes.ROOT / "gunicorn.conf.py"),
         "bastion:create_app()"],
        cwd=processes.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    served = Server(port, log_path, context)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if served.exchange(b"GET /healthz HTTP/1.1\r\n" + HOST
                                   + b"Connection: close\r\n\r\n")[0].startswith("200 "):
                    break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield served
    finally:
        processes.stop(proc)
        log.close()


@pytest.fixture(scope="module")
def app_answer(server: Server) -> dict[str, list[str]]:
    """The headers of the app's own error answer (a JSON 404) on the same server."""
    status, headers, _ = server.exchange(
        b"GET /api/v1/no-such-thing HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"
    )
    assert status.startswith("404 ")
    return headers


@pytest.mark.asvs("V3.4.1", "V3.4.4", "V3.4.5", "V3.4.6")
@pytest.mark.parametrize("attack", REFUSALS)
def test_refusals_carry_the_security_headers_of_the_apps_own_answers(
    server: Server, app_answer: dict[str, list[str]], attack: str
) -> None:
    request, status, _ = REFUSALS[attack]
    got, headers, _ = server.exchange(request)
    assert got == status
    for name in SECURITY_HEADERS:
        if name == "strict-transport-security" and server.context is None:
            # Neither the app nor the refusal sends it over plain HTTP (nginx sets its own).
            assert name not in app_answer and name not in headers
            continue
        assert len(app_answer[name]) == 1, name  # what the app sends, once
        assert headers.get(name) == app_answer[name], name
    assert "frame-ancestors 'none'" in headers["content-security-policy"][0]
    assert headers["cache-control"] == ["no-store"]
    assert headers["connection"] == ["close"]
    if server.context is not None:  # the preload the app's configuration asks for
        assert headers["strict-transport-security"] == ["max-age=63072000; includeSubDomains; preload"]


@pytest.mark.asvs("V16.5.1", "V4.1.1")
@pytest.mark.parametrize("attack", REFUSALS)
def test_refusals_are_a_fixed_plain_text_sentence_that_never_echoes_the_request(
    server: Server, attack: str
) -> None:
    """Not gunicorn's HTML page quoting the line or header it refused; gunicorn still logs
    the refusal (without the request's bytes, see test_gunicorn_log.py)."""
    request, status, sentence = REFUSALS[attack]
    logged_before = server.log.stat().st_size
    got, headers, body = server.exchange(request)
    assert got == status
    assert headers["content-type"] == ["text/plain; charset=utf-8"]
    assert headers["content-length"] == [str(len(body))]
    assert body == f"{sentence}\n".encode()
    assert MARK.encode() not in body and b"<" not in body
    assert all(MARK not in value for values in headers.values() for value in values)
    with server.log.open("rb") as log:
        log.seek(logged_before)
        logged = log.read().decode()
    assert '"level":"warning"' in logged and "Invalid request from ip=127.0.0.1" in logged
    assert MARK not in logged
