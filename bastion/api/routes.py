"""Wires the API resources onto ``bp``: CSRF exemption (bearer only) and the rate limit."""

from __future__ import annotations

from flask import current_app

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
from bastion.extensions import csrf, limiter

# Safe because no API view ever reads the session cookie (see bastion.api.auth).
csrf.exempt(bp)
limiter.limit(lambda: str(current_app.config["API_RATE_LIMIT"]))(bp)
