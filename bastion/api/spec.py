"""One declaration per operation: it enforces scopes and schemas AND feeds the OpenAPI document.

Why not spectree / flask-smorest: the document must match the implementation exactly and
errors must be problem+json. Declaring each operation once here, and generating both the
checks and the document from that declaration (pydantic emits JSON Schema 2020-12, which is
what OpenAPI 3.1 uses), makes a drift between the two impossible rather than merely tested,
with no second error envelope to override.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Response, abort, request, url_for
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from werkzeug.http import generate_etag

from bastion.api.auth import require_scopes
from bastion.api.pats import TokenRequestError
from bastion.api.schemas import PATTERN_MESSAGES
from bastion.auth.services import AccountError
from bastion.content.services import ContentError
from bastion.errors import problem
from bastion.extensions import db
from bastion.profiles.services import ProfileError

OP_ATTR = "_api_operation"
RULE_ERRORS = (ContentError, AccountError, ProfileError, TokenRequestError)


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    scopes: tuple[str, ...] | None  # None: no token needed
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = field(default=())
    description: str = ""
    raw: bool = False  # the view builds its own Response (the OpenAPI document itself)
    conditional: bool = False  # answers carry an ETag; If-None-Match may get a 304
    # A change to one resource whose GET carries an ETag: the view checks If-Match and
    # If-None-Match (``check_preconditions``) before changing anything, and a 200 answer
    # carries the new ETag, so a client can chain changes without lost updates.
    # Every other change checks them too, after its lookup, against no ETag: only
    # ``If-Match: *`` can match (``check_preconditions()``; the document says so).
    preconditions: bool = False
    # A POST to a collection whose GET carries an ETag: If-Match is compared with that one.
    collection_etag: bool = False
    # (endpoint, argument): where a 201's new resource lives, named by its ``id`` in the
    # Location header (RFC 9110 15.3.2), not left to be guessed from the collection's URL.
    location: tuple[str, str] | None = None

    def error_statuses(self, has_path_params: bool, changes: bool = False) -> list[int]:
        """The error statuses the operation can answer; ``changes``: a method that is not
        safe, so If-Match and If-None-Match can fail (``check_preconditions``)."""
        codes = {429, 503, *self.errors}  # 503: an outage of PostgreSQL or Redis
        if self.scopes is not None:
            codes |= {401, 403}
        if self.body is not None:
            codes |= {400, 413, 415, 422}
        if self.query is not None:
            codes.add(422)
        if has_path_params:
            codes.add(404)
        if self.conditional or self.preconditions or changes:
            codes.add(412)  # If-Match names an ETag that is not the current one
        return sorted(codes)


@dataclass(frozen=True)
class Serialized:
    """A body that ``model``'s own serializer produced earlier (reused public lists).

    The contract check below still applies: only bytes made from the declared response
    model can be sent this way.
    """

    model: type[BaseModel]
    body: bytes
    etag: str | None = None  # the body's strong ETag when it was computed with the body


class InvalidInputError(Exception):
    """Raised by a view (or a service error it translates) to answer 422 with field errors."""

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


# Field errors listed in one answer. Every unknown key is an error of its own, so a 1 MB
# body of them made 80,000 errors: 6.6 MB of problem+json and a second of CPU, anonymously.
FIELD_ERRORS_MAX = 20
UTF8_LABELS = frozenset({"utf-8", "utf8"})  # the charset parameters taken to mean UTF-8
PRECONDITION_FAILED = "The If-Match ETag is not the current one; fetch it again."
# For a resource that carries no ETag: a listed ETag never matches, only "*" (RFC 9110 13.1.1).
NO_ETAG = (
    "This resource has no ETag, so no If-Match ETag can match; send 'If-Match: *' or none."
)
EXISTS = "If-None-Match: * names any current version, and this one exists; nothing was changed."


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    # Never echo the submitted value: it may be a password or a token.
    return [
        {"loc": list(e["loc"]), "msg": _message(e), "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)[:FIELD_ERRORS_MAX]
    ]


def _message(error: ErrorDetails) -> str:
    """pydantic's message, but what a pattern asks for instead of the pattern itself."""
    if error["type"] == "string_pattern_mismatch":
        pattern = str(error.get("ctx", {}).get("pattern", ""))
        return PATTERN_MESSAGES.get(pattern, "Contains characters not allowed here.")
    return error["msg"]


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _RefusalError(400, "The body names a field more than once; send each field once.")
    return dict(pairs)


