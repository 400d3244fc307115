"""Preconditions and ranges for the files we serve, in the order RFC 9110 13.2.2 gives.

Images (``/uploads/<id>``) and static files are built by ``send_file`` with
``conditional=False`` and answered here (``answer_conditions``), not by Werkzeug's
``Response.make_conditional``, which gets several of them wrong for a file that exists:

- It serves a ``Range`` before it looks at any precondition, so ``If-Match`` naming an
  old ETag together with a range got a 206 of the new file: a client resuming the download
  of a file that changed since glued new bytes onto old ones. Preconditions come first
  (13.2.2): a failed ``If-Match`` is a 412 whatever else the request asks.
- It never reads ``If-Unmodified-Since``. Now, when there is no ``If-Match``, a date
  earlier than the file's ``Last-Modified`` is a 412 (13.1.4); a date that does not parse
  is ignored, as that section says.
- ``If-Match: *`` is true whenever there is a current representation (13.1.1); Werkzeug
  compares ``*`` with the ETag as if it were a tag and answers 412.
- A ``Range`` it cannot use: malformed, backwards (``bytes=5-2``), in another unit than
  bytes, or several ranges (it serves one range only, never multipart/byteranges), was a
  416 saying the file has no such bytes. A server must ignore a range unit it does not
  know and may ignore any range (14.2), and 416 means the ranges do not overlap the file
  (15.5.17): such a request is answered with the whole file, 200. A single byte range past
  the end is still 416 with the file's length.
- An ``If-Modified-Since`` later than the server's clock cannot be a ``Last-Modified`` the
  server sent (8.8.2.1), yet it got a 304 and, reused, would keep getting one after the
  file changed. It is ignored, as HTTP/1.1 first specified (RFC 2616 14.25) and Apache
  httpd does.

What is left, a usable byte range and its ``If-Range``, is Werkzeug's to serve.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import http_date, parse_date, parse_etags, parse_range_header
from werkzeug.wrappers import Response

R = TypeVar("R", bound=Response)

# Answered here; Werkzeug must not answer them again (its own order is the wrong one).
_PRECONDITIONS = (
    "HTTP_IF_MATCH",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
)
CHANGED = (
    "This file has changed since the version named by If-Match or If-Unmodified-Since. "
    "Fetch it again from the start, without those headers.\n"
)


def _usable_range(environ: dict[str, Any]) -> None:
    """Remove a ``Range`` that Werkzeug would answer 416 although the file has the bytes."""
    if "HTTP_RANGE" in environ:
        ranges = parse_range_header(environ["HTTP_RANGE"])
        if ranges is None or ranges.units != "bytes" or len(ranges.ranges) != 1:
            del environ["HTTP_RANGE"]


def precondition_status(response: Response, environ: dict[str, Any]) -> int | None:
    """412 or 304 when a precondition decides the answer (RFC 9110 13.2.2 steps 1-4); for
    files, and for the pages ``bastion.pagecache`` answers with an ETag."""
    etag, weak = response.get_etag()
    modified = response.last_modified
    if "HTTP_IF_MATCH" in environ:
        # Strong comparison (13.1.1). A header naming no ETag matches nothing.
        tags = parse_etags(environ["HTTP_IF_MATCH"])
        if not (tags.star_tag or (etag is not None and not weak and tags.is_strong(etag))):
            return 412
    else:
        since = parse_date(environ.get("HTTP_IF_UNMODIFIED_SINCE"))
        if since is not None and modified is not None and modified > since:
            return 412
    if "HTTP_IF_NONE_MATCH" in environ:
        if parse_etags(environ["HTTP_IF_NONE_MATCH"]).contains_weak(etag or ""):
            return 304
    else:
        # A date in the future is no Last-Modified we sent: ignored.
        since = parse_date(environ.get("HTTP_IF_MODIFIED_SINCE"))
        if since is not None and modified is not None and modified <= since <= datetime.now(UTC):
            return 304
    return None


def answer_conditions(response: R, environ: dict[str, Any]) -> R:
    """Answer a GET or HEAD for a file: 412, 304, 206 (or 416, raised) or the whole file.

    ``response`` is ``send_file``'s with ``conditional=False`` (it carries the ETag and
    ``Last-Modified``). A 412 is a new short plain-text answer: Werkzeug's kept the file as
    its body. Raises ``RequestedRangeNotSatisfiable`` for a byte range past the end, with the
    file closed.
    """
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        return response
    status = precondition_status(response, environ)
    if status == 412:
        response.close()
        refused = type(response)(CHANGED, status=412, mimetype="text/plain")
        refused.headers["X-Content-Type-Options"] = "nosniff"
        refused.headers["Cache-Control"] = "no-store"
        return refused
    if status == 304:
        response.status_code = 304  # Werkzeug drops the body and its headers, and closes it
        response.headers.pop("X-Sendfile", None)
        response.headers.setdefault("Date", http_date())
        return response
    rest = {k: v for k, v in environ.items() if k not in _PRECONDITIONS}
    _usable_range(rest)
    try:
        response.make_conditional(rest, accept_ranges=True, complete_length=response.content_length)
    except RequestedRangeNotSatisfiable:
        response.close()
        raise
    return response
