"""Home page, security.txt and the CSP report collector."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import cache

import orjson
from flask import Response, abort, current_app, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, select
from sqlalchemy.orm import load_only

from bastion.content.services import BYLINE
from bastion.extensions import csrf, db, limiter
from bastion.main import bp
from bastion.models import Article
from bastion.observability.redaction import redact_url
from bastion.pagecache import cached_public_page
from bastion.security.access import public
from bastion.security.throttle_audit import first_this_minute

log = logging.getLogger("bastion.csp")
CSP_REPORT_TYPES = ("application/csp-report", "application/reports+json", "application/json")
CSP_FIELDS = ("blocked-uri", "violated-directive", "effective-directive", "document-uri",
              "source-file", "line-number", "disposition",
              # The Reporting API's names for the same facts.
              "blockedURL", "effectiveDirective", "documentURL", "sourceFile", "lineNumber")
# Kept as scheme, host and path only, with emailed links' secrets removed: a report about a
# reset page would otherwise store the live reset link.
CSP_URL_FIELDS = frozenset({"blocked-uri", "document-uri", "source-file", "blockedURL",
                            "documentURL", "sourceFile"})


@cache
def _latest_published() -> Select[Article]:
    """The ten newest published articles, only what the list shows (the Markdown source and
    rendered body stay in the database), and of each author only the byline. Built once:
    constructing a select with its loader options costs about as much CPU as running it, on
    every signed-in home page view."""
    return (
        select(Article)
        .options(load_only(Article.id, Article.title, Article.summary, Article.published_at,
                           Article.author_id, Article.status), BYLINE)
        .where(Article.status == "published")
        .order_by(Article.published_at.desc(), Article.id.desc())
        .limit(10)
    )


@bp.get("/")
@public
@cached_public_page
def index() -> ResponseReturnValue:
    articles = db.session.scalars(_latest_published()).all()
    return render_template("main/index.html", articles=articles)


@bp.get("/.well-known/security.txt")
@public
def security_txt() -> ResponseReturnValue:
    """RFC 9116 contact file; Expires is always a year ahead of the running release.

    Every URL in it must answer: a researcher who follows a dead ``Policy`` link finds no
    disclosure terms (the site has no policy page, so the file names none).
    """
    expires = (datetime.now(UTC) + timedelta(days=365)).replace(microsecond=0)
    body = (
        f"Contact: {current_app.config['SECURITY_CONTACT']}\n"
        f"Expires: {expires.isoformat().replace('+00:00', 'Z')}\n"
        "Preferred-Languages: en\n"
        # On BASTION_PUBLIC_URL when set: never an internal name the request carried.
        f"Canonical: {url_for('main.security_txt', _external=True, _scheme='https')}\n"
    )
    return Response(body, mimetype="text/plain")


@bp.post("/csp-report")
@public
@csrf.exempt  # browsers send reports without our token; nothing here changes user state
@limiter.limit("60 per minute")
def csp_report() -> ResponseReturnValue:
    """Collect CSP violation reports (report-uri and Reporting API formats)."""
    request.max_content_length = 16 * 1024
    if request.mimetype not in CSP_REPORT_TYPES:
        abort(415)
    try:
        payload = orjson.loads(request.get_data(cache=False))
    except orjson.JSONDecodeError:
        abort(400, description="The report is not valid JSON.")
    reports = payload if isinstance(payload, list) else [payload]
    from bastion.observability import counters
    from bastion.security import audit

    handled, sample = 0, None
    for item in reports[:20]:
        if not isinstance(item, dict):
            continue
        body = item.get("csp-report") or item.get("body") or {}
        if not isinstance(body, dict):
            continue
        facts = {k: _csp_fact(k, body[k]) for k in CSP_FIELDS if body.get(k)}
        log.warning("csp violation", extra={"report": facts})
        counters.increment("csp_reports")
        handled += 1
        sample = sample or facts
    # The audit trail is append-only and this endpoint anonymous: every report is logged
    # and counted, but at most one row per client address per minute is stored (with how
    # many reports that request carried), as for rate-limit breaches. A client is what the
    # rate limits count (an IPv6 /64), or one host could write a row from each address.
    if sample is not None and first_this_minute("bastion-csp-audit", request.remote_addr or ""):
        audit.record("csp.report", details={**sample, "reports": handled})
    return Response(status=204)


def _csp_fact(name: str, value: object) -> str:
    text = str(value)[:300]
    return redact_url(text) if name in CSP_URL_FIELDS else text