def _parse_body(model: type[BaseModel]) -> BaseModel:
    if request.mimetype != "application/json":
        raise _RefusalError(415, "Send the body as JSON with 'Content-Type: application/json'.")
    # JSON is UTF-8 (RFC 8259) and is read as such: a body labelled Latin-1 or UTF-16 was
    # acted on as other text than the client meant (and a proxy honouring the label saw),
    # or refused as "not valid JSON" when only its encoding was wrong.
    charset = request.mimetype_params.get("charset", "utf-8").strip().lower()
    if charset not in UTF8_LABELS:
        raise _RefusalError(415, "Send the body as UTF-8: JSON has no other charset here.")
    # Nothing here decodes a content coding: a body said to be gzip was read as it came, so
    # a plain one was acted on though a proxy that decodes it would see another request,
    # and a real one was "not valid JSON". RFC 9110 (15.5.16): 415 naming what is accepted.
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise _RefusalError(
            415,
            "Send the body uncompressed: this API accepts no Content-Encoding but identity.",
            {"Accept-Encoding": "identity"},
        )
    # Whole or refused: a body of unknown length past the limit is a 413 (bastion.request_body).
    data = request.get_data(cache=False)
    try:
        parsed = model.model_validate_json(data)
    except ValidationError as exc:
        # Invalid JSON is the only error pydantic reports for such a body.
        if exc.errors(include_url=False)[0]["type"] == "json_invalid":
            detail = "The body is not valid JSON (or is nested too deeply)."
            raise _RefusalError(400, detail) from exc
        detail = "Some fields are missing or not valid."
        raise InvalidInputError(detail, _field_errors(exc)) from exc
    # pydantic keeps the last of two equal keys; a proxy or a log reader may keep the first
    # and see another request than the one acted on (the query string is held to the same
    # rule). The body is valid JSON here and bounded in size and depth by pydantic's parser.
    try:
        json.loads(data, object_pairs_hook=_refuse_duplicate_keys)
    except (ValueError, RecursionError) as exc:  # what pydantic read, Python's parser may not
        raise _RefusalError(400, "The body is not valid JSON (or is nested too deeply).") from exc
    return parsed


def _parse_query(model: type[BaseModel]) -> BaseModel:
    args = request.args
    if any(len(args.getlist(k)) > 1 for k in args):
        raise InvalidInputError("Give each query parameter once.")
    try:
        return model.model_validate(args.to_dict())
    except ValidationError as exc:
        raise InvalidInputError("Some query parameters are not valid.", _field_errors(exc)) from exc


