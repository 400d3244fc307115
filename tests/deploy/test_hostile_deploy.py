"""Deployment artefacts under attack: what an earlier review missed, each shown to hold.

The image must start at all on a read-only root (nothing written into it), its build must run
no code that was not locked and hashed, make-secrets.sh must never leave a blank secret,
every compose container runs without root privileges, Prometheus must reach the app with a
Host the app accepts, the public proxy must refuse the internal-only host name, the
readiness probe and the metrics, however they are spelled, and gunicorn must take no path
prefix from a request header.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from bastion.api.keys import new_key_entry
from tests.conftest import base_config, build_app
from tests.deploy.test_compose import run_make_secrets
from tests.deploy.test_dockerfile import _stages
from tests.deploy.test_gunicorn_worker import (  # noqa: F401 - fixtures used by name below
    served,
    server,
)
from tests.deploy.test_nginx import (  # noqa: F401 - fixtures used by name below
    Backend,
    InternalCA,
    StartNginx,
    _https,
    _nginx_binary,
    _request,
    app_backend,
    internal_ca,
    render_production,
    run_nginx,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _builder_runs() -> list[str]:
    """The RUN instructions of the build stage, continuation lines joined."""
    return [rest for keyword, rest in _stages()[0] if keyword == "RUN"]


# --- the image ------------------------------------------------------------------------------


def _fake_image_venv(tmp_path: Path) -> Path:
    """A venv laid out like /opt/venv in the image: Bastion installed in its site-packages
    (symlinked from the checkout) and the locked dependencies importable."""
    venv = tmp_path / "opt" / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (site,) = (venv / "lib").glob("python3*/site-packages")
    for package in ("bastion", "flask_deploy_check"):
        (site / package).symlink_to(ROOT / package, target_is_directory=True)
    # The dependencies come from this environment's site-packages, after the venv's own.
    (site / "zz_locked_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _snapshot(directory: Path) -> set[str]:
    """Every path under ``directory`` (symlinked packages not followed)."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), directory))
    return found


