"""The OpenAPI 3.1 document matches the routes exactly; schemathesis finds no 5xx or drift."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from tests.api.conftest import Api
from tests.factories import PASSWORD, ArticleFactory, CommentFactory, UserFactory


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.asvs("V4.1.1")
def test_document_lists_exactly_the_routes_the_app_serves(app: Flask, client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert documented == served
    spec_paths = {
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/auth/revoke",
        "/api/v1/me",
        "/api/v1/articles",
        "/api/v1/articles/{article_id}",
        "/api/v1/articles/{article_id}/comments",
        "/api/v1/comments/{comment_id}",
        "/api/v1/tokens",
        "/api/v1/tokens/{token_id}",
        "/api/v1/openapi.json",
    }
    assert set(doc["paths"]) == spec_paths


def test_every_schema_is_valid_json_schema_2020_12(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        for node in _walk(schema):
            # Pydantic quirks would otherwise leak keywords that JSON Schema ignores.
            assert not {"ge", "le", "gt", "lt"} & set(node), name


@pytest.mark.asvs("V8.1.1")
def test_every_protected_operation_declares_bearer_scopes(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    public = {
        ("/api/v1/auth/token", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/revoke", "post"),
        ("/api/v1/openapi.json", "get"),
    }
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if (path, method) in public:
                assert op["security"] == []
            else:
                assert len(op["security"]) == 1, (path, method)
                assert "bearer" in op["security"][0], (path, method)
                assert "401" in op["responses"]
                assert "403" in op["responses"]


def test_every_operation_documents_throttling_and_outages(client: FlaskClient) -> None:
    """Any call can be throttled, and any call needs PostgreSQL or Redis (tests/ops show
    the 503s): a client generated from the document must expect both, and when to retry."""
    doc = client.get("/api/v1/openapi.json").get_json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status in ("429", "503"):
                answer = op["responses"][status]
                assert "Retry-After" in answer.get("headers", {}), (path, method, status)


def test_write_models_refuse_unknown_fields(client: FlaskClient) -> None:
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    for name in (
        "TokenRequest",
        "MeUpdate",
        "ArticleCreate",
        "ArticleUpdate",
        "CommentCreate",
        "PatCreate",
    ):
        assert schemas[name]["additionalProperties"] is False, name


def test_docs_page_is_server_rendered_under_the_csp(client: FlaskClient) -> None:
    resp = client.get("/api/docs")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "/api/v1/articles/{article_id}" in html
    assert "articles:write" in html
    assert "<script" not in html
    assert "style=" not in html
    assert "cdn" not in html.lower()
    csp = resp.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp
    assert "script-src 'self'" in csp


@pytest.mark.slow
@pytest.mark.asvs("V4.1.1", "V2.2.1", "V16.5.3")
def test_schemathesis_finds_no_server_errors_or_drift(
    live_server: Callable[..., Any], tmp_path: Path
) -> None:
    binary = Path(sys.executable).with_name("schemathesis")
    if not binary.exists() and not shutil.which("schemathesis"):
        pytest.skip("schemathesis is not installed")
    live = live_server(
        backend="postgresql",
        API_RATE_LIMIT="100000 per minute",
        API_TOKEN_RATE_LIMIT="100000 per minute",
        ARTICLE_WRITE_RATE_LIMIT="100000 per minute",
        COMMENT_WRITE_RATE_LIMIT="100000 per minute",
    )
    with live.app.app_context():
        from bastion.extensions import db

        editor = UserFactory(role_name="editor")
        article = ArticleFactory(author=editor)
        CommentFactory(article=article, author=editor)
        access = Api(live.app.test_client()).tokens_for(editor)["access_token"]
        db.session.remove()
    cmd = [
        str(binary),
        "--config-file",
        str(Path(__file__).with_name("data") / "schemathesis.toml"),
        "run",
        f"{live.url}/api/v1/openapi.json",
        "--url",
        live.url,
        "-H",
        f"Authorization: Bearer {access}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "25",
        "--max-time",
        "45",
        "--workers",
        "1",
        "--generation-database",
        "none",
        # A fixed seed: the same cases on every run, so CI cannot pass or fail by chance.
        "--seed",
        "9116",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "ndjson",
        "--report-dir",
        str(tmp_path),
    ]
    # Run from the temporary directory so schemathesis keeps its cache out of the checkout.
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path
    )
    out = result.stdout
    summary = (
        out[out.find("FAILURES") :] if "FAILURES" in out else out[-4000:] + result.stderr[-2000:]
    )
    assert result.returncode == 0, summary[:3000] + "\n...\n" + summary[-1500:]
    assert PASSWORD not in json.dumps(result.stdout)  # secrets never appear in answers


def test_the_second_factor_prompt_uses_only_documented_problem_members(
    client: FlaskClient, api: Api
) -> None:
    """A client generated from the document must learn that ``otp`` is wanted: the token
    endpoint's 2FA prompt carries ``otp_required``, so the Problem schema must name it."""
    doc = client.get("/api/v1/openapi.json").get_json()
    documented = set(doc["components"]["schemas"]["Problem"]["properties"])
    admin = UserFactory(role_name="admin")  # enrolled in 2FA by the factory
    resp = api.call("POST", "/auth/token", json={"username": admin.username, "password": PASSWORD})
    assert resp.status_code == 401
    body = resp.get_json()
    assert body["otp_required"] is True
    assert set(body) <= documented, set(body) - documented