class _RefusalError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def operation(**spec: Any) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Declare an API operation (see ``Operation``); the view gets ``body``/``query`` kwargs."""
    op = Operation(**spec)

    def decorator(view: Callable[..., Any]) -> Callable[..., Response]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            if op.scopes is not None:
                require_scopes(op.scopes)
            try:
                if op.query is not None:
                    kwargs["query"] = _parse_query(op.query)
                if op.body is not None:
                    kwargs["body"] = _parse_body(op.body)
                result = view(*args, **kwargs)
            except _RefusalError as exc:
                return problem(exc.status, exc.detail, headers=exc.headers)
            except InvalidInputError as exc:
                return problem(422, exc.detail, extra={"errors": exc.errors})
            except RULE_ERRORS as exc:  # a service refused a value: same shape as schema errors
                db.session.rollback()  # nothing half-applied survives the refusal
                loc = [exc.field] if getattr(exc, "field", None) else []
                errors = [{"loc": loc, "msg": str(exc), "type": "value_error"}]
                return problem(422, str(exc), extra={"errors": errors})
            return _respond(op, result)

        setattr(wrapper, OP_ATTR, op)
        return wrapper

    return decorator


def _respond(op: Operation, result: Any) -> Response:
    if op.raw:
        return result  # type: ignore[no-any-return]
    if op.response is None:
        empty = Response(status=op.status)
        del empty.headers["Content-Type"]  # no body, so no type (Werkzeug adds text/html)
        return empty
    etag = None
    if isinstance(result, Serialized) and result.model is op.response:
        body, etag = result.body, result.etag
    elif isinstance(result, op.response):
        body = result.model_dump_json().encode()
    else:
        # The declared model is the contract: anything else is a bug, caught here.
        raise TypeError(f"{op.summary}: view returned {type(result).__name__}")
    response = Response(body, status=op.status, mimetype="application/json")
    if op.location is not None:
        endpoint, argument = op.location
        response.headers["Location"] = url_for(endpoint, **{argument: result.id})
    if op.preconditions:
        response.set_etag(generate_etag(body))  # the new version, for the next If-Match
    if op.conditional:
        if etag is None:
            response.add_etag()
        else:
            response.set_etag(etag)
        return _conditional(response)
    return response


def representation_etag(model: BaseModel) -> str:
    """The strong ETag a GET answers for ``model``: ``_respond`` hashes the same bytes."""
    return generate_etag(model.model_dump_json().encode())


def has_preconditions() -> bool:
    return "If-Match" in request.headers or "If-None-Match" in request.headers


def failed_precondition(current: str | None) -> str | None:
    """RFC 9110 13.2.2 for a change, against the resource's ``current`` ETag (None: it exists
    but has none): If-Match by strong comparison, then If-None-Match. The 412 detail when
    one fails, else None.

    A header that is present but names no ETag (garbage) fails too: a client that asked
    for a condition never gets the change made unconditionally. Without an ETag, a listed
    entity-tag can match nothing and only ``*`` (any current version) is true (13.1.1).
    """
    if "If-Match" in request.headers:
        if current is None and not request.if_match.star_tag:
            return NO_ETAG
        if current is not None and not request.if_match.contains(current):
            return PRECONDITION_FAILED
    if "If-None-Match" in request.headers:
        if current is None and request.if_none_match.star_tag:
            return EXISTS
        if current is not None and request.if_none_match.contains_weak(current):
            return "If-None-Match names the current ETag; nothing was changed."
    return None


def check_preconditions(current: str | None = None) -> None:
    """412 problem+json (rolling back, so a lock goes) when the request's If-Match or
    If-None-Match fails against ``current`` (``failed_precondition``).

    Called by each change after its lookup and its authorization, just before it acts: a
    missing resource stays a 404 and a refusal keeps its status whatever the conditions
    (RFC 9110 13.2.1), and an If-Match or If-None-Match the client sent is never silently
    ignored. ``If-Unmodified-Since`` is: API resources have no ``Last-Modified``, and RFC
    9110 13.1.4 has a server without a modification date ignore it; clients use If-Match.
    """
    detail = failed_precondition(current)
    if detail is not None:
        db.session.rollback()
        abort(problem(412, detail))


def _conditional(response: Response) -> Response:
    """RFC 9110 13.2.2 for a GET or HEAD answer with an ETag: If-Match, then If-None-Match.

    Not Werkzeug's ``make_conditional``: it answers ``If-Match: *`` (true whenever the
    resource exists) with 412, and a matching If-Match together with a matching
    If-None-Match with 200 instead of 304. An error is problem+json and carries no data.
    """
    environ = request.environ
    if "HTTP_IF_MATCH" not in environ and "HTTP_IF_NONE_MATCH" not in environ:
        # Neither header (where ``request.headers`` finds them): an empty If-None-Match
        # matches nothing, so the answer stands; no need to parse one or read the ETag.
        return response
    current, _weak = response.get_etag()
    if "If-Match" in request.headers and not request.if_match.contains(current or ""):
        return problem(412, PRECONDITION_FAILED)
    if request.if_none_match.contains_weak(current or ""):
        response.status_code = 304  # Werkzeug sends a 304 without the body or its headers
    return response


def operation_of(view: Callable[..., Any]) -> Operation | None:
    return getattr(view, OP_ATTR, None)
