"""Unbound extension instances; ``create_app`` binds them (cookiecutter-flask style)."""

from __future__ import annotations

from collections import defaultdict

from flask import current_app, request
from flask.globals import request_ctx
from flask_limiter import Limiter
from flask_limiter._extension import LimiterContext
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from bastion.models.base import Base
from bastion.security import ratelimit_resolution
from bastion.security.ratelimit_keys import remote_client
from bastion.security.talisman_fast import PrecomputedTalisman

# Objects stay usable after commit: views render what a service just saved without a
# second round trip.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


class RefererSafeCSRFProtect(CSRFProtect):
    """Flask-WTF's CSRF check, answering a malformed Referer with its usual 400.

    On HTTPS it compares the Referer with the host through ``urlparse`` and ``.port``, which
    raise ValueError for ``http://[bad`` or a port past 65535: any client could make any
    POST answer 500. Tokens are still checked first, exactly as before.
    """

    def protect(self, apply_exemptions: bool = False) -> None:
        # A method the check does not cover (GET, HEAD...) ends Flask-WTF's check anyway,
        # but only after it has looked up the view's and blueprint's exemptions (seven
        # uses of context proxies, about 15 us on a slow host): ask the method first.
        if request.method not in current_app.config["WTF_CSRF_METHODS"]:
            return
        try:
            super().protect(apply_exemptions)  # type: ignore[no-untyped-call]
        except ValueError:  # only the Referer parsing raises it; token errors are CSRFError
            self._error_response("The referrer header is malformed.")  # type: ignore[no-untyped-call]


class ServerSessionLoginManager(LoginManager):
    """Flask-Login's manager, without its session-protection hash while protection is off.

    Flask-Login works out the client's identifier (SHA-512 of its address and User-Agent)
    on every request that asks for ``current_user``, before it looks at whether session
    protection is on at all. Bastion turns it off (``bastion.register_extensions``: sign-ins
    are server-side records, revocable and checked on every request), so the hash was
    work thrown away on every page. With protection on, Flask-Login's check runs unchanged.
    """

    def _session_protection_failed(self) -> bool:
        if not current_app.config.get("SESSION_PROTECTION", self.session_protection):
            return False
        return bool(super()._session_protection_failed())  # type: ignore[no-untyped-call]


class RequestContextLimiter(Limiter):
    """Flask-Limiter, finding its per-request state with one context lookup, not three.

    ``Limiter.context`` is read seven times per request (the limits' state passed from its
    before-request hook to its after-request and teardown hooks); each read asked the
    ``request_ctx`` proxy twice (``hasattr``, then the attribute), about 2 us a lookup on a
    slow host. Here the request context is looked up once per read and the same
    ``defaultdict`` of ``LimiterContext`` kept on it, so every hook sees the same state;
    outside a request the lookup raises as the proxy does.
    """

    @property
    def context(self) -> LimiterContext:
        ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
        try:
            contexts: dict[Limiter, LimiterContext] = ctx._limiter_request_context
        except AttributeError:
            contexts = ctx._limiter_request_context = defaultdict(LimiterContext)
        return contexts[self]


csrf = RefererSafeCSRFProtect()
login_manager = ServerSessionLoginManager()
# The client address is REMOTE_ADDR; ProxyFix (set up only with BASTION_PROXY_HOPS) makes
# that the real client behind a known number of proxies, so a forged X-Forwarded-For from
# the client itself never picks someone else's bucket. An IPv6 client counts by its /64,
# which it controls whole: per address, it could take a fresh bucket for every request.
limiter = RequestContextLimiter(key_func=remote_client)
# Which limits apply to a view is worked out once, not on every request (see the module).
ratelimit_resolution.install(limiter)
# Same headers as flask_talisman.Talisman, with the policy strings built at start-up.
talisman = PrecomputedTalisman()