@pytest.mark.asvs("V15.2.3", "V13.4.2")
def test_the_image_starts_without_writing_into_its_own_files(tmp_path: Path) -> None:
    """create_app() makes sure Flask's instance folder exists; for a package installed in
    /opt/venv that folder is /opt/venv/var/bastion-instance, which the app user (not root,
    read-only root filesystem) can never create at run time. The image build must create it,
    and a production start then writes nothing into the image."""
    venv = _fake_image_venv(tmp_path)
    python = venv / "bin" / "python"
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "nonexistent"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # Run the build stage's own commands that prepare the venv's instance folder.
    steps = [
        step.strip()
        for run in _builder_runs()
        for step in run.split("&&")
        if step.strip().startswith("install -d") and ("instance" in step or "/opt/venv" in step)
    ]
    for step in steps:
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", step.replace("/opt/venv", str(venv))],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    before = _snapshot(venv)
    production = {
        **env,
        "BASTION_ENV": "production",
        "BASTION_SECRET_KEY": secrets.token_hex(32),
        # Unreachable on purpose: the app connects lazily, so a start needs neither.
        "BASTION_DATABASE_URL": "postgresql+psycopg://bastion_app:x@127.0.0.1:9/bastion",
        "BASTION_REDIS_URL": "redis://:x@127.0.0.1:9/0",
        "BASTION_TRUSTED_HOSTS": "bastion.example.com,app",
        "BASTION_PROXY_HOPS": "1",
        "BASTION_MAIL_URL": "smtp://localhost:25",
        "BASTION_PUBLIC_URL": "https://bastion.example.com",
        "BASTION_SECURITY_CONTACT": "mailto:security@bastion-site.org",
        "BASTION_METRICS_TOKEN": secrets.token_hex(32),
        "BASTION_JWT_KEYS": json.dumps([new_key_entry("image-1")]),
        "BASTION_UPLOAD_DIR": str(tmp_path / "uploads"),
        "BASTION_ANNOUNCE_SETUP": "0",
    }
    started = subprocess.run(
        [
            str(python),
            "-I",
            "-B",
            "-c",
            "import bastion, sys; app = bastion.create_app(); "
            "print(bastion.__file__); print(app.instance_path)",
        ],
        cwd=tmp_path,
        env=production,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    module, instance = started.stdout.split()
    assert Path(module).parent == next((venv / "lib").glob("python3*/site-packages")) / "bastion"
    assert Path(instance) == venv / "var" / "bastion-instance"
    written = _snapshot(venv) - before
    assert not written, f"a production start writes into the image (read-only there): {written}"


@pytest.mark.asvs("V15.2.3")
def test_the_image_build_runs_only_locked_and_hashed_code() -> None:
    """Every pip install in the build either checks hashes or fetches nothing: building the
    app itself must not pull an unpinned build backend from PyPI (build isolation would)."""
    installs = [
        step.strip()
        for run in _builder_runs()
        for step in run.split("&&")
        if re.match(r"\s*pip install\b", step)
    ]
    assert installs
    for step in installs:
        if "--require-hashes" in step:
            continue
        assert "--no-build-isolation" in step and "--no-index" in step, step
    (locked,) = [s for s in installs if "requirements/build.txt" in s]
    assert "--require-hashes" in locked

    lock = (ROOT / "requirements" / "build.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, re.MULTILINE))
    assert set(pins) == {"setuptools"}
    assert re.search(r"--hash=sha256:[0-9a-f]{64}", lock)
    pyproject = (ROOT / "pyproject.toml").read_text()
    backend = re.search(r'requires\s*=\s*\["(setuptools[^"]*)"\]', pyproject)
    assert backend, "pyproject.toml declares setuptools as its build backend"
    assert Version(pins["setuptools"]) in Requirement(backend.group(1)).specifier
    # setuptools builds wheels by itself from 70.1 on; older ones would need `wheel` too.
    assert Version(pins["setuptools"]) >= Version("70.1")


# --- make-secrets.sh ------------------------------------------------------------------------


@pytest.mark.asvs("V13.2.3", "V13.3.1")
def test_make_secrets_never_leaves_a_blank_secret(tmp_path: Path) -> None:
    """When openssl fails, the script stops without writing empty secret files (which a later
    run would keep: a blank Grafana or database password); an empty file from an interrupted
    run is generated again instead of kept."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    fake = broken / "openssl"
    fake.write_text("#!/bin/sh\necho 'openssl: simulated failure' >&2\nexit 1\n")
    fake.chmod(0o755)
    target = tmp_path / "secrets"
    path = os.environ.get("PATH", "")

    failed = run_make_secrets(target, f"{broken}{os.pathsep}{path}")
    assert failed.returncode != 0
    blank = [p.name for p in target.iterdir() if p.stat().st_size == 0] if target.exists() else []
    assert blank == [], f"blank secret files written: {blank}"

    if target.exists():
        (target / "grafana_admin_password").write_text("")  # as an interrupted run left it
    ran = run_make_secrets(target, path)
    assert ran.returncode == 0, ran.stderr
    files = {p.name: p for p in target.iterdir()}
    assert "grafana_admin_password" in files and "secret_key" in files
    for name, file in files.items():
        assert file.stat().st_size > 0, name
        assert not name.endswith(".tmp"), name
    assert re.fullmatch(r"[0-9a-f]{64}", files["grafana_admin_password"].read_text())
    # Nothing secret is ever printed, only the names of the files created.
    for file in files.values():
        if file.suffix != ".pem":
            assert file.read_text() not in ran.stdout + ran.stderr


# --- compose --------------------------------------------------------------------------------


@pytest.mark.asvs("V13.4.2", "V15.2.3")
def test_every_compose_container_runs_without_privileges() -> None:
    """Every container has a read-only root filesystem and no capabilities; only nginx's
    master keeps the few it needs to bind 443 and switch to its worker user. PostgreSQL runs
    as its own user from the start, so its entrypoint's root-only steps never run."""
    for name, service in _compose()["services"].items():
        assert service.get("read_only") is True, f"{name}: writable root filesystem"
        assert service.get("cap_drop") == ["ALL"], f"{name}: default capabilities kept"
        allowed = {"CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE"} if name == "nginx" else set()
        assert set(service.get("cap_add", [])) <= allowed, name
    postgres = _compose()["services"]["postgres"]
    uid = str(postgres["user"]).split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    mounts = {entry.split(":")[0] for entry in postgres["tmpfs"]}
    assert {"/var/run/postgresql", "/tmp"} <= mounts, "socket directory and temp files"


def _hosts_prometheus_sends() -> list[str]:
    """The Host header of each scrape of the app: Prometheus sends the target address; DNS
    discovery yields container IP addresses (any one will do here)."""
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "bastion"]
    hosts = [t for static in job.get("static_configs", []) for t in static["targets"]]
    hosts += [f"172.18.0.5:{sd['port']}" for sd in job.get("dns_sd_configs", [])]
    return hosts


@pytest.mark.asvs("V16.4.3", "V13.4.5")
def test_prometheus_scrapes_with_a_host_the_app_trusts(tmp_path: Path) -> None:
    """A scrape the app refuses (400, untrusted Host) leaves every security alert silent. The
    app, configured as compose configures it, answers each scrape Prometheus makes."""
    env = _compose()["services"]["app"]["environment"]
    trusted = re.sub(
        r"\$\{BASTION_DOMAIN:-[^}]*\}", "bastion.example.com", env["BASTION_TRUSTED_HOSTS"]
    )
    token = secrets.token_hex(32)
    app = build_app(
        base_config(
            tmp_path,
            f"sqlite:///{tmp_path / 'bastion.db'}",
            TRUSTED_HOSTS=trusted.split(","),
            METRICS_TOKEN=token,
        )
    )
    client = app.test_client()
    hosts = _hosts_prometheus_sends()
    assert hosts
    for host in hosts:
        response = client.get(
            "/metrics",
            base_url=f"https://{host}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, (host, response.status_code)
        assert b"# TYPE bastion_" in response.data


# --- gunicorn -------------------------------------------------------------------------------


@pytest.mark.asvs("V4.1.3", "V16.5.1")
@pytest.mark.parametrize("prefix", ["/account", "/elsewhere"])
def test_gunicorn_takes_no_path_prefix_from_a_request_header(
    prefix: str,
    server: int,  # noqa: F811 - the fixture imported from test_gunicorn_worker
) -> None:
    """gunicorn.conf.py trusts loopback peers (FORWARDED_ALLOW_IPS) for the scheme, and by
    default gunicorn would also take a `SCRIPT_NAME` header from them: whatever a sidecar or
    proxy there passes on would mount the app under the client's prefix (its routing, its
    links and the path it logs), or fail the request with a 500 that names the path. The
    request comes from 127.0.0.1, a trusted peer."""
    path = "/account/environ"
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nSCRIPT_NAME: {prefix}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), reply[:300]
    assert body.decode() == f"|{path}", "SCRIPT_NAME|PATH_INFO as the app saw them"


@pytest.mark.asvs("V4.1.3", "V12.2.1")
def test_gunicorn_takes_the_scheme_from_x_forwarded_proto_only(
    server: int,  # noqa: F811 - the fixture imported from test_gunicorn_worker
) -> None:
    """gunicorn's default also believes X-Forwarded-Ssl and X-Forwarded-Protocol from a
    trusted (loopback) peer. The proxy overwrites X-Forwarded-Proto only, so a client whose
    headers it passes on was served as HTTPS over plain HTTP (no redirect to HTTPS) with
    either one, and got a 400 for one contradicting the proxy's X-Forwarded-Proto."""
    cases = {
        "X-Forwarded-Ssl: on\r\n": "http",
        "X-Forwarded-Protocol: ssl\r\n": "http",
        "X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n": "https",
        "X-Forwarded-Proto: https\r\n": "https",
    }
    for headers, scheme in cases.items():
        with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
            sock.sendall(
                f"GET /scheme HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
                .encode()
            )
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), (headers, reply[:300])
        assert body.decode() == scheme, headers


