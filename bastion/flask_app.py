"""The Flask class Bastion runs on: Flask, minus one question asked on every request, with
absolute links built on the configured public origin, whole request bodies or none, and the
JSON API's own answers where Flask's routing answers by itself, the Host header in the
lower case the allow-list is written in, and Flask's last-resort error line without the
secrets a path may hold."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, cast

from flask import Flask, Request, Response, has_request_context
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import NotFound
from werkzeug.routing import RequestRedirect
from werkzeug.utils import cached_property

from bastion.errors import log as error_log
from bastion.errors import wants_problem_json
from bastion.observability.redaction import request_path
from bastion.request_body import BastionRequest
from bastion.security.ratelimit_keys import without_port

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# ASCII letters only: ``str.lower`` would also fold characters that are not ASCII (the
# Kelvin sign is "k" in lower case), letting a name Werkzeug refuses today pass as another.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class _Request(BastionRequest):
    """``BastionRequest``, answering ``cookies`` without walking the headers when the
    request has no Cookie header.

    Werkzeug joins every ``Cookie`` header it finds by walking the whole environ (about
    forty calls) before it parses anything; Flask-Login asks on every anonymous page. A
    WSGI server gives a request's cookies in ``HTTP_COOKIE`` alone, and without it (or with
    it empty) Werkzeug's answer is an empty ``dict_storage_class()``: the same as here.
    """

    @cached_property
    def cookies(self) -> ImmutableMultiDict[str, str]:
        if not self.environ.get("HTTP_COOKIE"):
            return cast(ImmutableMultiDict[str, str], self.dict_storage_class())
        return super().cookies


# Hooks, views and handlers are registered once, so the set stays this small; a caller
# that hands over a new function per request is served uncached past the bound.
_MAX_REMEMBERED = 1024


class BastionFlask(Flask):
    """Remembers which hooks and views are plain functions.

    Flask calls ``ensure_sync`` on every before/after/teardown hook and on the view of every
    request (about twenty-five times for an API call), and each call asks
    ``inspect.iscoroutinefunction``, which unwraps the function and reads its code flags:
    about half a microsecond each on the slowest bench host, for an answer that cannot
    change while the function lives. Plain functions are remembered (the set holds them,
    so an id is never reused); ``async def`` ones still go through Flask's own wrapping
    every time.
    """

    # Bodies of unknown length are refused past the limit instead of cut short there.
    request_class = _Request

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_functions: set[Callable[..., Any]] = set()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            if func in self._plain_functions:
                return func
        except TypeError:  # an unhashable callable: ask Flask every time
            return super().ensure_sync(func)
        wrapped = super().ensure_sync(func)
        if wrapped is func and len(self._plain_functions) < _MAX_REMEMBERED:
            self._plain_functions.add(func)
        return wrapped

    def log_exception(
        self,
        exc_info: tuple[type, BaseException, TracebackType] | tuple[None, None, None],
    ) -> None:
        """A failure no handler took (a response hook or an error handler that raised),
        logged as ``bastion.errors`` logs the others. Flask's own line, "Exception on
        <path> [GET]", quoted the path whole: a reset link's or access token's secret."""
        error_log.error("unhandled error", extra={"path": request_path()}, exc_info=exc_info)

    def wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The Host header in lower case before Werkzeug judges it against the allow-list.

        Host names are case-insensitive (RFC 9110 4.2.3), but Werkzeug's check accepts only
        lower-case letters, so ``Host: LOCALHOST`` was refused although ``localhost`` is
        allowed. Only the case of ASCII letters changes: anything else (another name, a
        trailing dot, a port, IPv6 brackets) is judged exactly as it was sent. Runs inside
        ``ProxyFix``, so a host taken from X-Forwarded-Host is lowered too, and whatever is
        built from ``request.host`` (the HTTPS redirect, links) never echoes the client's
        spelling.

        And the client's address without the port some proxies write into X-Forwarded-For
        (``203.0.113.7:51234``, ``[2001:db8::1]:51234``; ProxyFix makes it REMOTE_ADDR as
        it is): the audit trail, the sessions list and the request log keep the address,
        which a port would make a different one each connection (and, bracketed, longer
        than the column holds).
        """
        host = environ.get("HTTP_HOST")
        if host:
            environ["HTTP_HOST"] = host.translate(_ASCII_LOWER)
        address = environ.get("REMOTE_ADDR")
        if address and ":" in address:  # IPv4 without a port, the common case, costs nothing
            environ["REMOTE_ADDR"] = without_port(address)
        return super().wsgi_app(environ, start_response)

    def url_for(
        self,
        endpoint: str,
        *,
        _anchor: str | None = None,
        _method: str | None = None,
        _scheme: str | None = None,
        _external: bool | None = None,
        **values: Any,
    ) -> str:
        """Absolute links on ``PUBLIC_URL`` when it is set, not on the request's Host.

        Mailed links are absolute. Built from the request, they carry whatever Host the
        allow-list admitted, which can be an internal name (a service's, a pod's) that a
        client inside the network may send: the victim would get a link to a host that is
        not the site. Only the origin changes; the path is Flask's own.
        """
        base = self.config.get("PUBLIC_URL")
        if base and _external and has_request_context():
            path = super().url_for(endpoint, _anchor=_anchor, _method=_method, **values)
            return f"{base}{path}"
        return super().url_for(
            endpoint, _anchor=_anchor, _method=_method, _scheme=_scheme, _external=_external,
            **values,
        )

    def make_default_options_response(self) -> Response:
        """``204 No Content`` with ``Allow`` under the API, not Flask's empty ``text/html``
        200; pages keep Flask's answer. CORS headers are added after, as for any answer."""
        rv = super().make_default_options_response()
        if not wants_problem_json():
            return rv
        answer = self.response_class(status=204)
        del answer.headers["Content-Type"]
        answer.allow.update(rv.allow)
        return answer

    def raise_routing_exception(self, request: Request) -> NoReturn:
        """Under the API another spelling of an address (``/api/v1//me``) is a 404 problem.

        Werkzeug answers it with a 308 to the merged path, and Flask returns routing
        redirects as they are, past the error handlers: an HTML page in a JSON API, and a
        redirect that has the client send its Authorization header and body again to a URL
        it did not ask for. Ids have one spelling each (bastion.routing); so do paths.
        """
        if isinstance(request.routing_exception, RequestRedirect) and wants_problem_json():
            raise NotFound()
        super().raise_routing_exception(request)
