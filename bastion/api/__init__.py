"""The JSON API (``/api/v1``): bearer tokens only, so it is exempt from CSRF by design."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from bastion.security.fixed_headers import add_vary

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)

# Request headers a browser must be allowed to send (none of them is CORS-safelisted), and
# the answer's headers its script may read: those the API sends and documents, by the
# names it sends them under (bastion.security.ratelimit_headers writes X-RateLimit-*).
CORS_ALLOW_HEADERS = "Authorization, Content-Type, If-Match, If-None-Match"
CORS_EXPOSE_HEADERS = (
    "ETag, Location, Retry-After, X-Request-ID, "
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
)


@bp.before_request
def _prepare() -> None:
    """Small bodies, and no identity from cookies."""
    from bastion.api.auth import forget_cookie_identity

    request.max_content_length = current_app.config["API_MAX_BODY_BYTES"]
    forget_cookie_identity()


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_exc: RequestEntityTooLarge) -> Response:
    """413 naming the limit: the site's generic words left a client to find it by trial."""
    from bastion.errors import problem

    limit = current_app.config["API_MAX_BODY_BYTES"]
    return problem(413, f"The body is over the {limit} bytes this API accepts; send less.")


# Ids are 32-bit in the schema everywhere (SQLite and PostgreSQL alike); larger ones cannot
# exist, and passing them to the database would be an overflow error, not a clean 404.
MAX_ID = 2**31 - 1


@bp.url_value_preprocessor
def _bounded_ids(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    if values and any(isinstance(v, int) and v > MAX_ID for v in values.values()):
        abort(404, description="There is nothing with that id.")


@bp.after_request
def _cors(response: Response) -> Response:
    """CORS only for origins in BASTION_CORS_ORIGINS (none by default); never credentials.

    Hand-written because it is a dozen lines and must stay exactly this narrow: an allowlist,
    no wildcard, no cookies.
    """
    origin = request.headers.get("Origin", "").rstrip("/")
    add_vary(response.headers, "Origin")  # response.vary.add, without re-parsing
    if origin and origin in current_app.config["CORS_ORIGINS"]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE"
            response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
    return response


def cors_when_unrouted(response: Response) -> Response:
    """The same CORS answer for an address under the API that no rule matched (404, 405).

    Routing failed, so no rule names this blueprint and Flask runs only the app's hooks:
    ``_cors`` never saw these answers, and an allowed origin's script got a network error
    instead of the problem+json. Called by the error handler, so routed requests pay nothing.
    """
    path = request.path
    if request.url_rule is None and (path == PREFIX or path.startswith(f"{PREFIX}/")):
        return _cors(response)
    return response
