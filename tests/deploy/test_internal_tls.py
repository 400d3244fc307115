"""TLS inside the deployment: gunicorn speaks only TLS, and its clients pin the internal CA.

The certificates are the ones ``deploy/make-secrets.sh`` creates for compose; the server is
real gunicorn with the project's ``gunicorn.conf.py``; the clients are the container health
check and the same verification nginx and Prometheus are configured with (nginx itself is
exercised in ``test_nginx.py``). The manifests are checked for the same chain.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.ops import processes
from tests.support.pki import InternalCA

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert shutil.which("openssl"), "openssl is needed to make the deployment's secrets"
    target = tmp_path_factory.mktemp("tls") / "secrets"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    run = subprocess.run(
        ["sh", str(DEPLOY / "make-secrets.sh"), str(target)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )
    assert run.returncode == 0, run.stderr
    return target


@dataclass
class TlsApp:
    port: int
    ca: Path
    proc: subprocess.Popen[bytes]

    def context(self, cafile: Path | None = None) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(cafile or self.ca))


@pytest.fixture(scope="module")
def tls_app(secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsApp]:
    """Bastion under gunicorn with the certificate compose mounts into the app."""
    tmp = tmp_path_factory.mktemp("tls-app")
    port = processes.free_port()
    env = {
        **os.environ,
        "BASTION_ENV": "development",
        "BASTION_SECRET_KEY": processes.SECRET_KEY,
        "BASTION_JWT_KEYS": processes.JWT_KEYS,
        "BASTION_DATABASE_URL": f"sqlite:///{tmp / 'app.db'}",
        "BASTION_TRUSTED_HOSTS": "127.0.0.1,localhost,app",
        "BASTION_BIND": f"127.0.0.1:{port}",
        "BASTION_ANNOUNCE_SETUP": "0",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_CERT_FILE": str(secrets_dir / "internal_tls_cert.pem"),
        "GUNICORN_KEY_FILE": str(secrets_dir / "internal_tls_key.pem"),
    }
    log = (tmp / "gunicorn.log").open("ab")
    proc = subprocess.Popen(
        [str(processes.GUNICORN), "-c", str(ROOT / "gunicorn.conf.py"), "bastion:create_app()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    app = TlsApp(port, secrets_dir / "internal_ca.pem", proc)
    deadline = time.monotonic() + 30
    try:
        while True:
            assert proc.poll() is None, (tmp / "gunicorn.log").read_text()
            try:
                if _get(app, "/healthz")[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        yield app
    finally:
        processes.stop(proc)
        log.close()


def _get(
    app: TlsApp, path: str, *, context: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> tuple[int, Any]:
    conn = http.client.HTTPSConnection(
        host, app.port, context=context or app.context(), timeout=5
    )
    try:
        conn.request("GET", path, headers={"Host": "app"})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type")
    finally:
        conn.close()


def _load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bastion_healthcheck_tls", DEPLOY / "healthcheck.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.asvs("V12.3.3", "V12.3.4")
def test_the_app_port_speaks_tls_verified_by_the_pinned_ca(tls_app: TlsApp) -> None:
    """Under the names its clients use: `app` (nginx, Prometheus) and 127.0.0.1 (health)."""
    assert _get(tls_app, "/healthz")[0] == 200
    assert _get(tls_app, "/healthz", host="localhost")[0] == 200
    context = tls_app.context()
    context.check_hostname = True
    with (
        socket.create_connection(("127.0.0.1", tls_app.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="app") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.asvs("V12.3.3")
def test_no_plain_http_fallback_and_no_old_tls(tls_app: TlsApp) -> None:
    def plain_http() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", tls_app.port, timeout=5)
        try:
            conn.request("GET", "/healthz", headers={"Host": "app"})
            return conn.getresponse().status
        finally:
            conn.close()

    with pytest.raises((OSError, http.client.HTTPException)):
        plain_http()
    # A client that offers only TLS 1.0/1.1 (it can negotiate them with a server that allows
    # them): gunicorn must refuse the handshake.
    old = tls_app.context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        _get(tls_app, "/healthz", context=old)


@pytest.mark.asvs("V12.3.4")
def test_a_certificate_from_another_ca_is_refused(tls_app: TlsApp, tmp_path: Path) -> None:
    """Pinning: the system store is not consulted, and another CA's trust is worthless."""
    stranger = InternalCA.create(tmp_path / "other", "Someone else's CA")
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(tls_app, "/healthz", context=tls_app.context(stranger.ca))
    system = ssl.create_default_context()  # the public CAs: must not accept it either
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(tls_app, "/healthz", context=system)


