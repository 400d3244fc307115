"""docs/security.md states what the code does: its tables are checked against the code."""

from __future__ import annotations

import importlib
import inspect
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from pydantic import BaseModel

from bastion.config import FILE_SETTINGS, BaseConfig
from bastion.security.headers import CSP
from tests.factories import UserFactory
from tests.support.auth import csrf_token

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
# The doc-review rows this document answers (ASVS 5.0 ids).
DOC_IDS = {
    "V1.1.2", "V2.1.1", "V2.1.2", "V2.3.2", "V3.5.4", "V3.7.1", "V5.1.1", "V5.4.3", "V6.1.3",
    "V6.2.10", "V6.4.4", "V7.1.1", "V7.1.2", "V7.2.2", "V8.1.2", "V11.1.1", "V11.1.2", "V11.2.2",
    "V14.1.1", "V14.1.2", "V14.2.4", "V15.1.1", "V15.1.3", "V16.4.3", "V11.2.1", "V16.1.1",
}


def _section(title_start: str) -> str:
    match = re.search(rf"^## {re.escape(title_start)}.*?(?=^## |\Z)", DOC, re.S | re.M)
    assert match, f"no section {title_start!r} in docs/security.md"
    return match.group(0)


def _rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def _code(cell: str) -> str:
    return cell.strip().strip("`")


def _actual(key: str) -> Any:
    if "." not in key:
        return getattr(BaseConfig, key)
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # longest importable module prefix
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise AssertionError(f"cannot resolve {key}")


@pytest.mark.asvs("V7.1.1", "V15.1.3", "V2.3.2", "V6.1.3")
def test_documented_values_are_the_ones_the_code_uses() -> None:
    rows = _rows(_section("Values the code uses"))
    assert len(rows) >= 40
    for key_cell, value, _meaning in rows:
        key = _code(key_cell)
        assert str(_actual(key)) == value, f"{key}: doc says {value}, code has {_actual(key)!r}"


def _route_limits_in_code() -> dict[str, str]:
    found = {}
    decorated = re.compile(r'@limiter\.limit\(([^\n]*)\)\n(?:@[^\n]*\n)*def (\w+)')
    for path in (ROOT / "bastion").rglob("*.py"):
        for args, func in decorated.findall(path.read_text(encoding="utf-8")):
            literal = re.match(r'"([^"]+)"', args)
            rel = path.relative_to(ROOT / "bastion").as_posix()
            found[f"{rel}:{func}"] = literal.group(1) if literal else args.split(",")[0]
    return found


@pytest.mark.asvs("V2.3.2", "V2.1.3")
def test_every_route_limit_is_documented_and_nothing_more() -> None:
    documented = {_code(r[0]): r[1] for r in _rows(_section("Business limits"))}
    in_code = _route_limits_in_code()
    assert set(documented) == set(in_code)
    for route, limit in in_code.items():
        if limit.startswith("_"):  # a setting, named in the doc
            assert "UPLOAD_RATE_LIMIT" in documented[route], route
        else:
            assert documented[route] == limit, route


@pytest.mark.asvs("V2.3.2")
def test_documented_route_limits_are_enforced(client: FlaskClient, app: Flask) -> None:
    documented = {_code(r[0]): r[1] for r in _rows(_section("Business limits"))}
    per_minute = int(documented["auth/routes.py:register"].split()[0])
    replies = []
    for i in range(per_minute + 1):
        token = csrf_token(client, "/auth/register")
        replies.append(client.post("/auth/register", data={
            "csrf_token": token, "username": f"limit{i}", "email": "x",
            "password": "p", "confirm": "p"}))
    assert 429 not in [r.status_code for r in replies[:per_minute]]
    assert replies[-1].status_code == 429 and "Retry-After" in replies[-1].headers


def _form_fields() -> dict[tuple[str, str], list[Any]]:
    """Every field of every form the app defines: found as FlaskForm's subclasses once the
    app is built (its views import their forms), so a form in a new module is not missed."""
    from flask_wtf import FlaskForm

    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        return found.union(*(subclasses(c) for c in found))

    fields = {}
    for cls in sorted(subclasses(FlaskForm), key=lambda c: c.__name__):
        if cls.__module__.startswith("bastion.") and not inspect.isabstract(cls):
            form = cls(meta={"csrf": False})
            for field in form:
                fields[(cls.__name__, field.name)] = list(field.validators)
    return fields


