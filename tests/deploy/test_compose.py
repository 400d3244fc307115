"""deploy/compose.yaml: complete, hardened, and with every secret in a file, never inline."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.config import public_url_problem

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SECRET_WORDS = (
    "SECRET",
    "PASSWORD",
    "TOKEN",
    "DATABASE_URL",
    "REDIS_URL",
    "MAIL_URL",
    "DSN",
    "KEY",
)
EXPECTED_SERVICES = {"app", "migrate", "postgres", "redis", "nginx", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed compose file (YAML anchors and merge keys resolved, as compose does)."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _secret_names(service: dict[str, Any]) -> dict[str, str]:
    """Secret name -> mount path inside the container, for one service."""
    mounted: dict[str, str] = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            mounted[entry] = f"/run/secrets/{entry}"
        else:
            target = entry.get("target", entry["source"])
            mounted[entry["source"]] = (
                target if target.startswith("/") else f"/run/secrets/{target}"
            )
    return mounted


def test_services_are_all_there(compose: dict[str, Any]) -> None:
    """App, one-shot migrate, PostgreSQL, Redis, nginx, Prometheus and Grafana."""
    assert set(_services(compose)) == EXPECTED_SERVICES
    app, migrate = compose["services"]["app"], compose["services"]["migrate"]
    assert app["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).resolve().is_file()
    assert migrate["image"] == app["image"], "migrations run from the very image that serves"
    assert migrate["command"] == ["flask", "--app", "bastion", "db", "upgrade"]
    assert migrate["restart"] == "no"


def test_every_service_is_health_checked_or_ordered(compose: dict[str, Any]) -> None:
    """Long-running services have a health check; start order waits on health, not on start."""
    services = _services(compose)
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name == "migrate":
            assert check.get("disable") is True, "a one-shot job has nothing to health-check"
        else:
            assert check.get("test") and not check.get("disable"), f"{name} has no health check"
            assert check["test"][0] in {"CMD", "CMD-SHELL"}
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services
            expected = (
                "service_completed_successfully" if dependency == "migrate" else "service_healthy"
            )
            assert condition["condition"] == expected, (name, dependency)
            assert set(condition) <= {"condition", "restart"}, (name, dependency)
    app_deps = services["app"]["depends_on"]
    assert set(app_deps) == {"postgres", "redis", "migrate"}
    assert set(services["migrate"]["depends_on"]) == {"postgres", "redis"}


@pytest.mark.asvs("V13.3.1", "V13.3.2", "V13.2.3")
def test_secrets_come_from_files_only(compose: dict[str, Any]) -> None:
    """No secret value in the file: secret settings are *_FILE paths to mounted secrets, and
    every secret is a git-ignored file outside the build context."""
    top = compose["secrets"]
    for name, definition in top.items():
        assert set(definition) == {"file"}, f"secret {name} must come from a file"
        path = (DEPLOY / definition["file"]).resolve()
        assert path.parent == (DEPLOY / "secrets").resolve(), name
    ignore = (DEPLOY / "secrets" / ".gitignore").read_text().split()
    assert "*" in ignore and "!.gitignore" in ignore

    for service_name, service in _services(compose).items():
        mounted = _secret_names(service)
        assert set(mounted) <= set(top), service_name
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{service_name}: use a mapping for environment"
        for key, value in environment.items():
            if any(word in key.upper() for word in SECRET_WORDS):
                assert key.endswith(("_FILE", "__FILE")), f"{service_name}: {key} is inline"
                assert value in mounted.values(), f"{service_name}: {key} -> unmounted {value}"
        assert "env_file" not in service, f"{service_name}: env files hide what is set"

    # The raw text has no credentials in URLs either.
    text = COMPOSE.read_text()
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "credentials in a URL"


@pytest.mark.asvs("V13.4.2", "V15.2.3")
def test_app_containers_are_locked_down(compose: dict[str, Any]) -> None:
    """App and migrate: read-only root, no capabilities, no privilege gain, production mode."""
    for name in ("app", "migrate"):
        service = _services(compose)[name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "cap_add" not in service
        assert "no-new-privileges:true" in service["security_opt"]
        assert "user" not in service or service["user"] not in {"root", "0", "0:0"}
        assert service.get("privileged", False) is False
        assert any(t.startswith("/tmp") for t in service["tmpfs"]), "writable /tmp for metrics"
        env = service["environment"]
        assert env["BASTION_ENV"] == "production"
        assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
        assert int(env["BASTION_PROXY_HOPS"]) == 1, "exactly one proxy (nginx) in front"
        # Production refuses to start without a relay: mail never goes to the outbox.
        assert env["BASTION_MAIL_URL_FILE"] == "/run/secrets/mail_url"
        assert "mail_url" in service["secrets"]
        # Production refuses to start without a public origin or with mail in the request.
        public = env["BASTION_PUBLIC_URL"].replace("${BASTION_DOMAIN:-localhost}", "b.example")
        assert public == "https://b.example" and public_url_problem(public) is None
        assert env.get("BASTION_MAIL_BACKGROUND", "true") == "true"
        assert "ports" not in service, "the app is reached only through nginx"
    for name, service in _services(compose).items():
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("privileged", False) is False, name
        assert "network_mode" not in service and "pid" not in service, name


@pytest.mark.asvs("V15.2.2")
def test_every_container_has_memory_and_process_limits(compose: dict[str, Any]) -> None:
    """A flood at nginx, a heavy PromQL query, a runaway Grafana plugin or a fork bomb in any
    one container must not take the host's memory or PIDs from PostgreSQL and the app."""
    for name, service in _services(compose).items():
        assert re.fullmatch(r"\d+[mg]", str(service.get("mem_limit", ""))), f"{name}: mem_limit"
        assert 0 < int(service.get("pids_limit", 0)) <= 1024, f"{name}: pids_limit"


