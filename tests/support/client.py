"""A test client that speaks HTTPS by default, as the site does in production."""

from __future__ import annotations

from typing import Any

from flask import g, has_app_context
from flask.testing import FlaskClient


class HTTPSClient(FlaskClient):
    """Like a browser on the site: HTTPS, and a same-origin Referer on every request.

    Flask-WTF checks the Referer on HTTPS (as Django does); tests of cross-site requests
    pass their own ``Referer``/``Origin`` headers.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        # The ``app`` fixture keeps an app context open for the whole test, and a request
        # reuses it, so ``g`` would carry one request's state into the next: Flask-Login's
        # cached user, Flask-WTF's token, the session record. Each request starts clean,
        # as it does on a server.
        if has_app_context():
            vars(g).clear()
        if not (args and not isinstance(args[0], str)):
            base = kwargs.setdefault("base_url", "https://localhost")
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("Referer", base.rstrip("/") + "/")
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)
