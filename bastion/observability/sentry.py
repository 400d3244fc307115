"""Error reporting to Sentry, switched on by ``BASTION_SENTRY_DSN``, with personal data removed.

sentry-sdk's own defaults already leave out cookies, user details and request bodies when
``send_default_pii`` is off; ``scrub_event`` is the second line: it walks the whole event
(request, breadcrumbs from log records, exception messages, extra data) and removes what
must never leave the server even if some future code path attaches it: cookies,
Authorization values, passwords and other secrets by field name, and personal access tokens
(``bst_...``), JWTs and email addresses by their shape, wherever they appear.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from flask import Flask

from bastion.observability.redaction import LINK_PREFIXES

if TYPE_CHECKING:  # sentry-sdk is imported only when a DSN switches it on
    from sentry_sdk.types import Event, Hint

FILTERED = "[Filtered]"
SENSITIVE_KEY = re.compile(
    r"pass|secret|token|authori[sz]ation|cookie|csrf|session|otp|email|api[-_]?key|dsn|"
    r"recovery|credential|signature",
    re.I,
)
# Client addresses are personal data; matched by exact name ("ip" alone would hit "zip").
# Besides our own field names, every request header in which a proxy, load balancer or CDN
# names the client: sentry-sdk filters only X-Forwarded-For and X-Real-IP, and the others
# (RFC 7239 Forwarded, Cloudflare, Akamai, Fastly, Envoy, ingress-nginx) carried the
# visitor's address into every event sent from behind them.
ADDRESS_KEYS = frozenset({
    "ip", "ip_address", "remote_addr", "x-forwarded-for", "x-real-ip",
    "forwarded", "x-original-forwarded-for", "cf-connecting-ip", "cf-connecting-ipv6",
    "true-client-ip", "x-client-ip", "fastly-client-ip", "x-cluster-client-ip",
    "x-envoy-external-address",
})
# Shapes of values that are secret or personal whatever field holds them.
_TOKEN_PATTERNS = (
    re.compile(r"bst_[A-Za-z0-9_\-]+"),  # personal access tokens
    re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),  # credentials in any text
)
EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Random url-safe tokens (reset, confirmation, setup links) quoted in messages: long runs
# mixing upper case and digits. Code names (snake_case) and event ids (lower-case hex)
# never match.
_RANDOM_TOKEN = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Z])[\w-]{24,}(?![\w-])")
# PostgreSQL's DETAIL quotes row values (a taken email, a failing row) in error messages.
_PG_DETAIL = re.compile(r"(?m)^DETAIL:.*$")
VALUE_PATTERNS = (*_TOKEN_PATTERNS, EMAIL_ADDRESS, _RANDOM_TOKEN, _PG_DETAIL)
# The secrets alone: what the JSON log hides of a traceback (it hides DETAIL lines itself),
# whose operators still need the addresses a configuration error names (a placeholder
# contact, an example relay URL).
SECRET_PATTERNS = (*_TOKEN_PATTERNS, _RANDOM_TOKEN)
# One-time tokens travel in paths (/auth/reset/<token>, /setup/<token>): any long random
# looking segment of a URL is hidden.
URL_SECRET_SEGMENT = re.compile(r"/[A-Za-z0-9_\-]{20,}")
# Header names are matched in lower case; a Referer is the URL of the page before (the
# reset or setup page itself when its form is posted).
URL_KEYS = frozenset({"url", "from", "to", "referer", "referrer"})
# The emailed and setup links by their route, wherever a URL or path to one appears in any
# text (a Referer header, a message, a breadcrumb), also percent-encoded inside a ``next``:
# the shape patterns above miss a token that happens to have no digit or no capital letter
# (one setup link in about 1,500), and such a link can create an admin.
_SEP = r"(?:/|%2[Ff])+"
_LINK_PATTERN = "(" + "|".join(
    _SEP + _SEP.join(re.escape(part) for part in prefix.strip("/").split("/")) + _SEP
    for prefix in LINK_PREFIXES  # the app's own route prefixes, never request text
) + r")[^\s/?#&\"'<>]+"
LINK_IN_TEXT = re.compile(_LINK_PATTERN)


def _scrub_text(text: str) -> str:
    text = LINK_IN_TEXT.sub(r"\1" + FILTERED, text)
    for pattern in VALUE_PATTERNS:
        text = pattern.sub(FILTERED, text)
    return text


def scrub_secrets(text: str) -> str:
    """``text`` without the tokens and emailed links it quotes, found by their shape."""
    text = LINK_IN_TEXT.sub(r"\1" + FILTERED, text)
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(FILTERED, text)
    return text


def scrub(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with secrets and personal data replaced by ``[Filtered]``."""
    if key and (SENSITIVE_KEY.search(key) or key.lower() in ADDRESS_KEYS):
        return FILTERED
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # Headers arrive as [name, value] pairs: judge the value by the name.
        if len(value) == 2 and isinstance(value[0], str):
            name = value[0]
            if SENSITIVE_KEY.search(name) or name.lower() in ADDRESS_KEYS:
                return [name, FILTERED]
        return [scrub(item, key) for item in value]
    if isinstance(value, str):
        text = _scrub_text(value)
        if key.lower() in URL_KEYS:
            text = URL_SECRET_SEGMENT.sub("/" + FILTERED, text.split("?", 1)[0])
        return text
    return value


def scrub_event(event: Event, hint: Hint | None = None) -> Event:
    """``before_send`` hook: never send bodies, cookies or query strings at all."""
    request = event.get("request")
    if isinstance(request, dict):
        for field in ("cookies", "data", "query_string", "env"):
            request.pop(field, None)
    event.pop("user", None)
    return scrub(event)  # type: ignore[no-any-return]  # same shape, values filtered


def _release(app: Flask) -> str:
    configured = app.config.get("RELEASE")
    if configured:
        return str(configured)
    try:
        return f"bastion@{version('bastion')}"
    except PackageNotFoundError:
        return "bastion@unknown"


def _no_redirect_transport() -> type:
    """Sentry's HTTP transport, except that a 3xx answer is final, never followed.

    sentry-sdk posts through urllib3, which follows redirects by default (a 307 even resends
    the event body); a hijacked or misconfigured ingest host could then forward error
    reports, with whatever they hold, to any address (ASVS V15.3.2). sentry-sdk has no
    option for this, hence the small subclass.
    """
    from sentry_sdk.transport import HttpTransport

    class NoRedirectTransport(HttpTransport):
        def _make_pool(self) -> Any:
            pool = super()._make_pool()
            follow = pool.urlopen

            def urlopen(method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
                return follow(method, url, redirect=False, **kw)

            pool.urlopen = urlopen  # type: ignore[method-assign]
            return pool

    return NoRedirectTransport


def init_sentry(app: Flask) -> bool:
    """Start the Sentry client when a DSN is configured; True when it was started."""
    dsn = app.config.get("SENTRY_DSN")
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=str(dsn),
        transport=_no_redirect_transport(),
        integrations=[FlaskIntegration(transaction_style="endpoint")],
        # send_default_pii is left at its default (off): passing it at all is deprecated in
        # sentry-sdk 2.x, and passing data_collection would disable the SDK's own scrubber.
        include_local_variables=False,  # a frame's locals may hold a password
        max_request_body_size="never",
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        release=_release(app),
        environment=app.config["ENV_NAME"],
        traces_sample_rate=float(app.config.get("SENTRY_TRACES_SAMPLE_RATE") or 0.0),
    )
    return True
