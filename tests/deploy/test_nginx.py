"""nginx: the production config and the scale-out template load, and behave, in a real nginx."""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPResponse, HTTPSConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.pki import InternalCA, Leaf

ROOT = Path(__file__).resolve().parents[2]
NGINX_DIR = ROOT / "deploy" / "nginx"
PROD_CONF = NGINX_DIR / "bastion.conf"
SCALEOUT = NGINX_DIR / "scaleout.conf.tmpl"


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")


def _nginx_binary() -> str:
    """The nginx executable; the test is skipped, with the fix, when there is none."""
    if not NGINX:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return NGINX


APP_CSP = "default-src 'self'; frame-ancestors 'none'"


def _all(response: HTTPResponse, name: str) -> list[str]:
    return [v for k, v in response.getheaders() if k.lower() == name.lower()]


def _assert_nginx_own_headers(response: HTTPResponse) -> None:
    """An answer nginx made itself is not sniffed, framed or allowed to load anything."""
    assert _all(response, "X-Content-Type-Options") == ["nosniff"]
    (csp,) = _all(response, "Content-Security-Policy")
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(count: int) -> list[int]:
    """Ports free a moment ago, all different: each socket stays bound until every port is
    chosen (picked one at a time, the second could be the first again)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A P-256 certificate for localhost/127.0.0.1, valid for one day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# --- a backend that echoes what the proxy sent ----------------------------------------------


@dataclass
class Backend:
    """A tiny HTTP server standing in for one gunicorn instance."""

    name: str
    server: ThreadingHTTPServer
    seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


def _content_type(path: str) -> str:
    """What the app answers with: stylesheets under /static/, pages, or JSON."""
    if path.startswith("/static/"):
        return "text/css; charset=utf-8"
    if path.startswith("/page"):
        return "text/html; charset=utf-8"
    return "application/json"


def _start_backend(
    name: str, tls: Leaf | None = None, hold: threading.Event | None = None
) -> Backend:
    """An echo server; with ``tls``, it speaks only TLS with that certificate (as gunicorn
    does with GUNICORN_CERT_FILE). With ``hold``, a request whose path has /slow in it is
    recorded, then answered only once the event is set: a slow request, in flight for as
    long as a test needs."""
    backend: Backend

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers[":path"] = self.path
            backend.seen.append(headers)
            if hold is not None and "/slow" in self.path:
                hold.wait(timeout=30)
            body = json.dumps({"backend": name, "headers": headers}).encode()
            self.send_response(200)
            self.send_header("Content-Type", _content_type(self.path))
            self.send_header("Content-Length", str(len(body)))
            # The app's own HSTS header: nginx must replace it, not add a second one.
            self.send_header("Strict-Transport-Security", "max-age=1")
            # And its own nosniff and CSP, which nginx must leave as they are.
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", APP_CSP)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _reply  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    backend = Backend(name, server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return backend


def _stop_backends(*started: Backend) -> None:
    for backend in started:
        backend.server.shutdown()
        backend.server.server_close()


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    """Two plain-HTTP echo backends on loopback (the scale-out template's test setup)."""
    pair = (_start_backend("one"), _start_backend("two"))
    yield pair
    _stop_backends(*pair)


@pytest.fixture
def internal_ca(tmp_path: Path) -> InternalCA:
    """The deployment's internal CA, which bastion.conf pins for the hop to the app."""
    return InternalCA.create(tmp_path / "internal-pki")


@pytest.fixture
def app_backend(internal_ca: InternalCA) -> Iterator[Backend]:
    """The app as production runs it: TLS only, with a certificate for `app` from the CA."""
    backend = _start_backend("app", internal_ca.issue("app"))
    yield backend
    _stop_backends(backend)


# --- rendering and running nginx ------------------------------------------------------------


def _temp_paths(prefix: Path) -> str:
    return "\n".join(
        f"  {name}_temp_path {prefix / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


@dataclass
class ProdProxy:
    """bastion.conf rendered into a temp prefix, with loopback ports and a test certificate."""

    prefix: Path
    conf: Path
    http_port: int
    https_port: int
    cert: Path
    access_log: Path


def render_production(
    prefix: Path, upstream_port: int, internal_ca: InternalCA, client_header: str = ""
) -> ProdProxy:
    """Render bastion.conf the way a deployment differs from this test, and nothing more:
    the upstream address, the certificate paths, the listen ports and the log destination.

    With ``client_header``, nginx takes the client's address from that request header
    (its realip module), as it would see a client connecting from it: every test client
    connects from 127.0.0.1."""
    cert, key = _self_signed(prefix)
    http_port, https_port = _free_ports(2)
    access_log = prefix / "access.log"
    text = PROD_CONF.read_text()
    replacements = {
        "server app:8000;": f"server 127.0.0.1:{upstream_port};",
        "/run/secrets/tls_fullchain.pem": str(cert),
        "/run/secrets/tls_privkey.pem": str(key),
        "/run/secrets/internal_ca.pem": str(internal_ca.ca),
        "listen 80 default_server;": f"listen 127.0.0.1:{http_port} default_server;",
        "listen 443 ssl http2 default_server;": (
            f"listen 127.0.0.1:{https_port} ssl http2 default_server;"
        ),
        "access_log /dev/stdout bastion_json;": f"access_log {access_log} bastion_json;",
        "return 301 https://$host$request_uri;": (
            f"return 301 https://$host:{https_port}$request_uri;"
        ),
    }
    for old, new in replacements.items():
        assert old in text, f"bastion.conf no longer contains {old!r}; update the test renderer"
        text = text.replace(old, new)
    # Request errors go to a file a test can read, at whatever level bastion.conf says.
    text = re.sub(r"error_log\s+stderr\b", f"error_log {prefix / 'request-error.log'}", text)
    (prefix / "bastion.conf").write_text(text)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
  # The http {{}} block of the nginx image's own nginx.conf, which includes bastion.conf after
  # it: a directive set both there and at bastion.conf's top level stops nginx from starting.
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  log_format main '$remote_addr - $remote_user [$time_local] "$request" $status';
  access_log {prefix / "image-access.log"} main;
  sendfile on;
  keepalive_timeout 65;
  gzip on;  # as in Debian's nginx.conf: bastion.conf must not compress pages anyway
{_temp_paths(prefix)}
{f"  set_real_ip_from 127.0.0.1; real_ip_header {client_header};" if client_header else ""}
  include {prefix / "bastion.conf"};
}}
"""
    )
    return ProdProxy(prefix, conf, http_port, https_port, cert, access_log)


def render_scaleout(prefix: Path, listen_port: int, upstream_1: int, upstream_2: int) -> Path:
    """Fill in the scale-out template's placeholders; fail on any left over."""
    text = SCALEOUT.read_text()
    for placeholder, value in {
        "{{PREFIX}}": str(prefix),
        "{{LISTEN_PORT}}": str(listen_port),
        "{{UPSTREAM_1}}": str(upstream_1),
        "{{UPSTREAM_2}}": str(upstream_2),
    }.items():
        assert placeholder in text, placeholder
        text = text.replace(placeholder, value)
    assert "{{" not in text, "unknown placeholder in scaleout.conf.tmpl"
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


