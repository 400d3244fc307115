"""Bodies sent without a Content-Length are refused past the limit, never cut short.

Werkzeug bounds such a body (chunked, from a server that sets ``wsgi.input_terminated``:
gunicorn, Werkzeug's own) by ``max_content_length`` with a ``LimitedStream`` that raises
413 when a read goes past the limit. Its ``readall`` stops *at* the limit, though, and
returns what it has, so ``request.get_data()``, JSON bodies and url-encoded forms took the
first part of a larger body for the whole: a first MiB that was valid on its own was acted
on although the body sent was bigger (and perhaps no JSON at all). Here ``readall`` asks the
server's stream whether anything follows. Multipart forms read in pieces and already got
their 413.

Url-encoded forms (what browsers send for every form but an upload) get the part limit
too: Werkzeug applies ``MAX_FORM_PARTS`` to multipart bodies only, and a 1 MB body of
``a&a&...`` (half a million fields) took half a second of CPU to parse, before the rate
limits (the CSRF check reads the form first), for anyone. A body that is not UTF-8 is a
400 that says so: Werkzeug dropped it silently, and the CSRF check then called the form
forged and audited a CSRF failure.

A chunked body whose framing is broken (a chunk size that is not hex, a chunk longer than
it said, a bad trailer) is a 400 too. gunicorn finds out only when the app reads that far,
and raises its own parse errors, which are no ``OSError`` for Werkzeug to take as a
disconnect: every route that reads a body answered anyone with a 500 and logged a traceback.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, cast
from urllib.parse import parse_qsl

from flask import Request
from gunicorn.http.errors import ParseException as ServerParseError
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_content_length

if TYPE_CHECKING:
    from werkzeug.formparser import t_parse_result


MALFORMED_CHUNKS = (
    "The request body is not valid chunked transfer coding. "
    "Send it again with well-formed chunks or with a Content-Length."
)


class WholeOrRefusedStream(LimitedStream):
    """A ``LimitedStream`` at ``max_content_length`` whose ``readall`` never truncates, and
    for which a body the server cannot dechunk is the client's error (400), not ours."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)
        self._source = stream

    def readinto(self, b: bytearray) -> int | None:  # type: ignore[override]
        try:
            return super().readinto(b)
        except ServerParseError:
            raise BadRequest(description=MALFORMED_CHUNKS) from None

    def readall(self) -> bytes:
        data = super().readall()
        try:
            more = self.is_exhausted and self._source.read(1)
        except ServerParseError:
            raise BadRequest(description=MALFORMED_CHUNKS) from None
        if more:
            raise RequestEntityTooLarge()
        return data


class BoundedFormDataParser(FormDataParser):
    """Werkzeug's form parser, with ``max_form_parts`` and UTF-8 enforced on url-encoded
    bodies as well (``ValueError`` is swallowed by ``parse``; HTTP errors are not)."""

    def _parse_urlencoded(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> t_parse_result:
        data = stream.read()
        # parse_qsl's own count (max_num_fields): one field more than separators.
        if self.max_form_parts is not None and data.count(b"&") >= self.max_form_parts:
            raise RequestEntityTooLarge(description="The form has too many fields.")
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise BadRequest(
                description="The form data is not valid UTF-8. Send it again from the page."
            ) from None
        items = parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote")
        return stream, self.cls(items), self.cls()


class BastionRequest(Request):
    """Flask's request, with ``WholeOrRefusedStream`` for bodies of unknown length and
    ``BoundedFormDataParser`` for forms."""

    form_data_parser_class = BoundedFormDataParser

    @cached_property
    def stream(self) -> IO[bytes]:
        environ = self.environ
        limit = self.max_content_length
        if (
            not self.shallow
            and limit is not None
            and "wsgi.input_terminated" in environ  # as Werkzeug reads it: present
            and get_content_length(environ) is None
        ):
            # Werkzeug casts its own LimitedStream the same way (io.RawIOBase, not IO).
            return cast(IO[bytes], WholeOrRefusedStream(environ["wsgi.input"], limit))
        return super().stream