# --- nginx ----------------------------------------------------------------------------------


@pytest.mark.asvs("V4.1.3", "V13.4.5")
def test_the_proxy_refuses_internal_names_and_the_readiness_probe(
    tmp_path: Path,
    app_backend: Backend,  # noqa: F811 - the fixture imported from test_nginx
    internal_ca: InternalCA,  # noqa: F811
    run_nginx: StartNginx,  # noqa: F811
) -> None:
    """Through the public proxy, `Host: app` (trusted by the app for in-deployment callers,
    and used by it to build mailed links) is refused, and /readyz is not reachable; the
    public name and /healthz still are."""
    _nginx_binary()
    proxy = render_production(tmp_path, app_backend.port, internal_ca)
    run_nginx(tmp_path, proxy.conf, proxy.https_port)
    from http.client import HTTPSConnection

    conn = HTTPSConnection("localhost", proxy.https_port, context=_https(proxy), timeout=5)
    for host in ("app", "APP", "app.", f"app:{proxy.https_port}"):
        response, _ = _request(conn, "POST", "/auth/reset", {"Host": host}, body=b"email=x")
        assert response.status == 421, host
    # The host in an absolute-form request line wins over the Host header, in nginx too.
    response, _ = _request(conn, "GET", "https://app/auth/reset", {"Host": "localhost"})
    assert response.status == 421
    for path in ("/readyz", "//readyz", "/static/../readyz", "/%72eadyz"):
        response, _ = _request(conn, "GET", path)
        assert response.status == 404, path
    assert app_backend.seen == [], "neither reached the app"

    response, _ = _request(conn, "GET", "/healthz", {"Host": "localhost"})
    assert response.status == 200
    assert app_backend.seen[-1]["x-forwarded-host"] == "localhost"
    conn.close()


