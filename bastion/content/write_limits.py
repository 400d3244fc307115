"""Per-account rate limits for content writes, shared by the pages and the API.

Why: saving an article renders its Markdown, up to about 2.5 s of CPU for a hostile
100,000-character body, and the per-client limits let one account spread its saves over
many addresses (or just use 300 a minute from one). These budgets count the account.

Why not ``@limiter.limit(key_func=...)``: Flask-Limiter checks all of a decorated view's
limits, the per-client ones included, at the decorator. An API view learns its account
only inside ``operation`` (bearer authentication), so a decorator there would also move the
per-client API limit behind authentication, and refused tokens would stop counting. Here
the per-client limits stay where they are, and the account's budget is spent after sign-in
and before the work it pays for, in the same store and with the same 429 as any limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, wraps
from typing import Any, TypeVar

from flask import Response, abort, current_app, request
from flask_limiter import RequestLimit
from limits import RateLimitItem, parse_many
from werkzeug.exceptions import TooManyRequests

from bastion.errors import handle_http_exception
from bastion.extensions import limiter
from bastion.security.ratelimit_headers import write_headers
from bastion.security.ratelimit_keys import signed_in_user
from bastion.security.throttle_audit import record_breach

log = logging.getLogger("bastion.ratelimit")
F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Budget:
    """A per-account limit: the setting holding its rate, and the scope its counts share."""

    setting: str
    scope: str


# Article create and edit, on the pages and in the API: every one renders Markdown.
ARTICLE_WRITES = Budget("ARTICLE_WRITE_RATE_LIMIT", "article-writes")
# Comment add and edit, on the pages and in the API.
COMMENT_WRITES = Budget("COMMENT_WRITE_RATE_LIMIT", "comment-writes")


def limited_by(budget: Budget) -> Callable[[F], F]:
    """Spend one of ``budget`` on every write request to the view (never on a GET).

    Place it below the decorators that authenticate (in the API, below ``operation``), so
    the count goes to the account rather than to the client address.
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if request.method not in SAFE_METHODS:
                spend(budget)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def spend(budget: Budget) -> None:
    """Count one write against the signed-in account; abort with the app's 429 when spent."""
    if not limiter.enabled:
        return
    args = [str(current_app.config["RATELIMIT_KEY_PREFIX"]), signed_in_user(), budget.scope]
    strategy = limiter.limiter  # Flask-Limiter's per-process fallback while the store is down
    for item in _items(str(current_app.config[budget.setting])):
        try:
            allowed = strategy.hit(item, *args)
        except Exception:  # the store failed: let the write through, as Flask-Limiter does
            log.warning("rate-limit store failed; %s not counted", budget.scope, exc_info=True)
            return
        if not allowed:
            abort(_refusal(item, args))


@cache
def _items(value: str) -> tuple[RateLimitItem, ...]:
    """The setting's limits, shortest window first (as Flask-Limiter checks them)."""
    return tuple(sorted(parse_many(value)))


def _refusal(item: RateLimitItem, args: list[str]) -> Response:
    """The answer any breached limit gets: counted, sampled into the audit log, the usual
    429 page or problem+json, ``Retry-After`` and the ``X-RateLimit-*`` headers."""
    breach = RequestLimit(limiter, item, args, True, True)
    record_breach(breach)
    response = handle_http_exception(TooManyRequests(description=str(item)))
    write_headers(response, breach)
    return response