def nginx_test(prefix: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a rendered configuration."""
    return subprocess.run(
        [NGINX, "-t", "-q", "-p", str(prefix), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


StartNginx = Callable[[Path, Path, int], None]


@pytest.fixture
def run_nginx() -> Iterator[StartNginx]:
    """Start nginx in the foreground on a rendered config; stopped at teardown."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(prefix: Path, conf: Path, port: int) -> None:
        proc = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"nginx exited: {err}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not start listening")

    yield start
    for proc in processes:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def _https(proxy: ProdProxy) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(proxy.cert))


def _request(
    conn: HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[HTTPResponse, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


# --- tests ----------------------------------------------------------------------------------


def test_production_config_passes_nginx_t(tmp_path: Path, internal_ca: InternalCA) -> None:
    """bastion.conf, with a generated certificate, is accepted by `nginx -t`."""
    _nginx_binary()
    proxy = render_production(tmp_path, _free_port(), internal_ca)
    result = nginx_test(tmp_path, proxy.conf)
    assert result.returncode == 0, result.stderr


def test_scaleout_template_passes_nginx_t(tmp_path: Path) -> None:
    """The scale-out template renders into a complete config that `nginx -t` accepts."""
    _nginx_binary()
    conf = render_scaleout(tmp_path, *_free_ports(3))
    result = nginx_test(tmp_path, conf)
    assert result.returncode == 0, result.stderr


@pytest.mark.asvs("V4.1.3", "V15.3.4")
def test_forwarded_headers_are_overwritten_never_appended() -> None:
    """Both configs set X-Forwarded-For to the peer address: a client cannot add hops."""
    for path in (PROD_CONF, SCALEOUT):
        text = path.read_text()
        assert "$proxy_add_x_forwarded_for" not in text, path.name
        assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;", text), path.name
        for header in ("X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Real-IP"):
            assert re.search(rf"proxy_set_header\s+{header}\s", text), (path.name, header)


def _directive(text: str, name: str) -> list[str]:
    """Values of every occurrence of a simple one-line nginx directive."""
    return [m.group(1).strip() for m in re.finditer(rf"^\s*{name}\s+([^;]+);", text, re.MULTILINE)]


# Directives that would make nginx keep answers (and hand one visitor's page to another)
# or rewrite the caching headers the app chose per answer (no-store for signed-in pages,
# no-cache with Vary: Cookie for anonymous ones, see bastion.pagecache).
_RESPONSE_CACHING = ("proxy_cache", "proxy_cache_path", "proxy_store", "fastcgi_cache",
                     "uwsgi_cache", "scgi_cache", "proxy_ignore_headers", "expires")
_APP_CACHING_HEADERS = ("cache-control", "vary", "etag", "set-cookie", "expires", "pragma")


@pytest.mark.asvs("V14.2.2", "V14.3.2")
def test_the_proxy_keeps_no_answer_and_passes_the_apps_caching_headers() -> None:
    for path in (PROD_CONF, SCALEOUT):
        text = re.sub(r"#.*", "", path.read_text())
        for name in _RESPONSE_CACHING:
            assert not re.search(rf"^\s*{name}\s", text, re.MULTILINE), (path.name, name)
        hidden = [v.lower() for v in _directive(text, "proxy_hide_header")]
        assert not set(hidden) & set(_APP_CACHING_HEADERS), (path.name, hidden)
        for value in _directive(text, "add_header"):
            assert value.split()[0].lower() not in _APP_CACHING_HEADERS, (path.name, value)


@pytest.mark.asvs("V12.1.1", "V12.1.2", "V3.4.1", "V2.4.1")
def test_production_tls_and_limits_are_configured() -> None:
    """TLS 1.2/1.3 with ECDHE+AEAD only, no session tickets, HSTS always, no banner,
    bounded bodies and timeouts, a flood guard; the upload limit matches the app's."""
    text = PROD_CONF.read_text()
    assert _directive(text, "ssl_protocols") == ["TLSv1.2 TLSv1.3"]
    (ciphers,) = _directive(text, "ssl_ciphers")
    for suite in ciphers.split(":"):
        assert suite.startswith("ECDHE-") and ("GCM" in suite or "CHACHA20-POLY1305" in suite), (
            suite
        )
    assert _directive(text, "ssl_session_tickets") == ["off"]
    assert _directive(text, "server_tokens") == ["off"]
    # The server's add_headers only: one in a location would drop them all there.
    assert len(re.findall(r"^\s*add_header\s", text, re.MULTILINE)) == 3
    assert all(line.startswith("    add_header") for line in text.splitlines()
               if line.lstrip().startswith("add_header"))
    assert re.search(
        r'add_header\s+Strict-Transport-Security\s+"max-age=63072000; includeSubDomains"\s+always;',
        text,
    )
    for timeout in (
        "client_header_timeout",
        "client_body_timeout",
        "send_timeout",
        "keepalive_timeout",
        "proxy_read_timeout",
        "proxy_connect_timeout",
    ):
        assert _directive(text, timeout), timeout
    (body,) = _directive(text, "client_max_body_size")
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    upload_setting = re.search(r'BASTION_MAX_UPLOAD_MB:\s*"(\d+)"', compose)
    assert upload_setting, "compose sets BASTION_MAX_UPLOAD_MB"
    upload_mb = int(upload_setting.group(1))
    assert body.endswith("m") and upload_mb < int(body[:-1]) <= upload_mb + 4
    assert _directive(text, "limit_req_zone") and _directive(text, "limit_req")


@pytest.mark.asvs("V12.1.1", "V12.1.2", "V12.2.1", "V3.4.1", "V4.1.3", "V13.4.4", "V13.4.5")
def test_production_proxy_behaviour(
    tmp_path: Path, app_backend: Backend, internal_ca: InternalCA, run_nginx: StartNginx
) -> None:
    """A real nginx on bastion.conf: HTTPS only, modern TLS, HSTS once, one trusted hop,
    no /metrics, no TRACE, no version banner, body limit enforced; TLS to the app too."""
    _nginx_binary()
    app = app_backend
    proxy = render_production(tmp_path, app.port, internal_ca)
    run_nginx(tmp_path, proxy.conf, proxy.https_port)

    # Plain HTTP only redirects.
    plain = HTTPConnection("127.0.0.1", proxy.http_port, timeout=5)
    response, _ = _request(plain, "GET", "/articles?page=2", {"Host": "localhost"})
    assert response.status == 301
    assert response.getheader("Location") == f"https://localhost:{proxy.https_port}/articles?page=2"
    assert app.seen == [], "plain HTTP must never reach the app"
    plain.close()

    context = _https(proxy)
    conn = HTTPSConnection("localhost", proxy.https_port, context=context, timeout=5)
    response, body = _request(
        conn,
        "GET",
        "/healthz",
        {
            "X-Forwarded-For": "203.0.113.66",
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": "evil.example",
            "X-Request-ID": "forged-id",
            "Forwarded": "for=1.2.3.4",
        },
    )
    assert response.status == 200
    seen = json.loads(body)["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1", "exactly one hop: the peer nginx saw"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == "localhost"
    assert seen["x-forwarded-port"] == str(proxy.https_port)
    assert re.fullmatch(r"[0-9a-f]{32}", seen["x-request-id"])
    assert "forwarded" not in seen
    assert response.getheader("Server") == "nginx", "no version in the Server header"
    hsts = [v for k, v in response.getheaders() if k.lower() == "strict-transport-security"]
    assert hsts == ["max-age=63072000; includeSubDomains"]
    max_age = int(hsts[0].split("=")[1].split(";")[0])
    assert max_age >= 365 * 24 * 3600
    assert conn.sock is not None
    assert conn.sock.version() in {"TLSv1.2", "TLSv1.3"}
    assert _all(response, "X-Content-Type-Options") == ["nosniff"]
    assert _all(response, "Content-Security-Policy") == [APP_CSP], "the app's, once"

    response, _ = _request(conn, "GET", "/metrics", {"Authorization": "Bearer x"})
    assert response.status == 404
    _assert_nginx_own_headers(response)
    response, _ = _request(conn, "TRACE", "/")
    assert response.status == 405
    hsts_on_error = response.getheader("Strict-Transport-Security")
    assert hsts_on_error and "max-age=63072000" in hsts_on_error
    _assert_nginx_own_headers(response)
    response, _ = _request(
        conn,
        "POST",
        "/upload",
        {"Content-Type": "application/octet-stream"},
        body=b"x" * (13 * 1024 * 1024),
    )
    assert response.status == 413
    _assert_nginx_own_headers(response)
    conn.close()
    assert len(app.seen) == 1, "only the health request reached the app"

    # TLS 1.1 and older are refused by the server even when a client offers them.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cafile=str(proxy.cert))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as raw,
    ):
        old.wrap_socket(raw, server_hostname="localhost")

    # TLS 1.2 is offered only with forward-secret AEAD suites.
    tls12 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls12.load_verify_locations(cafile=str(proxy.cert))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as raw,
        tls12.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        negotiated = tls.cipher()
        assert negotiated is not None
        cipher, version, _ = negotiated
        assert version == "TLSv1.2"
        assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)
    weak = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    weak.load_verify_locations(cafile=str(proxy.cert))
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA:AES256-SHA:AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA")
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as raw,
    ):
        weak.wrap_socket(raw, server_hostname="localhost")


