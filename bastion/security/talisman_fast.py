"""Flask-Talisman with its header values built once, at start-up, instead of per response.

Stock Talisman rebuilds every policy string for every response (walking the CSP dict,
formatting the Permissions-Policy, merging per-view options three times per request).
The values only depend on configuration, except the CSP nonce, so this subclass asks
Talisman itself to produce them once (with a placeholder nonce) and afterwards only
splices the fresh nonce in, looking the request up once per hook (each use of Flask's
``request`` proxy costs about 2 us on a slow host). Views that carry their own options
(``@talisman(...)``) take the stock code path, so pages get what stock Talisman sends by
construction (a test compares both); JSON answers get ``DATA_CSP`` instead of the page
policy.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, request
from flask_talisman import Talisman
from flask_talisman.talisman import get_random_string
from werkzeug.datastructures import Headers

from bastion.security.fixed_headers import FixedHeaders
from bastion.security.header_values import DATA_CSP  # for data answers, not documents

_PLACEHOLDER = "BASTIONNONCEPLACEHOLDER"


def is_data(mimetype: str) -> bool:
    """JSON and its ``+json`` kinds (``application/problem+json``)."""
    return mimetype == "application/json" or mimetype.endswith("+json")
_NONCE_LENGTH = 32  # flask_talisman.talisman.NONCE_LENGTH
_VIEW_OPTIONS = "bastion.talisman_view_options"  # in the request's __dict__


class PrecomputedTalisman(Talisman):  # type: ignore[misc]
    """Same headers as Talisman; the per-request work is one string join."""

    def init_app(self, app: Flask, **kwargs: Any) -> None:
        super().init_app(app, **kwargs)
        self._fixed: list[tuple[str, str]] = []
        self._csp_name = ""
        self._csp_with_nonce: list[str] = []
        self._csp_without_nonce = ""
        self._hsts = ""
        with app.test_request_context("/", headers={"X-Forwarded-Proto": "https"}):
            self._fixed, self._csp_without_nonce = self._stock_headers(nonce=None)
            _, with_nonce = self._stock_headers(nonce=_PLACEHOLDER)
        self._csp_with_nonce = with_nonce.split(_PLACEHOLDER)
        names = dict(self._fixed)
        self._hsts = names.pop("Strict-Transport-Security", "")
        self._fixed = [(k, v) for k, v in self._fixed if k != "Strict-Transport-Security"]
        self._fixed_headers = FixedHeaders(self._fixed, replace=True)

    def _stock_headers(self, nonce: str | None) -> tuple[list[tuple[str, str]], str]:
        """What stock Talisman sets, split into fixed headers and the CSP value."""
        if nonce is None:
            request.__dict__.pop("csp_nonce", None)
        else:
            request.csp_nonce = nonce  # type: ignore[attr-defined]
        response = Response()
        response.headers = Headers()
        super()._set_response_headers(response)
        request.__dict__.pop("csp_nonce", None)
        csp = ""
        fixed = []
        for name, value in response.headers.items():
            if name.startswith("Content-Security-Policy"):
                self._csp_name, csp = name, value
            else:
                fixed.append((name, value))
        return fixed, csp

    @staticmethod
    def _has_view_options() -> bool:
        """Whether the view has ``@talisman(...)`` options; asked three times per request,
        answered once (kept on the request, which never changes endpoint)."""
        req = request._get_current_object()  # type: ignore[attr-defined]
        known: bool | None = req.__dict__.get(_VIEW_OPTIONS)
        if known is None:
            view = current_app.view_functions.get(req.endpoint)
            known = req.__dict__[_VIEW_OPTIONS] = hasattr(view, "talisman_view_options")
        return known

    def _force_https(self) -> Any:
        if self.force_https or self._has_view_options():
            return super()._force_https()
        return None

    def _make_nonce(self) -> None:
        if self._has_view_options():
            super()._make_nonce()
        elif self._csp_name:
            req = request._get_current_object()  # type: ignore[attr-defined]
            if not getattr(req, "csp_nonce", None):
                req.csp_nonce = get_random_string(_NONCE_LENGTH)

    def _set_response_headers(self, response: Response) -> Response:
        if self._has_view_options():
            return super()._set_response_headers(response)  # type: ignore[no-any-return]
        headers = response.headers
        # The names the answer had before; neither the CSP nor HSTS is a fixed header, so
        # a name absent here is absent still: appending it is what ``headers[name] =``
        # does then, without walking every header to look for it.
        present = self._fixed_headers.apply(headers)
        req = request._get_current_object()  # type: ignore[attr-defined]
        if self._csp_name:
            nonce = getattr(req, "csp_nonce", None)
            if is_data(response.mimetype or ""):
                csp = DATA_CSP
            elif nonce is not None:
                csp = nonce.join(self._csp_with_nonce)
            else:
                csp = self._csp_without_nonce
            _set(headers, present, self._csp_name, csp)
        if self._hsts and (
            req.is_secure or req.headers.get("X-Forwarded-Proto", "http") == "https"
        ):
            _set(headers, present, "Strict-Transport-Security", self._hsts)
        return response


def _set(headers: Headers, present: set[str], name: str, value: str) -> None:
    """``headers[name] = value``, given the lower-cased names ``present`` before."""
    if name.lower() in present:
        headers[name] = value
    else:
        headers.add(name, value)
