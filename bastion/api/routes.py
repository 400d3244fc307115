"""Wires the API resources onto ``bp``: CSRF exemption (bearer only) and the rate limit."""

from __future__ import annotations

from flask import current_app, request

from bastion.api import (  # noqa: F401 - importing registers the views
    articles,
    auth_tokens,
    bp,
    commands,
    comments,
    openapi,
    pat_routes,
    users,
)
from bastion.api.schemas import ListQuery
from bastion.extensions import csrf, limiter

WEIGHED_LISTS = frozenset({"api.list_articles"})
PAGE_UNIT = int(ListQuery.model_fields["per_page"].default)  # 20 articles: one call


def page_cost() -> int:
    """How many calls a request counts as against ``API_RATE_LIMIT``: a page of the article
    list counts once per ``PAGE_UNIT`` articles it asks for (``per_page=100``: five).

    Why: each article carries its Markdown and its HTML (up to 100,000 characters of
    source), so a page of 100 can be tens of megabytes to read, turn into JSON and send, far
    more than the public page cache will hold. Counted by size, the limit bounds the work a
    client can ask for, not only its calls. ``per_page`` is read as the query model reads it
    (digits only); anything else is refused with a 422 and counts once.
    """
    req = request._get_current_object()  # type: ignore[attr-defined]  # asked on every call
    if req.endpoint not in WEIGHED_LISTS:
        return 1
    raw = req.args.get("per_page", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:  # as ``_query_int`` reads it
        return 1
    return max(1, -(-min(int(raw), 100) // PAGE_UNIT))


# Safe because no API view ever reads the session cookie (see bastion.api.auth).
csrf.exempt(bp)
limiter.limit(lambda: str(current_app.config["API_RATE_LIMIT"]), cost=page_cost)(bp)
