"""Session and remember-me cookie checks (Flask sessions and Flask-Login)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask_deploy_check import headers as h
from flask_deploy_check.context import CheckContext
from flask_deploy_check.registry import CheckResult, check
from flask_deploy_check.wsgi import has_flask_login, talisman_instances

MAX_SESSION_LIFETIME = timedelta(hours=12)
MAX_REMEMBER_DURATION = timedelta(days=30)
GOOD_SAMESITE = ("lax", "strict")

# Flask-Login's defaults, used when the app leaves a REMEMBER_COOKIE_* key unset.
REMEMBER_DEFAULTS: dict[str, Any] = {
    "REMEMBER_COOKIE_NAME": "remember_token",
    "REMEMBER_COOKIE_SECURE": False,
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": None,
    "REMEMBER_COOKIE_DOMAIN": None,
    "REMEMBER_COOKIE_DURATION": timedelta(days=365),
}


def _remember(ctx: CheckContext, key: str) -> Any:
    return ctx.app.config.get(key, REMEMBER_DEFAULTS[key])


def as_timedelta(value: Any) -> timedelta | None:
    """Flask accepts seconds or a timedelta for durations."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return None


def _samesite_ok(value: Any) -> bool:
    return isinstance(value, str) and value.lower() in GOOD_SAMESITE


def _host_prefix_problem(name: str, domain: Any, path: Any) -> str | None:
    """Why a cookie is not (validly) ``__Host-`` prefixed, or ``None``."""
    if not name.startswith("__Host-"):
        return f"Cookie name {name!r} has no __Host- prefix."
    if domain:
        return f"Cookie {name!r} is __Host- prefixed but sets Domain={domain!r}; browsers drop it."
    if path not in (None, "/"):
        return f"Cookie {name!r} is __Host- prefixed but its path is {path!r}; it must be /."
    return None


@check(
    "BST-E101",
    title="Session cookie is sent over plain HTTP",
    why="Without Secure the browser sends the session cookie on any http:// request, "
    "where a network attacker can read it and take over the session.",
    fix="SESSION_COOKIE_SECURE = True.",
    asvs="V3.3.1",
    deploy=True,
    django="security.W010-W012",
)
def session_cookie_secure(ctx: CheckContext) -> CheckResult:
    """The session cookie is the user's identity; it must never travel in clear.

    Flask-Talisman (session_cookie_secure=True, its default) switches the setting on at
    the first request unless debug is on, so a fresh app still shows it off.
    """
    if ctx.app.config.get("SESSION_COOKIE_SECURE"):
        return None
    talisman = talisman_instances(ctx.app)
    if not ctx.app.debug and any(getattr(t, "session_cookie_secure", False) for t in talisman):
        return None
    return "SESSION_COOKIE_SECURE is not True."


@check(
    "BST-W102",
    title="Session cookie is readable by JavaScript",
    why="Without HttpOnly any XSS can read the session cookie and replay it elsewhere.",
    fix="SESSION_COOKIE_HTTPONLY = True (Flask's default).",
    asvs="V3.3.4",
    django="security.W013-W015",
)
def session_cookie_httponly(ctx: CheckContext) -> CheckResult:
    """HttpOnly limits what an XSS can steal."""
    if not ctx.app.config.get("SESSION_COOKIE_HTTPONLY"):
        return "SESSION_COOKIE_HTTPONLY is False."
    return None


@check(
    "BST-W103",
    title="Session cookie has no SameSite protection",
    why="SameSite=Lax stops browsers from attaching the session to cross-site POSTs and "
    "iframes: a second layer against CSRF and clickjacking.",
    fix='SESSION_COOKIE_SAMESITE = "Lax" (or "Strict").',
    asvs="V3.3.2",
)
def session_cookie_samesite(ctx: CheckContext) -> CheckResult:
    """Flask leaves SameSite unset by default."""
    value = ctx.app.config.get("SESSION_COOKIE_SAMESITE")
    if not _samesite_ok(value):
        return f"SESSION_COOKIE_SAMESITE is {value!r}."
    return None


