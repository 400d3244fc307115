"""Whether a GET that writes was asked for by the user: the downloads that are audited.

The audit export (``/admin/audit.csv``) and the account export (``/account/export``) are
GETs that write an audit event and spend a rate limit, so that they work as download links.
An ``<img>``, a script's ``fetch`` or a frame on a page the user opens must not run them.

Nor may a password lead straight into one (``download``, ``landing_page``): the answer to a
sign-in or re-authentication form is a same-origin navigation, so a hand-made link such as
``/auth/reauth?next=/account/export``, sent by anyone, would have the file saved the moment
the password is typed. The user lands on the page that offers it and starts it there.

The session check that ``history-guard.js`` fetches answers this origin only
(``is_from_another_site``): from another site, its answer would say whether the visitor
is signed in here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from flask import Response, abort, current_app, request
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from bastion.security.redirects import is_safe_next

log = logging.getLogger("bastion.security")

F = TypeVar("F", bound=Callable[..., Any])
DOWNLOAD_ATTR = "_bastion_download"
# The router's own redirects followed to find a target's view ("/account//export" merges
# its slashes into "/account/export"); a real path needs one at most.
MAX_ROUTE_REDIRECTS = 2


@dataclass(frozen=True)
class Download:
    """A view that answers with a file: what it does, to complete "Confirm your password
    to ...", and the page that offers it, given the download's query string."""

    purpose: str
    page: Callable[[str], str]


def download(purpose: str, page: Callable[[str], str]) -> Callable[[F], F]:
    """Mark a download view; decorate *after* the access-policy decorator."""

    def decorate(view: F) -> F:
        setattr(view, DOWNLOAD_ATTR, Download(purpose, page))
        return view

    return decorate


def download_named(target: str | None) -> Download | None:
    """The download a safe local path leads to, matched as the router matches a GET for it
    (percent-decoded, its own redirects followed); None for any other page."""
    adapter = current_app.create_url_adapter(request)
    if adapter is None or not target or not is_safe_next(target):
        return None
    path = unquote(urlsplit(target).path)
    for _ in range(MAX_ROUTE_REDIRECTS + 1):
        try:
            endpoint, _ = adapter.match(path, method="GET")
        except RequestRedirect as moved:
            path = unquote(urlsplit(moved.new_url).path)
            continue
        except HTTPException:  # no such page, or not one a GET reaches
            return None
        found = getattr(current_app.view_functions.get(endpoint), DOWNLOAD_ATTR, None)
        return found if isinstance(found, Download) else None
    return None


def landing_page(target: str) -> str:
    """Where a password typed on the way to ``target`` (a safe local path) leads: the page
    that offers the download ``target`` names, or ``target`` itself."""
    found = download_named(target)
    if found is None:
        return target
    page = found.page(urlsplit(target).query)
    return page if is_safe_next(page) else found.page("")


def is_requested_download() -> bool:
    """Whether this GET is a top-level navigation or download, not a fetch a page made.

    Browsers say which in the Fetch Metadata headers: a link click, a typed address or a
    bookmark is ``Sec-Fetch-Mode: navigate`` from this origin (``same-origin``) or from
    none (``none``); Chromium marks an ``<a download>`` with ``Sec-Fetch-Dest: empty``, the
    others ``document``. A request without the headers is allowed: scripts and curl send
    none, and a page cannot make a current browser leave them out (for browsers older than
    the headers, Markdown images may point only at uploads: ``bastion.content.rendering``).
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    dest = request.headers.get("Sec-Fetch-Dest")
    if dest is None:
        return True
    return request.headers.get("Sec-Fetch-Mode") == "navigate" and dest in ("document", "empty")


# What Sec-Fetch-Site says of a request this origin's own pages made, or that the person
# made (a typed address, a bookmark); a request without the header is answered too (scripts,
# curl and older browsers send none, and a current browser cannot be made to leave it out).
OWN_ORIGIN_SITES = frozenset({"same-origin", "none"})


def is_from_another_site() -> bool:
    """Whether the browser says another site (or a sibling host, ``same-site``) made this
    request: a page there, a frame, an image or a link to here."""
    site = request.headers.get("Sec-Fetch-Site")
    return site is not None and site not in OWN_ORIGIN_SITES


def refuse_unless_requested(event: str, description: str, **audit_fields: Any) -> None:
    """403 for a download the user did not ask for (an image in a page, a script's fetch).

    Logged every time; audited as ``event`` at most once a minute per account: a page
    holding a hundred such images would otherwise write a hundred undeletable rows each
    time the user opened it (the route's limit counts only exports that ran).
    """
    if is_requested_download():
        return
    from bastion.security import audit
    from bastion.security.throttle_audit import first_this_minute

    details = {
        name.lower(): request.headers.get(f"Sec-Fetch-{name}", "")[:32]
        for name in ("Site", "Mode", "Dest")
    }
    log.warning("unrequested download refused", extra={"event": event, **details})
    if first_this_minute(f"bastion-{event}", f"user-{current_user.id}"):
        audit.record(event, details=details, **audit_fields)
    abort(403, description=description)


def export_ran(response: Response) -> bool:
    """The exports' rate limits count only a GET that sent the file: not a refused fetch
    (which would let any page spend the user's allowance) and not a HEAD (nothing sent)."""
    return response.status_code == 200 and request.method == "GET"
