"""Whether a GET that writes was asked for by the user: the downloads that are audited.

The audit export (``/admin/audit.csv``) and the account export (``/account/export``) are
GETs that write an audit event and spend a rate limit, so that they work as download links.
An ``<img>``, a script's ``fetch`` or a frame on a page the user opens must not run them.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, abort, request
from flask_login import current_user

log = logging.getLogger("bastion.security")


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
