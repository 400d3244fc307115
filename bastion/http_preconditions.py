"""Conditional and range headers that Werkzeug's ``send_file`` misreads, dropped before it runs.

Images (``/uploads/<id>``) and static files are served by ``send_file``, which answers a
request's preconditions and ranges itself (``Response.make_conditional``). Three of its
answers are wrong for a file that exists:

- ``If-Match: *`` is true whenever there is a current representation (RFC 9110 13.1.1);
  Werkzeug compares ``*`` with the ETag as if it were a tag and answers 412.
- A ``Range`` it cannot use: malformed, backwards (``bytes=5-2``), in another unit than
  bytes, or several ranges (it serves one range only, never multipart/byteranges), was a
  416 saying the file has no such bytes. A server must ignore a range unit it does not
  know and may ignore any range (RFC 9110 14.2), and 416 means the ranges do not overlap
  the file (15.5.17): such a request is answered with the whole file, 200. A single byte
  range past the end is still 416 with the file's length.
- An ``If-Modified-Since`` later than the server's clock cannot be a ``Last-Modified`` the
  server sent (RFC 9110 8.8.2.1), yet it got a 304 and, reused, would keep getting one
  after the file changed. It is ignored, as HTTP/1.1 first specified (RFC 2616 14.25) and
  Apache httpd does.

Dropping the header from the WSGI environ (which ``send_file`` reads) is the one way in:
Werkzeug has no switch for any of these.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from werkzeug.http import parse_date, parse_etags, parse_range_header


def drop_unusable_conditions(environ: dict[str, Any]) -> None:
    """Remove the precondition and range headers ``send_file`` would answer wrongly."""
    if parse_etags(environ.get("HTTP_IF_MATCH")).star_tag:
        del environ["HTTP_IF_MATCH"]
    if "HTTP_RANGE" in environ:
        ranges = parse_range_header(environ["HTTP_RANGE"])
        if ranges is None or ranges.units != "bytes" or len(ranges.ranges) != 1:
            del environ["HTTP_RANGE"]
    since = parse_date(environ.get("HTTP_IF_MODIFIED_SINCE"))
    if since is not None and since > datetime.now(UTC):
        del environ["HTTP_IF_MODIFIED_SINCE"]