def _in_flight_budgets() -> dict[str, int]:
    """The shipped config's per-address limits on requests in flight, by zone."""
    limits = [v.split() for v in _directive(PROD_CONF.read_text(), "limit_conn")]
    return {zone: int(limit) for zone, limit in limits}


def _compose_app_threads() -> int:
    """The threads of the compose app: its GUNICORN_WORKERS times gunicorn's threads."""
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    workers = re.search(r'GUNICORN_WORKERS: "\$\{GUNICORN_WORKERS:-(\d+)\}"', compose)
    threads = re.search(
        r'^threads = _env_int\("GUNICORN_THREADS", (\d+)\)',
        (ROOT / "gunicorn.conf.py").read_text(),
        re.MULTILINE,
    )
    assert workers and threads, "compose.yaml and gunicorn.conf.py name their defaults"
    return int(workers.group(1)) * int(threads.group(1))


@pytest.mark.asvs("V2.4.1", "V15.2.2")
def test_the_in_flight_budgets_leave_threads_to_others_and_a_browser_its_connections() -> None:
    """One address can never occupy every app thread with pages, API calls or writes, while
    a browser's 6 HTTP/1.1 connections fit; its files (which HTTP/2 asks for all at once
    and a slow link keeps in flight) have a budget of their own, no smaller."""
    budgets = _in_flight_budgets()
    assert set(budgets) == {"bastion_conn_per_ip", "bastion_files_per_ip"}
    assert 6 <= budgets["bastion_conn_per_ip"] < _compose_app_threads()
    assert budgets["bastion_files_per_ip"] >= budgets["bastion_conn_per_ip"]