@check(
    "BST-W104",
    title="Session cookie is not __Host- prefixed",
    why="A __Host- cookie can only be set by this exact host over HTTPS with Path=/, so a "
    "sibling subdomain or a plain-HTTP page cannot plant (fixate) a session cookie.",
    fix='SESSION_COOKIE_NAME = "__Host-session", with SESSION_COOKIE_SECURE = True, '
    "no SESSION_COOKIE_DOMAIN and SESSION_COOKIE_PATH unset or /.",
    asvs="V3.3.3",
    deploy=True,
)
def session_cookie_host_prefix(ctx: CheckContext) -> CheckResult:
    """Prefix-based integrity is the only defence against cookie tossing."""
    config = ctx.app.config
    return _host_prefix_problem(
        str(config.get("SESSION_COOKIE_NAME") or "session"),
        config.get("SESSION_COOKIE_DOMAIN"),
        config.get("SESSION_COOKIE_PATH") or config.get("APPLICATION_ROOT"),
    )


@check(
    "BST-W105",
    title="Session cookie is shared with other hosts",
    why="SESSION_COOKIE_DOMAIN sends the session to every subdomain: any of them (an "
    "old marketing site, user content) can read or overwrite it.",
    fix="Leave SESSION_COOKIE_DOMAIN unset so the cookie is host-only.",
    asvs="V3.3.3",
    deploy=True,
)
def session_cookie_domain(ctx: CheckContext) -> CheckResult:
    """Host-only cookies keep sessions away from sibling applications."""
    domain = ctx.app.config.get("SESSION_COOKIE_DOMAIN")
    if domain:
        return f"SESSION_COOKIE_DOMAIN is {domain!r}; the session reaches every subdomain."
    return None


@check(
    "BST-W106",
    title="Sessions live too long",
    why="A long PERMANENT_SESSION_LIFETIME keeps stolen or forgotten sessions valid for "
    "weeks (Flask's default is 31 days).",
    fix="PERMANENT_SESSION_LIFETIME = timedelta(hours=12) or less, plus an idle timeout.",
    asvs="V7.3.2",
    deploy=True,
)
def session_lifetime(ctx: CheckContext) -> CheckResult:
    """An absolute lifetime bounds the damage of a stolen session."""
    lifetime = ctx.app.permanent_session_lifetime
    if lifetime > MAX_SESSION_LIFETIME:
        return f"PERMANENT_SESSION_LIFETIME is {lifetime} (more than {MAX_SESSION_LIFETIME})."
    return None


@check(
    "BST-E107",
    title="Remember-me cookie is sent over plain HTTP",
    why="Flask-Login's remember cookie logs the user back in for a long time; without "
    "Secure it travels in clear on any http:// request.",
    fix="REMEMBER_COOKIE_SECURE = True.",
    asvs="V3.3.1",
    deploy=True,
)
def remember_cookie_secure(ctx: CheckContext) -> CheckResult:
    """Flask-Login defaults REMEMBER_COOKIE_SECURE to False."""
    if has_flask_login(ctx.app) and not _remember(ctx, "REMEMBER_COOKIE_SECURE"):
        return "REMEMBER_COOKIE_SECURE is not True."
    return None


