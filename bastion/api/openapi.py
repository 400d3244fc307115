"""The OpenAPI 3.1 document, built from the route table and each view's ``operation``.

Paths, methods, parameters, scopes, bodies and responses all come from what the app really
serves, so the document cannot describe a route that does not exist or miss one that does.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, Response, current_app
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bastion.api import MAX_ID, bp, schemas
from bastion.api.spec import Operation, operation, operation_of
from bastion.security.access import public

REF = "#/components/schemas/{model}"
PROBLEM = "application/problem+json"
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    304: "Not modified: the If-None-Match ETag is still current",
    204: "No content",
    400: "Malformed request (e.g. invalid JSON)",
    401: "Missing, invalid, expired or revoked credentials",
    403: "Authenticated but not allowed (role, scope or re-authentication)",
    404: "No such object, or not visible to you",
    412: "If-Match names no current ETag, or If-None-Match names a current one",
    413: "Body too large",
    415: "Body is not JSON in UTF-8, or is sent with a Content-Encoding other than identity",
    422: "Unknown, read-only or invalid fields",
    429: "Too many requests; see Retry-After",
    503: (
        "The database or Redis cannot be reached (sign-in and refresh also refuse while the "
        "shared rate-limit store is down); see Retry-After"
    ),
}


# On a 429 of a counted limit (bastion.security.ratelimit_headers); a sign-in delay sends
# only Retry-After.
_RATE_LIMIT_HEADERS = {
    f"X-RateLimit-{name}": {"description": text, "schema": {"type": "integer", "minimum": 0}}
    for name, text in (
        ("Limit", "Requests allowed in the window"),
        ("Remaining", "Requests left in the window"),
        ("Reset", "When the window resets (Unix time, seconds)"),
    )
}


def _api_rules(app: Flask) -> list[Any]:
    return sorted(
        (r for r in app.url_map.iter_rules() if r.endpoint.startswith(f"{bp.name}.")),
        key=lambda r: r.rule,
    )


def _models(app: Flask) -> list[tuple[type[BaseModel], Any]]:
    """Bodies as the server validates them; responses as it serializes them."""
    found: dict[type[BaseModel], str] = {schemas.Problem: "serialization"}
    for rule in _api_rules(app):
        op = operation_of(app.view_functions[rule.endpoint])
        if op is not None:
            if op.body is not None:
                found[op.body] = "validation"
            if op.response is not None:
                found[op.response] = "serialization"
    return sorted(found.items(), key=lambda item: item[0].__name__)


def _parameters(rule: Any, op: Operation, changes: bool) -> list[dict[str, Any]]:
    params = []
    for converter, name in _CONVERTER.findall(rule.rule):
        schema: dict[str, Any] = (
            {"type": "integer", "minimum": 1, "maximum": MAX_ID}
            if converter == "int"
            else {"type": "string"}
        )
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if op.query is not None:
        props = op.query.model_json_schema()["properties"]
        for name, schema in props.items():
            description = schema.pop("description", None)
            param = {"name": name, "in": "query", "required": False, "schema": schema}
            if description:
                param["description"] = description
            params.append(param)
    if op.conditional or op.preconditions or changes:
        params.extend(_CONDITION_HEADERS)
    return params


# RFC 9110 conditions, as spec._conditional and spec.failed_precondition read them: every
# change reads them (``spec.check_preconditions``), and so do the reads that carry an ETag.
_CONDITION_HEADERS = (
    {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "An ETag from an earlier answer (or *): act only if it is still current, "
        "else 412. Where the resource carries no ETag, only * (it exists) can match",
    },
    {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "ETags already held: a read answers 304 when one is current, a change "
        "412",
    },
)


def _responses(op: Operation, has_params: bool, changes: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": STATUS_TEXT.get(op.status, "Success")}
    if op.raw:
        ok["content"] = {"application/json": {"schema": {"type": "object"}}}
    elif op.response is not None:
        ok["content"] = {
            "application/json": {"schema": {"$ref": REF.format(model=op.response.__name__)}}
        }
    responses = {str(op.status): ok}
    headers: dict[str, Any] = {}
    if (op.conditional or op.preconditions) and op.response is not None:
        headers["ETag"] = {
            "description": "This version, for If-None-Match or If-Match",
            "schema": {"type": "string"},
        }
    if op.location is not None:
        headers["Location"] = {
            "description": "The URL of what was created",
            "schema": {"type": "string", "format": "uri-reference"},
        }
    if headers:
        ok["headers"] = headers
    if op.conditional:
        responses["304"] = {"description": STATUS_TEXT[304]}
    for status in op.error_statuses(has_params, changes):
        responses[str(status)] = {
            "description": STATUS_TEXT[status],
            "content": {PROBLEM: {"schema": {"$ref": REF.format(model="Problem")}}},
        }
        if status in (429, 503):
            responses[str(status)]["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again",
                    "schema": {"type": "integer", "minimum": 0},
                },
                **(_RATE_LIMIT_HEADERS if status == 429 else {}),
            }
    return responses


# Said of every change to a resource that carries no ETag (``spec.check_preconditions()``).
NO_ETAG_NOTE = (
    "Carries no ETag: If-Match naming any ETag fails with 412; If-Match: * acts, as the "
    "resource exists; If-None-Match: * fails with 412."
)


def _description(op: Operation, changes: bool) -> str:
    untagged = changes and not (op.preconditions or op.collection_etag)
    return " ".join(text for text in (op.description, NO_ETAG_NOTE if untagged else "") if text)


def _operation(rule: Any, method: str, op: Operation) -> dict[str, Any]:
    changes = method not in ("GET", "HEAD")
    params = _parameters(rule, op, changes)
    description = _description(op, changes)
    doc: dict[str, Any] = {
        "operationId": rule.endpoint.split(".", 1)[1],
        "summary": op.summary,
        **({"description": description} if description else {}),
        "tags": [op.tag],
        "responses": _responses(op, any(p["in"] == "path" for p in params), changes),
    }
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=op.body.__name__)}}
            },
        }
    doc["security"] = [{"bearer": list(op.scopes)}] if op.scopes is not None else []
    return doc


def _configured_limits(models: dict[str, Any], app: Flask) -> None:
    """Write this deployment's settings into the schemas whose limits are settings.

    A model is defined before any app exists, so it can only name the setting; the document
    is built per app and states the configured values, which are the enforced ones.
    """
    days = models.get("PatCreate", {}).get("properties", {}).get("expires_in_days")
    if days is None:
        return
    longest, default = app.config["PAT_MAX_DAYS"], app.config["PAT_DEFAULT_DAYS"]
    for option in days.get("anyOf", [days]):
        if option.get("type") == "integer":
            option["maximum"] = longest
    days["description"] = (
        f"Days until the token expires, 1 to {longest}; omitted or null: {default} days."
    )


def build_document(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in _api_rules(app):
        op = operation_of(app.view_functions[rule.endpoint])
        if op is None:
            continue
        path = _CONVERTER.sub(r"{\2}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, method, op)
    _, defs = models_json_schema(_models(app), ref_template=REF)
    _configured_limits(defs.get("$defs", {}), app)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bastion API",
            "version": "1.0.0",
            "description": (
                "Bearer tokens only: a JWT access token from POST /api/v1/auth/token (15 minutes; "
                "rotate with /auth/refresh) or a personal access token (bst_...) with scopes. "
                "Errors are RFC 9457 problem+json. Cookies are never accepted."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "JWT access token or personal access token (bst_...).",
                }
            },
        },
    }


def document() -> dict[str, Any]:
    """Built once per app: the route table does not change after start-up."""
    doc = current_app.extensions.get("bastion.openapi")
    if doc is None:
        doc = current_app.extensions["bastion.openapi"] = build_document(current_app)
    return doc  # type: ignore[no-any-return]


@bp.get("/openapi.json")
@public
@operation(summary="This document (OpenAPI 3.1)", tag="meta", scopes=None, raw=True)
def get_openapi() -> Response:
    import orjson

    return Response(orjson.dumps(document()), mimetype="application/json")


def _type_of(schema: dict[str, Any]) -> str:
    """A short human description of a JSON Schema: 'string ≤ 200', 'ArticleOut[]'..."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type_of(s) for s in schema["anyOf"])
    if "enum" in schema or "const" in schema:
        return " | ".join(f'"{v}"' for v in schema.get("enum", [schema.get("const")]))
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return _type_of(schema.get("items", {})) + "[]"
    limits = [
        f"{label} {schema[key]}"
        for key, label in (
            ("minLength", "≥"),
            ("maxLength", "≤"),
            ("minimum", "≥"),
            ("maximum", "≤"),
        )
        if key in schema
    ]
    if schema.get("format"):
        kind += f" ({schema['format']})"
    return kind + (f" {', '.join(limits)}" if limits else "")