def _get(proxy: ProdProxy, path: str, client: str = "") -> HTTPResponse:
    """``path`` through the proxy on a connection of its own (a 429 may close one); with
    ``client``, from that address (a proxy rendered with ``client_header=CLIENT``)."""
    conn = HTTPSConnection("localhost", proxy.https_port, context=_https(proxy), timeout=40)
    try:
        response, _ = _request(conn, "GET", path, {CLIENT: client} if client else None)
        return response
    finally:
        conn.close()


def _hold_in_flight(
    pool: ThreadPoolExecutor, proxy: ProdProxy, paths: list[str]
) -> list[Future[int]]:
    return [pool.submit(lambda path: _get(proxy, path).status, path) for path in paths]


def _wait_until_seen(app: Backend, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(app.seen) < count:
        assert time.monotonic() < deadline, f"only {len(app.seen)} reached the app"
        time.sleep(0.05)


@pytest.mark.asvs("V2.4.1", "V15.2.2")
@pytest.mark.parametrize(
    ("zone", "slow", "other"),
    [
        # Pages held: one more page is refused, a stylesheet or an image is not.
        ("bastion_conn_per_ip", "/slow/{}", ["/static/app.css", "/uploads/abc"]),
        # Images held: one more image is refused, a page is not.
        ("bastion_files_per_ip", "/uploads/slow{}", ["/page"]),
    ],
    ids=["pages", "files"],
)
def test_one_address_cannot_hold_more_than_its_share_of_requests(
    tmp_path: Path,
    internal_ca: InternalCA,
    run_nginx: StartNginx,
    zone: str,
    slow: str,
    other: list[str],
) -> None:
    """The rate limit bounds requests per second, not requests in flight: slow requests from
    one address piled up in front of the app's few threads. With limit_conn, once that
    address has its quota in flight, its next request of the kind is a 429 from nginx (with
    nginx's own security headers) that never reaches the app; when they finish it is served
    again. The other kind has its own budget and is still served."""
    _nginx_binary()
    quota = _in_flight_budgets()[zone]
    release = threading.Event()
    app = _start_backend("app", internal_ca.issue("app"), hold=release)
    try:
        proxy = render_production(tmp_path, app.port, internal_ca)
        run_nginx(tmp_path, proxy.conf, proxy.https_port)
        with ThreadPoolExecutor(max_workers=quota) as pool:
            pending = _hold_in_flight(pool, proxy, [slow.format(i) for i in range(quota)])
            _wait_until_seen(app, quota)
            try:
                response = _get(proxy, slow.format("-one-too-many"))
                others = [_get(proxy, path).status for path in other]
            finally:
                release.set()
            statuses = [future.result(timeout=30) for future in pending]
        assert response.status == 429
        _assert_nginx_own_headers(response)
        assert "max-age=63072000" in (response.getheader("Strict-Transport-Security") or "")
        assert statuses == [200] * quota
        assert others == [200] * len(other), "the other budget is not used up"
        assert all("/slow" in seen[":path"] for seen in app.seen[:quota])
        assert "one-too-many" not in " ".join(seen[":path"] for seen in app.seen)

        assert _get(proxy, slow.format("-after")).status == 200, (
            "the quota is of requests in flight, not a ban"
        )
    finally:
        release.set()
        _stop_backends(app)


CLIENT = "X-Test-Client"  # the header a test's proxy takes the client's address from

# Addresses in one /64 as nginx writes them (RFC 5952), in each shape its key must read:
# four groups written out, and a "::" standing for zero groups inside the /64.
ONE_NETWORK = {
    "2001:db8:7:1::/64": ["2001:db8:7:1::a", "2001:db8:7:1:b:c:d:e", "2001:db8:7:1:f::1",
                          "2001:db8:7:1::a:b"],
    "2001:db8::/64": ["2001:db8::1", "2001:db8::1:2:3:4", "2001:db8::1:0:0:2", "2001:db8::ffff"],
    "2001:db8:1::/64": ["2001:db8:1::1", "2001:db8:1:0:1:2:3:4", "2001:db8:1::a:b:c"],
    "2001:0:0:5::/64": ["2001::5:1:2:3:4", "2001:0:0:5::1", "2001:0:0:5:9::"],
}


def test_the_ipv6_examples_are_written_as_nginx_writes_them() -> None:
    for network, addresses in ONE_NETWORK.items():
        for address in addresses:
            assert str(ipaddress.ip_address(address)) == address  # RFC 5952, as inet_ntop
            assert ipaddress.ip_address(address) in ipaddress.ip_network(network)


@pytest.mark.asvs("V2.4.1")
@pytest.mark.parametrize("network", list(ONE_NETWORK))
def test_an_ipv6_client_has_one_budget_for_its_whole_network(
    tmp_path: Path, internal_ca: InternalCA, run_nginx: StartNginx, network: str
) -> None:
    """A host is normally given a whole /64: counted by address, it could hold a budget of
    requests in flight from each of its 2**64 addresses and tie up every app thread. Its
    /64 has one budget, whichever of its addresses and however written; the neighbouring
    /64 (same /48) has its own, and so has an IPv4 client."""
    _nginx_binary()
    quota = _in_flight_budgets()["bastion_conn_per_ip"]
    spellings = ONE_NETWORK[network]
    release = threading.Event()
    app = _start_backend("app", internal_ca.issue("app"), hold=release)
    try:
        proxy = render_production(tmp_path, app.port, internal_ca, client_header=CLIENT)
        run_nginx(tmp_path, proxy.conf, proxy.https_port)
        with ThreadPoolExecutor(max_workers=quota) as pool:
            pending = [pool.submit(lambda n: _get(proxy, f"/slow/{n}",
                                                  spellings[n % len(spellings)]).status, n)
                       for n in range(quota)]  # fmt: skip
            _wait_until_seen(app, quota)
            try:
                # Not held when let through: a failure here is quick.
                more = [_get(proxy, "/page/more", address).status for address in spellings]
                # The next /64 (the same /48, and the same key but for its fourth group).
                neighbour = str(ipaddress.ip_network(network)[1] + 2**64)
                others = [_get(proxy, "/page", client).status
                          for client in (neighbour, "198.51.100.7")]
            finally:
                release.set()
            statuses = [future.result(timeout=30) for future in pending]
        assert statuses == [200] * quota
        assert more == [429] * len(spellings), "another address of the /64 had its own budget"
        assert others == [200, 200], "a client outside the /64 shares its budget"
    finally:
        release.set()
        _stop_backends(app)


@pytest.mark.asvs("V12.1.1")
def test_only_static_files_are_compressed(
    tmp_path: Path, app_backend: Backend, internal_ca: InternalCA, run_nginx: StartNginx
) -> None:
    """Stylesheets travel gzipped; pages and API answers never do (BREACH), even with a base
    nginx.conf that turns gzip on."""
    _nginx_binary()
    proxy = render_production(tmp_path, app_backend.port, internal_ca)
    run_nginx(tmp_path, proxy.conf, proxy.https_port)
    conn = HTTPSConnection("localhost", proxy.https_port, context=_https(proxy), timeout=5)
    gzip_ok = {"Accept-Encoding": "gzip"}

    response, body = _request(conn, "GET", "/static/css/bastion.css?v=0123456789abcdef", gzip_ok)
    assert response.status == 200
    assert response.getheader("Content-Encoding") == "gzip"
    assert "Accept-Encoding" in (response.getheader("Vary") or "")
    assert json.loads(gzip.decompress(body))["headers"][":path"].startswith("/static/")
    seen = app_backend.seen[-1]
    assert seen["x-forwarded-proto"] == "https", "the nested location keeps the proxy settings"
    assert seen["x-forwarded-for"] == "127.0.0.1"

    # The app is handed the path nginx matched, never a raw one that it would route elsewhere.
    response, body = _request(conn, "GET", "/page/../static/site.css?v=1", gzip_ok)
    assert response.getheader("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(body))["headers"][":path"] == "/static/site.css?v=1"

    for path in ("/page?q=reflected", "/api/v1/articles", "/static/../page?q=reflected"):
        response, body = _request(conn, "GET", path, gzip_ok)
        assert response.status == 200
        assert response.getheader("Content-Encoding") is None, path
        assert json.loads(body)["headers"][":path"] == path
    conn.close()


@pytest.mark.asvs("V12.3.3", "V12.3.4")
@pytest.mark.parametrize("impostor", ["another CA", "another name", "plain HTTP"])
def test_the_proxy_reaches_only_an_app_the_internal_ca_vouches_for(
    impostor: str, tmp_path: Path, internal_ca: InternalCA, run_nginx: StartNginx
) -> None:
    """Whatever listens at the app's address must prove, with a certificate the pinned
    internal CA issued for `app`, that it is the app; otherwise nginx answers 502 and sends
    it nothing (no request, no cookies, no credentials)."""
    _nginx_binary()
    if impostor == "another CA":
        tls: Leaf | None = InternalCA.create(tmp_path / "stranger").issue("app")
    elif impostor == "another name":
        tls = internal_ca.issue("other", ("other.internal", "127.0.0.2"))
    else:
        tls = None
    backend = _start_backend("impostor", tls)
    try:
        proxy = render_production(tmp_path, backend.port, internal_ca)
        run_nginx(tmp_path, proxy.conf, proxy.https_port)
        conn = HTTPSConnection("localhost", proxy.https_port, context=_https(proxy), timeout=10)
        response, _ = _request(conn, "GET", "/account", {"Cookie": "__Host-session=secret"})
        conn.close()
        assert response.status == 502
        assert backend.seen == []
    finally:
        _stop_backends(backend)


@pytest.mark.asvs("V16.2.4", "V16.2.5")
def test_access_log_is_json_without_one_time_tokens(
    tmp_path: Path, app_backend: Backend, internal_ca: InternalCA, run_nginx: StartNginx
) -> None:
    """nginx writes one JSON object per request and cuts tokens out of one-time links."""
    _nginx_binary()
    proxy = render_production(tmp_path, app_backend.port, internal_ca)
    run_nginx(tmp_path, proxy.conf, proxy.https_port)
    conn = HTTPSConnection("localhost", proxy.https_port, context=_https(proxy), timeout=5)
    for path in (
        "/auth/reset/SECRETTOKEN1",
        "/auth/confirm/SECRETTOKEN2",
        "/setup/SECRETTOKEN3",
        "/account/email/SECRETTOKEN4",
        "/articles/7?q=SECRETQUERY",
    ):
        response, _ = _request(conn, "GET", path)
        assert response.status == 200
    conn.close()
    deadline = time.monotonic() + 5
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = proxy.access_log.read_text().splitlines() if proxy.access_log.exists() else []
        if len(lines) >= 5:
            break
        time.sleep(0.05)
    entries = [json.loads(line) for line in lines]
    assert [e["path"] for e in entries] == [
        "/auth/reset/[redacted]",
        "/auth/confirm/[redacted]",
        "/setup/[redacted]",
        "/account/email/[redacted]",
        "/articles/7",
    ]
    assert "SECRET" not in "\n".join(lines)
    # The same routes as the app's own request log redacts.
    from bastion.observability.redaction import LINK_PREFIXES

    conf = (ROOT / "deploy" / "nginx" / "bastion.conf").read_text()
    redacted = re.search(r"bastion_link>/\(([^)]*)\)", conf)
    assert redacted and set(redacted.group(1).split("|")) == {p.strip("/") for p in LINK_PREFIXES}
    for entry in entries:
        assert {"time", "request_id", "remote_addr", "method", "status", "duration"} <= set(entry)
        assert re.search(r"[+-]\d\d:\d\d$", entry["time"]), "timestamps carry their UTC offset"


def test_scaleout_balances_across_both_instances(
    tmp_path: Path, backends: tuple[Backend, Backend], run_nginx: StartNginx
) -> None:
    """The rendered template runs unprivileged-by-config from a temp dir and round-robins."""
    _nginx_binary()
    listen = _free_port()
    conf = render_scaleout(tmp_path, listen, backends[0].port, backends[1].port)
    run_nginx(tmp_path, conf, listen)
    conn = HTTPConnection("127.0.0.1", listen, timeout=5)
    served = []
    for _ in range(6):
        response, body = _request(conn, "GET", "/healthz", {"X-Forwarded-For": "198.51.100.1"})
        assert response.status == 200
        payload = json.loads(body)
        served.append(payload["backend"])
        assert payload["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert payload["headers"]["x-forwarded-proto"] == "https"
    conn.close()
    assert served.count("one") == served.count("two") == 3
    assert (tmp_path / "nginx.pid").exists(), "pid file lives in the prefix"


def _log_lines(path: Path, count: int) -> list[str]:
    """The lines of a log nginx writes, once it holds ``count`` (or after 5 s)."""
    deadline = time.monotonic() + 5
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            break
        time.sleep(0.05)
    return lines


@pytest.mark.asvs("V16.2.5")
def test_access_log_keeps_no_access_token_from_a_path(
    tmp_path: Path, app_backend: Backend, internal_ca: InternalCA, run_nginx: StartNginx
) -> None:
    """A personal access token or a JWT in a path (a token revoked by its value, a refresh
    token pasted into a URL) is a live credential: the app's own log replaces each one
    (TOKEN_IN_PATH), and nginx's access log must not keep what the app's drops."""
    from bastion.observability.redaction import TOKEN_IN_PATH, redact_path

    _nginx_binary()
    proxy = render_production(tmp_path, app_backend.port, internal_ca)
    run_nginx(tmp_path, proxy.conf, proxy.https_port)
    conn = HTTPSConnection("localhost", proxy.https_port, context=_https(proxy), timeout=5)
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiI3In0.SECRETSIGNATURE-_x"
    paths = [
        "/api/v1/tokens/bst_SECRETPAT1_-x",
        f"/api/v1/articles/{jwt}/comments",
        "/api/v1//tokens/bst_SECRETPAT2",
        "/api/v1/tokens/%62st_SECRETPAT3",  # the app (and nginx) log the decoded path
        "/x/bst_SECRETPAT4/y/bst_SECRETPAT5",
        "/articles/best_practices",
    ]
    for path in paths:
        response, _ = _request(conn, "GET", path)
        assert response.status == 200, path
    conn.close()
    entries = [json.loads(line) for line in _log_lines(proxy.access_log, len(paths))]
    assert len(entries) == len(paths)
    assert "SECRET" not in proxy.access_log.read_text()
    assert entries[0]["path"] == redact_path("/api/v1/tokens/bst_SECRETPAT1_-x")
    assert entries[-1]["path"] == "/articles/best_practices", "only token shapes are cut"
    for path, entry in zip(paths, entries, strict=True):
        for token in TOKEN_IN_PATH.findall(path.replace("%62", "b")):
            assert token not in entry["path"], (path, entry["path"])


@pytest.mark.asvs("V16.2.5")
def test_error_log_never_quotes_a_link_or_token(
    tmp_path: Path, internal_ca: InternalCA, run_nginx: StartNginx
) -> None:
    """nginx's error log quotes the request line (path and query string) of each request it
    reports: with the app down for a restart, a victim opening a reset link wrote the live
    token there. Those requests still show, redacted, with their status in the access log."""
    _nginx_binary()
    proxy = render_production(tmp_path, _free_port(), internal_ca)  # nothing listens there
    run_nginx(tmp_path, proxy.conf, proxy.https_port)
    conn = HTTPSConnection("localhost", proxy.https_port, context=_https(proxy), timeout=5)
    for method, path in (
        ("GET", "/auth/reset/SECRETLINK1?next=SECRETQUERY"),
        ("POST", "/setup/SECRETLINK2"),
        ("DELETE", "/api/v1/tokens/bst_SECRETPAT1"),
    ):
        response, _ = _request(conn, method, path)
        assert response.status == 502, path
    response, _ = _request(
        conn, "POST", "/account/email/SECRETLINK3", body=b"x" * (13 * 1024 * 1024)
    )
    assert response.status == 413
    conn.close()
    entries = [json.loads(line) for line in _log_lines(proxy.access_log, 4)]
    assert [e["status"] for e in entries] == [502, 502, 502, 413]
    nginx_logs = [tmp_path / "error.log", tmp_path / "request-error.log"]
    written = "\n".join(p.read_text() for p in nginx_logs if p.exists())
    assert "SECRET" not in written
    assert "SECRET" not in proxy.access_log.read_text()