def _schema_fields() -> dict[tuple[str, str], Any]:
    from bastion.api import schemas

    fields = {}
    for cls_name, cls in vars(schemas).items():
        if (inspect.isclass(cls) and issubclass(cls, BaseModel) and cls.__module__ == schemas.__name__
                and (issubclass(cls, schemas.Input) or cls_name.endswith("Query"))):
            for field_name, info in cls.model_fields.items():
                fields[(cls_name, field_name)] = info
    return fields


def _bounds(obj: Any) -> list[int]:
    text = repr(obj)
    return [int(n) for n in re.findall(r"(?:max_length|max|le)=(\d+)", text) if int(n) > 0]


@pytest.mark.asvs("V2.1.1", "V2.1.2")
def test_every_input_field_is_documented_with_its_limits(app: Flask) -> None:
    from wtforms.validators import Length, NumberRange

    rows = {(_code(r[0]), _code(r[1])): r[2] for r in _rows(_section("Input validation"))}
    with app.test_request_context():
        forms = _form_fields()
    schemas = _schema_fields()
    assert len(forms) > 30 and len(schemas) > 20
    assert set(rows) == set(forms) | set(schemas)
    for key, validators in forms.items():
        for v in validators:
            if isinstance(v, Length) and v.max > 0:
                assert str(v.max) in rows[key], key
            if isinstance(v, Length) and v.min > 0:
                assert str(v.min) in rows[key], key
            if isinstance(v, NumberRange):
                # An open upper bound is a setting, enforced by the service: named instead.
                bound = v.max if v.max is not None else "`PAT_MAX_DAYS`"
                assert f"{v.min} to {bound}" in rows[key], key
    for key, info in schemas.items():
        for bound in _bounds(info):
            assert str(bound) in rows[key], (key, bound)