def _fields(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    schema = doc["components"]["schemas"].get(name, {})
    required = set(schema.get("required", []))
    return [
        {
            "name": field,
            "type": _type_of(spec),
            "required": field in required,
            "description": spec.get("description", ""),
        }
        for field, spec in schema.get("properties", {}).items()
    ]


def docs_view(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The document arranged for the HTML page: operations grouped by tag, models expanded."""
    sections: dict[str, list[dict[str, Any]]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            body_ref = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            body = _type_of(body_ref["schema"]) if body_ref else None
            ok = [(code, r) for code, r in op["responses"].items() if code.startswith("2")]
            code, success = ok[0]
            out = success.get("content", {}).get("application/json", {}).get("schema")
            sections.setdefault(op["tags"][0], []).append(
                {
                    "id": op["operationId"],
                    "method": method.upper(),
                    "path": path,
                    "summary": op["summary"],
                    "description": op.get("description", ""),
                    "scopes": op["security"][0]["bearer"] if op["security"] else None,
                    "params": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "type": _type_of(p["schema"]),
                            "description": p.get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": body,
                    "body_fields": _fields(doc, body) if body else [],
                    "status": code,
                    "response": _type_of(out) if out else None,
                    "headers": list(success.get("headers", {})),
                    "errors": [c for c in op["responses"] if c[0] in "45"],
                }
            )
    models = sorted({str(s).rsplit("/", 1)[-1] for s in doc["components"]["schemas"]})
    result = [{"tag": tag, "operations": ops} for tag, ops in sections.items()]
    result.append(
        {"tag": "models", "models": [{"name": m, "fields": _fields(doc, m)} for m in models]}
    )
    return result
