"""Request-handling checks: CSRF, size limits, hosts, proxies and rate limiting."""

from __future__ import annotations

from typing import Any

from flask_deploy_check.context import CheckContext
from flask_deploy_check.registry import CheckResult, check
from flask_deploy_check.wsgi import extension_instances, instances_of, unsafe_method_rules

FLASK_FORM_DEFAULTS = {"MAX_FORM_MEMORY_SIZE": 500_000, "MAX_FORM_PARTS": 1_000}
MAX_PROXY_HOPS = 2
PROXY_FIX_ARGS = ("x_for", "x_proto", "x_host", "x_port", "x_prefix")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@check(
    "BST-E301",
    title="No CSRF protection",
    why="Routes that accept POST/PUT/PATCH/DELETE can be triggered by any site the user "
    "visits while logged in (cross-site request forgery).",
    fix="Register Flask-WTF's CSRFProtect(app), keep WTF_CSRF_ENABLED and "
    "WTF_CSRF_CHECK_DEFAULT on, and exempt only token-authenticated API views.",
    asvs="V3.5.1",
    django="security.W003",
)
def csrf_protection(ctx: CheckContext) -> CheckResult:
    """A cookie-authenticated app without CSRF tokens trusts every site on the web."""
    rules = unsafe_method_rules(ctx.app)
    if not rules:
        return None  # nothing state-changing to protect
    config = ctx.app.config
    where = f"{len(rules)} route(s) accept state-changing methods (e.g. {rules[0]})"
    if not extension_instances(ctx.app, "csrf"):
        return f"No CSRF extension is registered (no 'csrf' in app.extensions); {where}."
    if not config.get("WTF_CSRF_ENABLED", True):
        return f"WTF_CSRF_ENABLED is False; {where}."
    if not config.get("WTF_CSRF_CHECK_DEFAULT", True):
        return (
            f"WTF_CSRF_CHECK_DEFAULT is False, only views calling csrf.protect() are safe; {where}."
        )
    # Flask-WTF checks only the methods listed here, compared case-sensitively with the
    # upper-case request method; a shortened list leaves the others unprotected.
    checked = {str(m) for m in config.get("WTF_CSRF_METHODS", UNSAFE_METHODS) or ()}
    used = {m for rule in ctx.app.url_map.iter_rules() for m in rule.methods or ()}
    unchecked = sorted((UNSAFE_METHODS & used) - checked)
    if unchecked:
        return f"WTF_CSRF_METHODS leaves {', '.join(unchecked)} unchecked; {where}."
    return None


@check(
    "BST-W302",
    title="No request size limit",
    why="Without MAX_CONTENT_LENGTH a client can stream an arbitrarily large body into "
    "the app (uploads, JSON), exhausting memory and disk.",
    fix="Set MAX_CONTENT_LENGTH to the largest body the app needs (e.g. 10 * 1024 * 1024).",
    asvs="V5.2.1",
)
def max_content_length(ctx: CheckContext) -> CheckResult:
    """Bounding request bodies is the first denial-of-service control."""
    if not ctx.app.config.get("MAX_CONTENT_LENGTH"):
        return "MAX_CONTENT_LENGTH is not set."
    return None


@check(
    "BST-I303",
    title="Form parsing limits are Flask's defaults",
    why="MAX_FORM_MEMORY_SIZE (500 kB) and MAX_FORM_PARTS (1000) are generic; sizing them "
    "to the app's real forms narrows the denial-of-service surface.",
    fix="Set MAX_FORM_MEMORY_SIZE and MAX_FORM_PARTS to what the largest form needs.",
    asvs="V5.2.1",
    deploy=True,
)
def form_limits(ctx: CheckContext) -> CheckResult:
    """Informational: defaults are safe-ish but rarely tuned."""
    defaults = [
        name for name, value in FLASK_FORM_DEFAULTS.items() if ctx.app.config.get(name) == value
    ]
    return f"{' and '.join(defaults)} left at Flask's default." if defaults else None


@check(
    "BST-W304",
    title="TRUSTED_HOSTS is not set",
    why="Flask builds absolute URLs (password-reset links, redirects) from the Host header; "
    "without a host allowlist an attacker chooses that host.",
    fix='TRUSTED_HOSTS = ["example.com"] (Flask 3.1+), or SERVER_NAME, or enforce '
    "the host at the proxy.",
    deploy=True,
    django="security.W020",
)
def trusted_hosts(ctx: CheckContext) -> CheckResult:
    """The Flask counterpart of Django's ALLOWED_HOSTS."""
    config = ctx.app.config
    if not config.get("TRUSTED_HOSTS") and not config.get("SERVER_NAME"):
        return "Neither TRUSTED_HOSTS nor SERVER_NAME is set; any Host header is accepted."
    return None


def _expects_proxy(ctx: CheckContext) -> list[str]:
    """Settings that only make sense when TLS is terminated by a proxy in front."""
    config = ctx.app.config
    hints = []
    if config.get("PREFERRED_URL_SCHEME") == "https":
        hints.append("PREFERRED_URL_SCHEME is https")
    if config.get("SESSION_COOKIE_SECURE"):
        hints.append("SESSION_COOKIE_SECURE is on")
    if extension_instances(ctx.app, "limiter"):
        hints.append("a rate limiter keys on the client address")
    return hints


