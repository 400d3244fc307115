"""Open-redirect defence: only same-site, relative targets are ever followed."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from flask import request, url_for

MAX_TARGET = 2048
# Layers of percent-encoding looked through. A real target has one or two (a search query
# inside ``next``); more is an attempt to hide something, so it is refused rather than
# peeled off one recursive call at a time (``%25`` repeated 1,000 times used to exhaust the
# interpreter's stack and answer 500).
MAX_DECODINGS = 4
# Path segments a browser removes before it requests a URL (WHATWG URL; ``%2e`` counts as
# a dot, and is judged here once decoded).
DOT_SEGMENTS = frozenset({".", ".."})


def _is_local_path(target: str) -> bool:
    """One form of a target: a path on this site, nothing a browser would read as a host."""
    if any(ord(c) < 0x21 or c == "\x7f" for c in target) or "\\" in target:
        return False
    if not target.startswith("/") or target.startswith("//"):
        return False
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return False
    # "/x/../account/export" is "/account/export" to the browser that follows it, but names
    # no route here: checks that match the target against the router (a password leading
    # straight into a download, bastion.security.fetch_metadata) would judge another page
    # than the one the browser opens. No address this site links to has such a segment.
    return not any(segment in DOT_SEGMENTS for segment in parts.path.split("/"))


def is_safe_next(target: str | None) -> bool:
    """True for a plain local path such as ``/articles?page=2``.

    Refused: absolute URLs, scheme-relative ``//host``, backslash tricks ``/\\host`` (browsers
    treat ``\\`` as ``/``), control characters, any scheme such as ``javascript:``, and dot
    segments (``/./``, ``/../``). The decoded forms are judged too ("/%2F%2Fhost",
    "/%5Chost" must not pass as local, nor "/%2e%2e/" as a plain name).
    """
    if not target or len(target) > MAX_TARGET:
        return False
    form = target
    for _ in range(MAX_DECODINGS + 1):
        if not _is_local_path(form):
            return False
        decoded = unquote(form)
        if decoded == form:
            return True
        form = decoded
    return False


def safe_next_url(default_endpoint: str = "main.index") -> str:
    """The request's ``next`` (form or query) when safe, else the default page."""
    target = request.form.get("next") or request.args.get("next")
    return target if target is not None and is_safe_next(target) else url_for(default_endpoint)