@pytest.mark.asvs("V13.2.4", "V13.4.5")
def test_network_exposure(compose: dict[str, Any]) -> None:
    """Only nginx is public; data stores sit on an internal network; consoles bind to loopback."""
    services = _services(compose)
    networks = compose["networks"]
    assert networks["backend"]["internal"] is True
    for name in ("postgres", "redis"):
        assert services[name]["networks"] == ["backend"], name
        assert "ports" not in services[name], name
    assert services["migrate"]["networks"] == ["backend"]
    assert sorted(services["nginx"]["ports"]) == ["443:443", "80:80"]
    for name in ("prometheus", "grafana"):
        for port in services[name]["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} must not be published publicly"
    published = {name for name, s in services.items() if "ports" in s}
    assert published == {"nginx", "prometheus", "grafana"}


@pytest.mark.asvs("V12.2.1")
def test_nginx_service_matches_its_config(compose: dict[str, Any]) -> None:
    """nginx mounts bastion.conf and the certificate paths that config reads."""
    nginx = _services(compose)["nginx"]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in nginx["volumes"]}
    conf_source = volumes["/etc/nginx/conf.d/default.conf"]
    conf = (DEPLOY / conf_source).resolve()
    assert conf == (DEPLOY / "nginx" / "bastion.conf").resolve()
    text = conf.read_text()
    mounted = set(_secret_names(nginx).values())
    for directive in ("ssl_certificate", "ssl_certificate_key"):
        (path,) = re.findall(rf"^\s*{directive}\s+(\S+);", text, re.MULTILINE)
        assert path in mounted, f"{directive} {path} is not mounted"
    assert set(nginx["cap_add"]) <= {"CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE"}
    assert re.search(r"server\s+app:8000;", text), "nginx proxies to the app service"
    # It resolves `app` once, at start: a recreated app restarts it (compose's depends_on).
    assert nginx["depends_on"]["app"] == {"condition": "service_healthy", "restart": True}
    # Its temporary files (buffered bodies of up to client_max_body_size, 32 in flight per
    # address) go to a volume, not a small tmpfs that a few uploads at once filled up.
    assert volumes.get("/var/cache/nginx") in compose["volumes"]
    assert not any(t.startswith("/var/cache/nginx") for t in nginx.get("tmpfs", []))


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    """Third-party images carry an explicit version tag (PostgreSQL pinned to its major)."""
    for name, service in _services(compose).items():
        image = service["image"]
        if name in {"app", "migrate"}:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image}"
        assert re.match(r"v?\d+", tag), f"{name}: {image}"
    assert re.fullmatch(r"postgres:\d+(-\w+)?", _services(compose)["postgres"]["image"])


