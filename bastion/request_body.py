"""Bodies sent without a Content-Length are refused past the limit, never cut short.

Werkzeug bounds such a body (chunked, from a server that sets ``wsgi.input_terminated``:
gunicorn, Werkzeug's own) by ``max_content_length`` with a ``LimitedStream`` that raises
413 when a read goes past the limit. Its ``readall`` stops *at* the limit, though, and
returns what it has, so ``request.get_data()``, JSON bodies and url-encoded forms took the
first part of a larger body for the whole: a first MiB that was valid on its own was acted
on although the body sent was bigger (and perhaps no JSON at all). Here ``readall`` asks the
server's stream whether anything follows. Multipart forms read in pieces and already got
their 413.
"""

from __future__ import annotations

from typing import IO, cast

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_content_length


class WholeOrRefusedStream(LimitedStream):
    """A ``LimitedStream`` at ``max_content_length`` whose ``readall`` never truncates."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)
        self._source = stream

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._source.read(1):
            raise RequestEntityTooLarge()
        return data


class BastionRequest(Request):
    """Flask's request, with ``WholeOrRefusedStream`` for bodies of unknown length."""

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