@check(
    "BST-W108",
    title="Remember-me cookie lacks HttpOnly or SameSite",
    why="The remember cookie is a long-lived credential: scripts must not read it and "
    "cross-site requests must not carry it.",
    fix='REMEMBER_COOKIE_HTTPONLY = True and REMEMBER_COOKIE_SAMESITE = "Lax".',
    asvs="V3.3.4",
)
def remember_cookie_flags(ctx: CheckContext) -> CheckResult:
    """Flask-Login leaves SameSite unset by default."""
    if not has_flask_login(ctx.app):
        return None
    problems = []
    if not _remember(ctx, "REMEMBER_COOKIE_HTTPONLY"):
        problems.append("REMEMBER_COOKIE_HTTPONLY is False")
    samesite = _remember(ctx, "REMEMBER_COOKIE_SAMESITE")
    if not _samesite_ok(samesite):
        problems.append(f"REMEMBER_COOKIE_SAMESITE is {samesite!r}")
    return "; ".join(problems) + "." if problems else None


@check(
    "BST-W109",
    title="Remember-me cookie is not __Host- prefixed",
    why="Without the __Host- prefix (and with a Domain) a sibling subdomain can read or "
    "plant the remember cookie.",
    fix='REMEMBER_COOKIE_NAME = "__Host-remember", REMEMBER_COOKIE_SECURE = True, '
    "no REMEMBER_COOKIE_DOMAIN, REMEMBER_COOKIE_PATH = /.",
    asvs="V3.3.3",
    deploy=True,
)
def remember_cookie_host_prefix(ctx: CheckContext) -> CheckResult:
    """Same reasoning as the session cookie prefix."""
    if not has_flask_login(ctx.app):
        return None
    config = ctx.app.config
    return _host_prefix_problem(
        str(_remember(ctx, "REMEMBER_COOKIE_NAME")),
        _remember(ctx, "REMEMBER_COOKIE_DOMAIN"),
        config.get("REMEMBER_COOKIE_PATH", "/"),
    )


@check(
    "BST-W110",
    title="Remember-me cookie lives too long",
    why="Flask-Login keeps users logged in for 365 days by default; a stolen remember "
    "cookie works for as long.",
    fix="REMEMBER_COOKIE_DURATION = timedelta(days=14) (at most 30 days).",
    asvs="V7.3.2",
    deploy=True,
)
def remember_cookie_duration(ctx: CheckContext) -> CheckResult:
    """Bound how long a stolen remember token stays useful."""
    if not has_flask_login(ctx.app):
        return None
    duration = as_timedelta(_remember(ctx, "REMEMBER_COOKIE_DURATION"))
    if duration is not None and duration > MAX_REMEMBER_DURATION:
        return f"REMEMBER_COOKIE_DURATION is {duration} (more than {MAX_REMEMBER_DURATION})."
    return None


@check(
    "BST-W111",
    title="A response sets a cookie without Secure, HttpOnly or SameSite",
    why="Cookies set by views or extensions bypass SESSION_COOKIE_* settings; without "
    "these flags they leak over HTTP, to scripts or to cross-site requests.",
    fix="Pass secure=True, httponly=True, samesite='Lax' to response.set_cookie "
    "(httponly may be dropped only for cookies scripts must read).",
    asvs="V3.3.1",
    deploy=True,
    kind="live",
    django="security.W016",
)
def response_cookies(ctx: CheckContext) -> CheckResult:
    """Checks every cookie the probed pages set, not just the session."""
    problems = []
    for name in ("home", "not_found"):
        for raw in ctx.response(name).headers.getlist("Set-Cookie"):
            cookie = h.parse_set_cookie(raw)
            if cookie.deleting:
                continue
            missing = [flag for flag in ("secure", "httponly") if flag not in cookie.attributes]
            if cookie.samesite is None:
                missing.append("samesite")
            if missing:
                problems.append(f"cookie {cookie.name!r} lacks {', '.join(missing)}")
            if cookie.samesite is not None and cookie.samesite not in GOOD_SAMESITE:
                # None sends the cookie on every cross-site request; an unknown value is
                # dropped, leaving the browser's default (None in some browsers).
                value = cookie.attributes["samesite"]
                problems.append(f"cookie {cookie.name!r} has SameSite={value!r}, not Lax or Strict")
    return "; ".join(sorted(set(problems))) + "." if problems else None