def test_referenced_files_exist(compose: dict[str, Any]) -> None:
    """Every bind-mounted file or directory is in the repository."""
    for name, service in _services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"


def run_make_secrets(target: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """deploy/make-secrets.sh into ``target``, without the test run's BASTION_ settings (and
    with ``path`` as PATH, to put a failing openssl first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        ["sh", str(DEPLOY / "make-secrets.sh"), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.asvs("V13.2.1", "V13.2.2", "V13.2.3")
def test_make_secrets_creates_every_secret(compose: dict[str, Any], tmp_path: Path) -> None:
    """deploy/make-secrets.sh writes each secret compose needs, random, consistent, private,
    least-privilege database roles, and never overwrites an existing file."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    target = tmp_path / "secrets"
    run = run_make_secrets(target)
    assert run.returncode == 0, run.stderr
    for definition in compose["secrets"].values():
        path = target / Path(definition["file"]).name
        assert path.is_file() and path.stat().st_size > 0, path.name
    assert stat.S_IMODE(target.stat().st_mode) == 0o700

    def read(name: str) -> str:
        return (target / name).read_text()

    assert re.fullmatch(r"[0-9a-f]{64}", read("secret_key"))
    app_url, owner_url = read("database_url"), read("migrate_database_url")
    db = "@postgres:5432/bastion"
    assert app_url == f"postgresql+psycopg://bastion_app:{read('postgres_app_password')}{db}"
    assert owner_url == (
        f"postgresql+psycopg://bastion_owner:{read('postgres_owner_password')}{db}"
    )
    # Redis: as the app's own ACL user (deploy/redis/users.acl), never `default`.
    assert read("redis_url") == f"redis://bastion:{read('redis_password')}@redis:6379/0"
    from bastion.api.keys import parse_keyset  # production refuses to start without it

    assert parse_keyset(read("jwt_keys")).active_kid
    values = [
        read(n)
        for n in (
            "secret_key",
            "metrics_token",
            "postgres_password",
            "postgres_app_password",
            "postgres_owner_password",
            "redis_password",
            "grafana_admin_password",
        )
    ]
    assert len(set(values)) == len(values), "every secret is generated separately"
    assert "BEGIN CERTIFICATE" in read("tls_fullchain.pem")

    before = {p.name: p.read_bytes() for p in target.iterdir()}
    again = run_make_secrets(target)
    assert again.returncode == 0
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before

    # The roles those URLs name are created by the PostgreSQL init script, the app's without DDL.
    init = (DEPLOY / "postgres" / "initdb" / "10-bastion-roles.sh").read_text()
    assert "CREATE ROLE bastion_owner LOGIN" in init and "CREATE ROLE bastion_app LOGIN" in init
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO bastion_app" in init
    assert "SUPERUSER" not in init.replace("NOSUPERUSER", "")
    assert os.access(DEPLOY / "postgres" / "initdb" / "10-bastion-roles.sh", os.X_OK)
    postgres = _services(compose)["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"


@pytest.mark.asvs("V13.2.2")
def test_make_secrets_names_the_redis_user_in_an_earlier_url(tmp_path: Path) -> None:
    """A redis_url written before Redis had users names none, which now means the disabled
    `default` user: make-secrets.sh names `bastion`, with the same password, and leaves a URL
    the operator wrote by hand alone."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    target = tmp_path / "secrets"
    target.mkdir()
    (target / "redis_password").write_text("a" * 64)
    (target / "redis_url").write_text(f"redis://:{'a' * 64}@redis:6379/0")
    assert run_make_secrets(target).returncode == 0
    assert (target / "redis_url").read_text() == f"redis://bastion:{'a' * 64}@redis:6379/0"
    assert (target / "redis_password").read_text() == "a" * 64

    own = f"rediss://bastion:{'a' * 64}@cache.example.net:6380/0"
    (target / "redis_url").write_text(own)
    assert run_make_secrets(target).returncode == 0
    assert (target / "redis_url").read_text() == own