@check(
    "BST-W305",
    title="ProxyFix is missing behind a proxy",
    why="Behind a reverse proxy request.remote_addr is the proxy and request.scheme is "
    "http: rate limits and logs see one client, and url_for builds http:// links.",
    fix="app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1) with the "
    "exact number of proxies in front of the app.",
    asvs="V15.3.4",
    deploy=True,
)
def proxy_fix_missing(ctx: CheckContext) -> CheckResult:
    """Only flagged when the configuration shows the app expects HTTPS from a proxy."""
    if instances_of(ctx.app, "werkzeug.middleware.proxy_fix", "ProxyFix"):
        return None
    hints = _expects_proxy(ctx)
    if hints:
        return f"No ProxyFix in app.wsgi_app although {', '.join(hints)}."
    return None


@check(
    "BST-W306",
    title="ProxyFix trusts more proxies than exist",
    why="ProxyFix trusts the last N X-Forwarded-* values; if fewer proxies add them, the "
    "client writes the trusted ones and spoofs its IP address, scheme or host.",
    fix="Set x_for/x_proto/x_host to the exact number of proxies (usually 1) and wrap "
    "the app in ProxyFix only once.",
    asvs="V4.1.3",
    deploy=True,
)
def proxy_fix_hops(ctx: CheckContext) -> CheckResult:
    """Trusting one hop too many is as bad as not validating the header at all."""
    fixes = instances_of(ctx.app, "werkzeug.middleware.proxy_fix", "ProxyFix")
    problems: list[str] = []
    if len(fixes) > 1:
        problems.append(f"ProxyFix is applied {len(fixes)} times; hops are counted twice")
    for proxy_fix in fixes:
        hops: dict[str, Any] = {name: getattr(proxy_fix, name, 0) for name in PROXY_FIX_ARGS}
        too_many = {name: n for name, n in hops.items() if n > MAX_PROXY_HOPS}
        if too_many:
            problems.append(f"ProxyFix trusts {too_many} hops (more than {MAX_PROXY_HOPS})")
        expected = ctx.app.config.get("PROXY_HOPS")
        if isinstance(expected, int) and hops["x_for"] not in (0, expected):
            problems.append(f"ProxyFix x_for={hops['x_for']} but PROXY_HOPS is {expected}")
    return "; ".join(problems) + "." if problems else None


@check(
    "BST-W307",
    title="No rate limiter",
    why="Without rate limits login, password reset and sign-up can be brute-forced or "
    "used for spam at network speed.",
    fix="Register Flask-Limiter (Limiter(key_func=get_remote_address, app=app, "
    "storage_uri=...)) with limits on authentication and expensive endpoints.",
    asvs="V2.4.1",
)
def rate_limiter(ctx: CheckContext) -> CheckResult:
    """Automation resistance starts with a limiter."""
    if ctx.app.config.get("RATELIMIT_ENABLED") is False:
        return "RATELIMIT_ENABLED is False; Flask-Limiter is switched off."
    limiters = extension_instances(ctx.app, "limiter")
    if not limiters:
        return "No 'limiter' in app.extensions (Flask-Limiter is not registered)."
    if not any(getattr(limiter, "enabled", True) for limiter in limiters):
        return "Flask-Limiter is registered but disabled."
    return None


def uses_memory_storage(limiter: Any, config: Any) -> bool:
    """Whether a limiter keeps its counters in process memory (the storage object decides)."""
    try:
        storage = limiter.storage
    except Exception:  # not initialised yet: fall back to what the settings say
        storage = None
    if storage is not None:
        return type(storage).__name__ == "MemoryStorage"
    uri = getattr(limiter, "_storage_uri", None) or config.get("RATELIMIT_STORAGE_URI")
    return str(uri or "memory://").startswith("memory://")


@check(
    "BST-W308",
    title="Rate limits are kept in process memory",
    why="With memory:// every worker process keeps its own counters (and loses them on "
    "restart), so the real limit is N times the configured one.",
    fix='Point the limiter at shared storage: RATELIMIT_STORAGE_URI = "redis://..." '
    "(or storage_uri=...).",
    asvs="V2.4.1",
    deploy=True,
)
def limiter_storage(ctx: CheckContext) -> CheckResult:
    """Per-process counters make limits unreliable under gunicorn."""
    for limiter in extension_instances(ctx.app, "limiter"):
        if uses_memory_storage(limiter, ctx.app.config):
            return "Flask-Limiter uses memory:// storage."
    return None


@check(
    "BST-W309",
    title="A route accepts HTTP TRACE",
    why="TRACE echoes the request, including cookies and auth headers, which helps "
    "cross-site tracing and leaks proxy-added headers.",
    fix="Remove TRACE from the route's methods.",
    asvs="V13.4.4",
)
def trace_method(ctx: CheckContext) -> CheckResult:
    """Flask never enables TRACE on its own; a route has to ask for it."""
    rules = sorted(r.rule for r in ctx.app.url_map.iter_rules() if "TRACE" in (r.methods or ()))
    return f"TRACE is accepted by {', '.join(rules)}." if rules else None


@check(
    "BST-W205",
    title="PREFERRED_URL_SCHEME is not https",
    why="Links built outside a request (emails: confirmation, password reset) use this "
    "scheme; http:// links send tokens in clear and invite downgrade.",
    fix='PREFERRED_URL_SCHEME = "https".',
    asvs="V12.2.1",
    deploy=True,
)
def preferred_url_scheme(ctx: CheckContext) -> CheckResult:
    """External links must be https in production."""
    scheme = ctx.app.config.get("PREFERRED_URL_SCHEME")
    return f"PREFERRED_URL_SCHEME is {scheme!r}." if scheme != "https" else None