@pytest.mark.asvs("V12.3.3", "V12.3.4")
def test_the_health_check_uses_tls_with_the_pinned_ca(
    tls_app: TlsApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthcheck = _load_healthcheck()
    monkeypatch.setenv("BASTION_BIND", f"0.0.0.0:{tls_app.port}")
    monkeypatch.setenv("BASTION_TRUSTED_HOSTS", "app")
    monkeypatch.setenv("GUNICORN_CERT_FILE", "/run/secrets/internal_tls_cert.pem")
    monkeypatch.setenv("BASTION_INTERNAL_CA_FILE", str(tls_app.ca))
    assert healthcheck.target()[0].startswith("https://127.0.0.1:")
    assert healthcheck.main() == 0
    stranger = InternalCA.create(tmp_path / "other")
    monkeypatch.setenv("BASTION_INTERNAL_CA_FILE", str(stranger.ca))
    assert healthcheck.main() == 1, "a certificate the pinned CA did not issue is unhealthy"
    monkeypatch.delenv("BASTION_INTERNAL_CA_FILE")
    assert healthcheck.main() == 1, "no CA to pin: unhealthy, never unverified"


def _handshake(cert: Path, key: Path, ca: Path, name: str) -> str:
    """One TLS handshake against a server holding ``cert``; the client pins ``ca``."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def accept() -> None:
            conn, _ = listener.accept()
            with suppress(OSError), server_context.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        client = ssl.create_default_context(cafile=str(ca))
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=5) as raw,
                client.wrap_socket(raw, server_hostname=name) as tls,
            ):
                return str(tls.version())
        finally:
            thread.join(timeout=5)


@pytest.mark.asvs("V12.3.4")
@pytest.mark.parametrize(
    ("stem", "name"), [("internal_tls", "app"), ("internal_prometheus", "prometheus")]
)
def test_make_secrets_issues_each_service_a_certificate_its_clients_verify(
    secrets_dir: Path, stem: str, name: str
) -> None:
    ca = secrets_dir / "internal_ca.pem"
    cert, key = secrets_dir / f"{stem}_cert.pem", secrets_dir / f"{stem}_key.pem"
    assert _handshake(cert, key, ca, name) in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(cert, key, ca, "someone-else")
    # The CA's private key was used once and is not left among the secrets.
    keys = [p.name for p in secrets_dir.iterdir() if b"PRIVATE KEY" in p.read_bytes()]
    assert sorted(keys) == [
        "internal_prometheus_key.pem", "internal_tls_key.pem", "jwt_keys", "tls_privkey.pem"
    ]


def test_gunicorn_needs_both_certificate_and_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.deploy.test_gunicorn_conf import load

    with pytest.raises(SystemExit):  # gunicorn refuses to start on a broken config file
        load(monkeypatch, GUNICORN_CERT_FILE="/run/secrets/internal_tls_cert.pem")
    assert "set both GUNICORN_CERT_FILE and GUNICORN_KEY_FILE" in capsys.readouterr().err
    cfg, _ = load(
        monkeypatch,
        GUNICORN_CERT_FILE="/run/secrets/internal_tls_cert.pem",
        GUNICORN_KEY_FILE="/run/secrets/internal_tls_key.pem",
    )
    assert cfg.is_ssl
    cfg, _ = load(monkeypatch)
    assert not cfg.is_ssl


# --- the manifests wire the same chain --------------------------------------------------


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.mark.asvs("V12.3.3", "V12.3.4")
def test_compose_encrypts_every_hop_to_the_app() -> None:
    compose = _yaml(DEPLOY / "compose.yaml")
    services = compose["services"]
    env = services["app"]["environment"]
    mounted = {
        name: {s if isinstance(s, str) else s.get("target", s["source"]) for s in svc["secrets"]}
        for name, svc in services.items()
        if "secrets" in svc
    }
    assert Path(env["GUNICORN_CERT_FILE"]).name in mounted["app"]
    assert Path(env["GUNICORN_KEY_FILE"]).name in mounted["app"]
    assert env["BASTION_INTERNAL_CA_FILE"] == "/run/secrets/internal_ca.pem"
    for client in ("app", "nginx", "prometheus"):
        assert "internal_ca.pem" in mounted[client], client

    scrape = _yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    job = next(j for j in scrape if j["job_name"] == "bastion")
    assert job["scheme"] == "https"
    assert job["tls_config"]["ca_file"] == "/run/secrets/internal_ca.pem"
    assert job["tls_config"]["server_name"] == "app"
    assert job["tls_config"].get("insecure_skip_verify") is False

    # Grafana -> Prometheus, and Prometheus's own port, are TLS with the same pinned CA.
    prometheus = services["prometheus"]
    assert "--web.config.file=/etc/prometheus/web.yml" in prometheus["command"]
    web = _yaml(DEPLOY / "prometheus" / "web.yml")["tls_server_config"]
    assert {Path(web["cert_file"]).name, Path(web["key_file"]).name} <= mounted["prometheus"]
    health = prometheus["healthcheck"]["test"]
    assert "--url=https://localhost:9090" in health
    client = _yaml(DEPLOY / "prometheus" / "healthcheck-client.yml")["tls_config"]
    assert client == {"ca_file": "/run/secrets/internal_ca.pem", "insecure_skip_verify": False}
    own = next(j for j in scrape if j["job_name"] == "prometheus")
    assert own["scheme"] == "https" and own["tls_config"]["ca_file"] == client["ca_file"]
    datasources = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
    (grafana,) = _yaml(datasources)["datasources"]
    assert grafana["url"] == "https://prometheus:9090"
    assert grafana["jsonData"]["tlsAuthWithCACert"] is True
    assert grafana["jsonData"]["serverName"] == "prometheus"
    assert grafana["secureJsonData"]["tlsCACert"] == "$__file{/run/secrets/internal_ca.pem}"
    assert "internal_ca.pem" in mounted["grafana"]
    compose_text = (DEPLOY / "compose.yaml").read_text()
    assert "http://prometheus" not in compose_text and "http://app" not in compose_text

    nginx = (DEPLOY / "nginx" / "bastion.conf").read_text()
    assert "proxy_pass https://bastion_app;" in nginx
    assert "proxy_pass http://" not in nginx
    for directive in (
        "proxy_ssl_verify on;",
        "proxy_ssl_trusted_certificate /run/secrets/internal_ca.pem;",
        "proxy_ssl_name app;",
    ):
        assert directive in nginx


@pytest.mark.asvs("V12.3.3", "V12.3.4")
def test_kubernetes_encrypts_ingress_to_pod_and_pins_the_ca() -> None:
    base = DEPLOY / "k8s" / "base"
    deployment = _yaml(base / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    web = pod["containers"][0]
    env = {e["name"]: e["value"] for e in web["env"]}
    mounts = {m["name"]: m["mountPath"] for m in web["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = volumes["internal-tls"]["secret"]["secretName"]
    for name in ("GUNICORN_CERT_FILE", "GUNICORN_KEY_FILE", "BASTION_INTERNAL_CA_FILE"):
        assert env[name].startswith(mounts["internal-tls"] + "/"), name
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert web[probe]["httpGet"]["scheme"] == "HTTPS", probe

    ingresses = [
        doc
        for doc in yaml.safe_load_all((base / "ingress.yaml").read_text())
        if doc["kind"] == "Ingress"
    ]
    assert ingresses
    for ingress in ingresses:  # one per budget of requests in flight; each its own paths
        notes = ingress["metadata"]["annotations"]
        prefix = "nginx.ingress.kubernetes.io/"
        assert notes[prefix + "backend-protocol"] == "HTTPS"
        assert notes[prefix + "proxy-ssl-verify"] == "on"
        assert notes[prefix + "proxy-ssl-secret"].split("/")[-1] == secret
        service = _yaml(base / "service.yaml")["metadata"]["name"]
        assert notes[prefix + "proxy-ssl-name"] == service