# What the public proxy must keep from the app: these paths and this host name, however they
# are spelled. Each spelling is either refused by nginx or, as forwarded, something the app
# routes elsewhere: nginx decodes and normalises before it matches a location, but hands the
# app the raw target, which gunicorn only percent-decodes and Werkzeug routes as it is.
_INTERNAL_ROUTES = ("/metrics", "/readyz")
_SPELLINGS = (
    "{p}", "/{p}", "//{p}", "/./{p}", "/x/../{p}", "/static/../{p}", "/static/..%2F{p}",
    "/static/%2e%2e/{p}", "/static/%2E%2E%2f{p}", "/static%2F..%2F{p}", "/%2F{p}",
    "/%252e%252e/{p}", "{p}/", "{p}%2F", "{p}/.", "{p}/..", "{p}%2e", "{p}.", "{p};x", "{p}%3B",
    "{p}?x=1", "{p}%3F", "{p}#x", "{p}%23", "{p}%20", "{p}%09", "{p}%00", "{p}%0A",
    "/static/..\\{p}", "{P}", "{first}%{hex}{rest}", "http://localhost{p}",
    "https://localhost//{p}",
)
_INTERNAL_HOSTS = ("app", "APP", "app.", "App.:443", "app:", "app:0", "[app]", "app%2e",
                   "app..", "app.:8000", " app", "app,localhost", "localhost,app")


def _raw_exchange(port: int, context: Any, request: bytes) -> bytes:
    """One request over its own TLS connection, bytes as given; the status line back."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(request)
        reply = b""
        with contextlib.suppress(OSError):
            while chunk := tls.recv(65536):
                reply += chunk
    return reply.split(b"\r\n", 1)[0]


def _app_endpoint(app: Any, raw_target: str) -> str | None:
    """The endpoint the app would run for a request target nginx forwarded, as gunicorn
    (split_request_uri, unquote_to_wsgi_str) and Werkzeug's routing turn it into one; None
    for a 404, 405 or a redirect (a redirect to /readyz goes back through nginx)."""
    from gunicorn.util import split_request_uri, unquote_to_wsgi_str
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import RequestRedirect

    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_wsgi_str(split_request_uri(raw_target).path or ""),
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "443",
        "HTTP_HOST": "localhost",
        "wsgi.url_scheme": "https",
    }
    try:
        endpoint, _ = app.url_map.bind_to_environ(environ).match()
    except (RequestRedirect, HTTPException):
        return None
    return str(endpoint)


@pytest.mark.asvs("V13.4.5", "V4.1.3")
def test_no_spelling_of_an_internal_path_or_host_gets_through_the_proxy(
    tmp_path: Path,
    app_backend: Backend,  # noqa: F811 - the fixture imported from test_nginx
    internal_ca: InternalCA,  # noqa: F811
    run_nginx: StartNginx,  # noqa: F811
) -> None:
    """Over HTTP/1.1 and HTTP/2, no spelling of /metrics or /readyz (encoded, dot segments,
    doubled or trailing slashes, parameters, absolute form) reaches the app as a request its
    router sends to those views, and no spelling of `Host: app` reaches it as a host that
    Werkzeug's allow-list would take for `app`."""
    from werkzeug.sansio.utils import host_is_trusted

    _nginx_binary()
    app = build_app(base_config(tmp_path, f"sqlite:///{tmp_path / 'bastion.db'}"))
    internal = {r.endpoint for r in app.url_map.iter_rules() if r.rule in _INTERNAL_ROUTES}
    assert len(internal) == len(_INTERNAL_ROUTES), internal
    proxy = render_production(tmp_path, app_backend.port, internal_ca)
    run_nginx(tmp_path, proxy.conf, proxy.https_port)
    context = _https(proxy)

    targets = [
        spelling.format(p=path, P=path.upper(), first=path[:1], hex=f"{ord(path[1]):02x}",
                        rest=path[2:])
        for path in _INTERNAL_ROUTES
        for spelling in _SPELLINGS
    ]
    for target in targets:
        status = _raw_exchange(
            proxy.https_port,
            context,
            f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode(),
        )
        assert status.startswith(b"HTTP/"), (target, status)
    curl = shutil.which("curl")
    if curl:
        for target in [t for t in targets if t.startswith("/") and "#" not in t]:
            done = subprocess.run(
                [curl, "-s", "--http2", "--path-as-is", "--cacert", str(proxy.cert),
                 "-o", os.devnull, "-w", "%{http_version}",
                 f"https://localhost:{proxy.https_port}{target}"],
                capture_output=True, text=True, timeout=15, check=False,
            )
            assert done.stdout == "2", (target, done.stdout, done.stderr)
    for seen in app_backend.seen:
        assert _app_endpoint(app, seen[":path"]) not in internal, seen[":path"]
    assert all(seen["host"] == "localhost" for seen in app_backend.seen)

    before = len(app_backend.seen)
    for host in _INTERNAL_HOSTS:
        _raw_exchange(
            proxy.https_port,
            context,
            f"GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(),
        )
    for seen in app_backend.seen[before:]:
        for name in ("host", "x-forwarded-host"):
            assert not host_is_trusted(seen[name], ["app"]), seen