def _auth_section(title_start: str) -> str:
    text = (ROOT / "docs" / "authentication.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title_start)}.*?(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section {title_start!r} in docs/authentication.md"
    return " ".join(match.group(0).split())


@pytest.mark.asvs("V6.1.1")
def test_guessing_defences_are_documented_with_the_values_the_code_uses() -> None:
    """The anti-guessing section states the throttle the code applies and why it is a delay,
    not a lockout an attacker could impose on the owner."""
    section = _auth_section("Guessing and credential stuffing")
    config = BaseConfig
    assert f"after {config.LOGIN_THROTTLE_ACCOUNT_FREE} failures for an account" in section
    assert f"or {config.LOGIN_THROTTLE_IP_FREE} for a client address" in section
    assert f"wait {config.LOGIN_THROTTLE_BASE_SECONDS:g} s" in section
    assert f"up to {config.LOGIN_THROTTLE_MAX_SECONDS / 60:g} minutes" in section
    assert config.LOGIN_THROTTLE_FORGET_SECONDS == 3600 and "after an hour" in section
    login_limit = _route_limits_in_code()["auth/routes.py:login"]
    assert login_limit == "10 per minute" and "10 sign-in posts per minute" in section
    assert "Why delays and not a lockout" in section and "lock a victim out" in section


@pytest.mark.asvs("V6.1.2")
def test_banned_context_words_are_the_documented_ones() -> None:
    from bastion.auth import services

    section = _auth_section("Passwords")
    assert "context word" in section
    assert "the username, the local part of the email address" in section
    for word in services.CONTEXT_WORDS:
        assert f"`{word}`" in section, word


@pytest.mark.asvs("V6.1.3")
def test_every_authentication_route_is_a_documented_pathway(app: Flask) -> None:
    section = _section("Authentication pathways")
    prefixes = ("/auth/", "/api/v1/auth/", "/setup/")
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(prefixes) and rule.rule != "/auth/logout":
            base = re.sub(r"/<[^>]+>", "", rule.rule)
            assert base in section, rule.rule
    assert "bst_" in section and "flask create-admin" in section


@pytest.mark.asvs("V7.1.1")
def test_session_timeouts_are_documented_against_nist_with_their_deviation() -> None:
    section = " ".join(_section("Sessions").split())
    assert f"idle `SESSION_IDLE_MINUTES` ({BaseConfig.SESSION_IDLE_MINUTES})" in section
    assert f"absolute `SESSION_ABSOLUTE_HOURS` ({BaseConfig.SESSION_ABSOLUTE_HOURS})" in section
    assert "NIST SP 800-63B" in section and "The one deviation" in section
    assert f"(`REMEMBER_DAYS`, {BaseConfig.REMEMBER_DAYS} days, no idle limit)" in section


@pytest.mark.asvs("V7.1.2", "V7.2.2")
def test_concurrent_sessions_are_capped_as_documented(app: Flask) -> None:
    """Several devices stay signed in side by side; a sign-in beyond the documented cap
    ends the least recently used session, and only that one."""
    from bastion.auth.sessions import MAX_LIVE_SESSIONS, start_session
    from bastion.extensions import db
    from bastion.models import UserSession
    from tests.support.account_fixtures import sign_in

    assert f"at most {MAX_LIVE_SESSIONS} live sessions per account" in _section("Sessions")
    user = UserFactory(username="multi")
    first, second = app.test_client(), app.test_client()
    assert sign_in(first, "multi").status_code == 302
    assert sign_in(second, "multi").status_code == 302
    assert first.get("/account").status_code == second.get("/account").status_code == 200
    # "second" was last used a while ago (use is recorded once a minute).
    stale = db.session.scalars(
        db.select(UserSession).where(UserSession.user_id == user.id).order_by(UserSession.id)
    ).all()[1]
    stale.last_seen_at -= timedelta(minutes=5)
    db.session.commit()
    # Up to the cap, then one sign-in more.
    for _ in range(MAX_LIVE_SESSIONS - 2):
        with app.test_request_context("/auth/login", method="POST"):
            start_session(user)
    assert first.get("/account").status_code == 200  # at the cap: everyone stays
    with app.test_request_context("/auth/login", method="POST"):
        start_session(user)
    live = db.session.query(UserSession).filter_by(user_id=user.id, revoked_at=None).count()
    assert live == MAX_LIVE_SESSIONS
    assert second.get("/account").status_code == 302  # the least recently used went
    assert first.get("/account").status_code == 200
    # No static credentials: no setting holds an API key or shared bearer for users.
    assert not [k for k in dir(BaseConfig) if re.search(r"API_KEY|STATIC_TOKEN|SHARED", k)]


@pytest.mark.asvs("V11.1.1", "V11.1.2", "V11.2.2")
def test_key_inventory_matches_the_code() -> None:
    from bastion.auth import twofactor

    section = _section("Cryptography and keys")
    inventory = " ".join(r[0] for r in _rows(section))
    for name in FILE_SETTINGS:
        if re.search(r"KEY|TOKEN", name):
            assert f"`{name}`" in inventory, name
    label = re.search(r'info=b"([^"]+)"', inspect.getsource(twofactor._fernet))
    assert label and label.group(1) in section
    assert "Ed25519" in section and "Argon2id" in section and "kid" in section


@pytest.mark.asvs("V5.1.1")
def test_upload_section_matches_the_code() -> None:
    from bastion.uploads import imaging

    section = _section("Uploads")
    documented = set(re.findall(r"`?\.(\w+)", section.split("Allowed names")[1].split("the name")[0]))
    assert documented == set(imaging.NAME_EXTENSIONS)
    for fmt in imaging.FORMATS.values():
        assert fmt.name.replace("WEBP", "WebP") in section
    assert not imaging.name_extension_allowed("svg") and not imaging.name_extension_allowed("php")


@pytest.mark.asvs("V14.1.1", "V14.1.2", "V14.2.4")
def test_secret_level_data_is_redacted_from_logs() -> None:
    import json
    import logging

    from bastion.observability.logging import JSONFormatter

    section = _section("Data classification")
    assert "JWT payloads" in section
    secrets_row = next(r for r in _rows(section) if r[0] == "secret")
    for word in ("passwords", "TOTP secrets", "recovery codes", "refresh tokens"):
        assert word in secrets_row[1]
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", None, None)
    fields = {"password": "hunter2hunter2", "totp_secret": "JBSWY3DP", "recovery_code": "abcd",
              "refresh_token": "eyJ.x.y", "api_token": "bst_x", "authorization": "Bearer x",
              "cookie": "__Host-session=x", "csrf_token": "csrf-value-123"}
    for key, value in fields.items():
        setattr(record, key, value)
    line = JSONFormatter().format(record)
    assert not [v for v in fields.values() if v in line], line
    assert all(json.loads(line)[k] == "**********" for k in fields)


@pytest.mark.asvs("V16.4.3")
def test_logs_leave_the_app_for_a_separate_store() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    app_logging = compose["services"]["app"]["logging"]
    assert app_logging["driver"] and app_logging["options"]["max-size"]
    deployment = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    logs = re.search(r"^## Logs.*?(?=^## )", deployment, re.S | re.M)
    assert logs and "separate log store" in logs.group(0)
    assert "separate log store" in _section("Logs and time")
    source = (ROOT / "bastion" / "observability" / "logging.py").read_text(encoding="utf-8")
    assert "StreamHandler(sys.stderr)" in source


@pytest.mark.asvs("V15.1.1")
def test_patch_policy_has_deadlines_and_tools() -> None:
    section = _section("Patching")
    for needle in ("72 hours", "7 days", "30 days", "make sbom", "--deps", "make audit"):
        assert needle in section
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "sbom:" in makefile and "\naudit:" in makefile


@pytest.mark.asvs("V8.1.2", "V1.1.2", "V3.7.1", "V3.5.4")
def test_sections_link_their_sources() -> None:
    authz = (ROOT / "docs" / "authorization.md").read_text(encoding="utf-8")
    assert "## Field level" in authz
    assert "authorization.md#field-level" in _section("Field-level access")
    assert "object-src 'none'" in _section("Browser-side code")
    for directive in ("require-trusted-types-for", "trusted-types"):
        assert f"`{directive} {CSP[directive]}`" in _section("Browser-side code"), directive
    assert "sandbox; default-src 'none'" in _section("Origin isolation")
    assert "|tojson" in _section("Output encoding")


@pytest.mark.asvs("V6.4.4")
def test_lost_second_factor_section_names_the_code_and_its_proof() -> None:
    from bastion.admin import services

    section = _section("Lost second factor")
    assert "user.2fa_reset" in section
    assert '"user.2fa_reset"' in inspect.getsource(services.reset_two_factor)
    proof = "tests/admin/test_two_factor_reset.py"
    assert proof in section and (ROOT / proof).exists()
    assert "`REASON_MIN`" in section and "`REASON_MAX`" in section


def test_document_names_every_doc_review_id() -> None:
    named = set(re.findall(r"V\d+\.\d+\.\d+", DOC))
    assert named >= DOC_IDS, sorted(DOC_IDS - named)


def test_readme_links_the_security_documents() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Security.*?(?=^## |\Z)", readme, re.S | re.M)
    assert section
    for doc in ("security.md", "authorization.md", "security-check.md", "deployment.md"):
        assert f"docs/{doc}" in section.group(0)
        assert (ROOT / "docs" / doc).exists()


def _library_settings() -> set[str]:
    """Config keys that belong to Flask or an extension, not to Bastion."""
    from flask_limiter.constants import ConfigVars

    keys = set(Flask(__name__).default_config)
    keys |= {v for k, v in vars(ConfigVars).items() if k.isupper()}
    keys |= {k for k in dir(BaseConfig) if k.startswith(("WTF_", "SQLALCHEMY_", "REMEMBER_COOKIE_"))}
    return keys | {"ENV_NAME"}  # set by BASTION_ENV


def test_every_setting_is_documented_and_every_documented_one_is_read() -> None:
    """A setting of Bastion's own that no document names cannot be found by an operator;
    a documented one the code never reads is configured for nothing."""
    from bastion.config import OTHER_FILE_SETTINGS, DevelopmentConfig

    docs = "\n".join(
        p.read_text(encoding="utf-8")
        for p in [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    )
    own = {k for k in dir(BaseConfig) if k.isupper()} - _library_settings()
    undocumented = sorted(k for k in own if f"BASTION_{k}" not in docs and f"`{k}`" not in docs)
    assert not undocumented, f"settings named in no document: {undocumented}"

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = re.search(r"^## Configuration.*?(?=^## )", readme, re.S | re.M)
    assert table
    rows = re.findall(r"^\| (`BASTION_[^|]+)\|", table.group(0), re.M)
    in_table = {n for row in rows for n in re.findall(r"`BASTION_([A-Z0-9_]+)`", row)}
    assert len(in_table) > 50
    settings = {k for k in dir(DevelopmentConfig) if k.isupper()} | {"ENV"}
    settings |= set(Flask(__name__).default_config)  # SECRET_KEY, SECRET_KEY_FALLBACKS ...
    assert in_table <= settings, f"README rows the config does not read: {sorted(in_table - settings)}"

    # Anything else named BASTION_* in the docs is read somewhere: a setting, a secret file,
    # or a variable of gunicorn.conf.py or the deployment files.
    code = "\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in [ROOT / "gunicorn.conf.py", *(ROOT / "deploy").rglob("*"), *(ROOT / "bench").glob("*.py")]
        if p.is_file()
    )
    known = settings | OTHER_FILE_SETTINGS | {f"{n}_FILE" for n in FILE_SETTINGS}
    named = set(re.findall(r"BASTION_([A-Z0-9_]+)", docs))
    unread = sorted(n for n in named - known if f"BASTION_{n}" not in code)
    assert not unread, f"documented but read nowhere: {unread}"


# Modules that implement or wrap cryptography, and the locked requirement each comes from.
CRYPTO_MODULES = {
    "cryptography": "pyjwt[crypto]", "jwt": "pyjwt[crypto]", "argon2": "argon2-cffi",
    "bcrypt": "bcrypt", "itsdangerous": "flask", "pyotp": "pyotp",
}
FORBIDDEN_CRYPTO = ("random", "Crypto", "Cryptodome", "nacl", "rsa", "ecdsa", "passlib")


def _imported_top_modules() -> set[str]:
    import ast

    found: set[str] = set()
    for path in (ROOT / "bastion").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.asvs("V11.2.1")
def test_cryptography_comes_only_from_the_documented_libraries() -> None:
    """The code imports no cryptographic module beyond the vetted ones the document lists
    (no `random` for secrets, no second crypto library), and each is a locked dependency."""
    imported = _imported_top_modules()
    assert not imported & set(FORBIDDEN_CRYPTO), sorted(imported & set(FORBIDDEN_CRYPTO))
    section = _section("Cryptography and keys")
    requirements = (ROOT / "requirements" / "main.in").read_text(encoding="utf-8")
    for module, requirement in CRYPTO_MODULES.items():
        name = "PyJWT" if module == "jwt" else "argon2-cffi" if module == "argon2" else module
        assert f"`{name}`" in section, module
        assert requirement.split("[")[0] in requirements, requirement
    assert {"secrets", "hashlib", "hmac"} <= imported


# Modules that open connections, by what the communication sections call their destination;
# None: a client the document does not account for, so its use must be documented first.
NETWORK_CLIENTS: dict[str, str | None] = {
    "sqlalchemy": "PostgreSQL", "psycopg": "PostgreSQL", "redis": "Redis", "smtplib": "SMTP",
    "sentry_sdk": "Sentry", "pip_audit": "OSV", "urllib.request": "container health check",
    "socket": "gunicorn",  # the server's own accepted connections (gunicorn_worker.py)
    "requests": None, "httpx": None, "urllib3": None, "aiohttp": None, "http.client": None,
    "ftplib": None, "xmlrpc.client": None, "telnetlib": None, "paramiko": None,
}


def _imported_modules(paths: list[Path]) -> set[str]:
    import ast

    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
    return found


@pytest.mark.asvs("V13.1.1")
def test_every_outbound_connection_is_documented() -> None:
    """Each module the code opens connections with has its destination in the communication
    sections, and users cannot name a destination (no previews, remote images, webhooks)."""
    text = " ".join((_section("Transport security") + _section("Outbound connections")).split())
    paths = [*(ROOT / "bastion").rglob("*.py"), *(ROOT / "flask_deploy_check").rglob("*.py"),
             *(ROOT / "deploy").glob("*.py")]
    imported = _imported_modules(paths)
    used = {client for client in NETWORK_CLIENTS
            if any(m == client or m.startswith(client + ".") for m in imported)}
    assert {"sqlalchemy", "redis", "smtplib", "sentry_sdk", "pip_audit"} <= used, used
    undocumented = {c for c in used if NETWORK_CLIENTS[c] is None}
    assert not undocumented, f"document where these connect first: {sorted(undocumented)}"
    for client in used:
        assert NETWORK_CLIENTS[client] in text, client
    assert "makes no other outbound request: no URL previews, no remote images, no webhooks" in text


@pytest.mark.asvs("V16.1.1")
def test_logging_inventory_names_every_layer_and_every_logged_event() -> None:
    """Every event name the app logs at warning or above appears in the inventory, and each
    layer that writes logs has its row, so a new log line without a row fails here."""
    import ast

    section = _section("Logging inventory")
    for layer in ("nginx", "app request log", "gunicorn", "audit trail", "Sentry", "metrics"):
        assert f"| {layer}" in section, layer
    messages: set[str] = set()
    for path in (ROOT / "bastion").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in {"warning", "error", "critical", "exception"}
                    and isinstance(getattr(node.func.value, "id", None), str)
                    and node.func.value.id in {"log", "logger"}
                    and node.args and isinstance(node.args[0], ast.Constant)):
                messages.add(str(node.args[0].value))
    assert len(messages) > 20, "too few log calls found: the scan is broken"
    # Placeholders (%s, %d) are written as an ellipsis; line breaks in the text are spaces.
    text = " ".join(section.split())
    missing = {m for m in messages
               if not all(part.strip() in text for part in re.split(r"%[sd]", m) if part.strip())}
    assert not missing, sorted(missing)
