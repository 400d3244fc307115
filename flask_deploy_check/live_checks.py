"""Live checks: read the headers, cookies and error pages the app really sends.

Configuration can say one thing while an after_request hook, an extension or a
missing blueprint says another; the response is the ground truth.
"""

from __future__ import annotations

from werkzeug.wrappers import Response

from flask_deploy_check import headers as h
from flask_deploy_check.context import (
    PROBE_ORIGIN,
    CheckContext,
    LiveRequestError,
    reflection_marker,
)
from flask_deploy_check.registry import CheckResult, check


def _csp_policies(response: Response) -> list[h.Csp]:
    return h.parse_csp_headers(response.headers.getlist("Content-Security-Policy"))


def _hsts(ctx: CheckContext) -> h.Hsts | None:
    return h.parse_hsts(ctx.response("home").headers.get("Strict-Transport-Security"))


@check(
    "BST-W201",
    title="HSTS is missing or too short",
    why="Without Strict-Transport-Security (max-age of a year or more) the first request "
    "of each visit can be downgraded to HTTP and intercepted (SSL stripping).",
    fix="Send Strict-Transport-Security: max-age=31536000; includeSubDomains "
    "(Flask-Talisman does by default) from the app or the proxy.",
    asvs="V3.4.1",
    deploy=True,
    kind="live",
    django="security.W004",
)
def hsts_present(ctx: CheckContext) -> CheckResult:
    """HSTS is what makes "HTTPS only" stick in the browser."""
    hsts = _hsts(ctx)
    if hsts is None:
        return "GET / sent no Strict-Transport-Security header."
    if hsts.error:
        return f"Strict-Transport-Security {hsts.error}; browsers ignore the header."
    if hsts.max_age is None or hsts.max_age < h.HSTS_MIN_AGE:
        return f"HSTS max-age is {hsts.max_age}; at least {h.HSTS_MIN_AGE} is needed."
    return None


@check(
    "BST-W202",
    title="HSTS does not include subdomains",
    why="Without includeSubDomains an attacker can use a plain-HTTP subdomain to set "
    "cookies for the parent domain or phish under its name.",
    fix="Add includeSubDomains to Strict-Transport-Security once every subdomain is HTTPS.",
    asvs="V3.4.1",
    deploy=True,
    kind="live",
    django="security.W005",
)
def hsts_subdomains(ctx: CheckContext) -> CheckResult:
    """ASVS level 2 requires includeSubDomains."""
    hsts = _hsts(ctx)
    if hsts is not None and not hsts.error and not hsts.include_subdomains:
        return "Strict-Transport-Security lacks includeSubDomains."
    return None


@check(
    "BST-I203",
    title="HSTS is not preload-ready",
    why="Only preloaded domains are protected on the very first visit; preload is a "
    "long-term commitment, hence informational.",
    fix="Add preload to Strict-Transport-Security and submit the domain to hstspreload.org.",
    asvs="V3.4.1",
    deploy=True,
    kind="live",
    django="security.W021",
)
def hsts_preload(ctx: CheckContext) -> CheckResult:
    """Informational, like Django's W021."""
    hsts = _hsts(ctx)
    if hsts is not None and not hsts.error and not hsts.preload:
        return "Strict-Transport-Security lacks preload."
    return None


@check(
    "BST-W204",
    title="Plain HTTP is not redirected to HTTPS",
    why="A site that answers on http:// serves pages and cookies in clear to anyone "
    "who follows an old link or types the bare domain.",
    fix="Redirect http:// to https:// (Flask-Talisman force_https=True, or at the proxy; "
    "silence this check if the proxy does it).",
    asvs="V12.2.1",
    deploy=True,
    kind="live",
    django="security.W008",
)
def https_redirect(ctx: CheckContext) -> CheckResult:
    """Equivalent of Django's SECURE_SSL_REDIRECT check, observed rather than configured."""
    response = ctx.response("http_home")
    location = response.headers.get("Location", "")
    if response.status_code in (301, 302, 303, 307, 308) and location.startswith("https://"):
        return None
    return f"GET http://{ctx.host}/ answered {response.status_code} without redirecting to https."


@check(
    "BST-W206",
    title="No Content-Security-Policy",
    why="A CSP is the second line of defence against XSS: it stops injected scripts "
    "that escaping missed from running.",
    fix="Send a strict CSP with per-request nonces (Flask-Talisman "
    "content_security_policy + content_security_policy_nonce_in).",
    asvs="V3.4.3",
    kind="live",
)
def csp_present(ctx: CheckContext) -> CheckResult:
    """Report-only policies do not block anything."""
    response = ctx.response("home")
    if _csp_policies(response):
        return None
    if "Content-Security-Policy-Report-Only" in response.headers:
        return "GET / sends only Content-Security-Policy-Report-Only, which blocks nothing."
    return "GET / sent no Content-Security-Policy header."


@check(
    "BST-W207",
    title="Content-Security-Policy is not strict",
    why="'unsafe-inline'/'unsafe-eval' or missing object-src, base-uri and frame-ancestors "
    "leave the usual XSS, base-tag hijack and clickjacking routes open.",
    fix="script-src 'self' 'nonce-…' (no unsafe-inline/unsafe-eval); object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'.",
    asvs="V3.4.3",
    kind="live",
)
def csp_strict(ctx: CheckContext) -> CheckResult:
    """Several policies are all enforced, so a requirement is met if any policy meets it."""
    policies = _csp_policies(ctx.response("home"))
    if not policies:
        return None  # BST-W206
    per_policy = [h.policy_findings(policy) for policy in policies]
    remaining = set.intersection(*(set(found) for found in per_policy))
    messages = {per_policy[0][key] for key in remaining}
    return "; ".join(sorted(messages)) + "." if messages else None


@check(
    "BST-W208",
    title="Pages can be framed by other sites",
    why="Without frame-ancestors (or X-Frame-Options) any site can embed the pages "
    "invisibly and trick users into clicking (clickjacking).",
    fix="Content-Security-Policy: frame-ancestors 'none' (and X-Frame-Options: DENY for "
    "old browsers).",
    asvs="V3.4.6",
    kind="live",
    django="security.W002, W019",
)
def frame_protection(ctx: CheckContext) -> CheckResult:
    """Either header protects current browsers, but frame-ancestors, when present, wins.

    Browsers ignore X-Frame-Options once any enforced policy has frame-ancestors, and
    framing is allowed only if every such policy allows it.
    """
    response = ctx.response("home")
    ancestors = [
        policy.directives["frame-ancestors"]
        for policy in _csp_policies(response)
        if "frame-ancestors" in policy.directives
    ]
    if ancestors:
        if all(h.frames_anyone(sources) for sources in ancestors):
            return "CSP frame-ancestors allows any site, and browsers then ignore X-Frame-Options."
        return None
    if h.xfo_blocks_framing(response.headers.getlist("X-Frame-Options")):
        return None
    return "GET / sent neither CSP frame-ancestors nor X-Frame-Options."


@check(
    "BST-W209",
    title="X-Content-Type-Options: nosniff is missing",
    why="Without nosniff browsers may guess a response is HTML or script and execute "
    "user-uploaded content.",
    fix="Send X-Content-Type-Options: nosniff on every response (Flask-Talisman does).",
    asvs="V3.4.4",
    kind="live",
    django="security.W001, W006",
)
def nosniff(ctx: CheckContext) -> CheckResult:
    """MIME sniffing turns uploads into scripts."""
    value = h.nosniff_value(ctx.response("home").headers.getlist("X-Content-Type-Options"))
    if value is None:
        return "GET / sent no X-Content-Type-Options header."
    if value.lower() != "nosniff":
        return f"GET / sent X-Content-Type-Options {value!r}, not 'nosniff'."
    return None


@check(
    "BST-W210",
    title="Referrer-Policy is missing or leaks URLs",
    why="Full URLs in the Referer header leak paths, ids and tokens in query strings to "
    "every third party the page links to or loads from.",
    fix="Referrer-Policy: strict-origin-when-cross-origin (or no-referrer / same-origin).",
    asvs="V3.4.5",
    kind="live",
    django="security.W022, E023",
)
def referrer(ctx: CheckContext) -> CheckResult:
    """Pick the effective token as a browser would; every header line counts."""
    raw = ", ".join(ctx.response("home").headers.getlist("Referrer-Policy"))
    if h.referrer_policy(raw) is None:
        return "GET / sent no valid Referrer-Policy."
    unsafe = sorted(h.referrer_policy_candidates(raw) & h.UNSAFE_REFERRER)
    if unsafe:
        return (
            f"Referrer-Policy {raw!r} is {unsafe[0]!r} in browsers, "
            "which sends full URLs cross-origin."
        )
    return None


@check(
    "BST-W211",
    title="Cross-Origin-Opener-Policy is missing",
    why="Without COOP a page opened by another site shares a browsing context group with "
    "it: window references enable tabnabbing and cross-window leaks (XS-Leaks).",
    fix="Cross-Origin-Opener-Policy: same-origin.",
    kind="live",
    django="security.E024",
)
def coop(ctx: CheckContext) -> CheckResult:
    """Django sends same-origin by default; Flask sends nothing."""
    values = ctx.response("home").headers.getlist("Cross-Origin-Opener-Policy")
    if not values:
        return "GET / sent no Cross-Origin-Opener-Policy header."
    if h.coop_value(values) not in h.SAFE_COOP:
        shown = ", ".join(values)
        return (
            f"GET / sent Cross-Origin-Opener-Policy {shown!r}, which browsers read as unsafe-none."
        )
    return None


@check(
    "BST-W212",
    title="Server header reveals product or version",
    why="Product and version banners tell attackers which known vulnerabilities to try.",
    fix="Strip or genericise Server and X-Powered-By (gunicorn/proxy settings or an "
    "after_request hook).",
    deploy=True,
    kind="live",
)
def server_banner(ctx: CheckContext) -> CheckResult:
    """Banner grabbing is the first step of automated scanning."""
    headers = ctx.response("home").headers
    shown = [
        f"{name}: {value}"
        for name in ("Server", "X-Powered-By")
        for value in headers.getlist(name)
        if name == "X-Powered-By" or h.VERSION_LIKE.search(value)
    ]
    return f"GET / sent {'; '.join(shown)}." if shown else None


@check(
    "BST-E213",
    title="Error pages leak internals",
    why="Stack traces, debugger pages, exception messages and framework names in error "
    "pages reveal code, paths, queries and versions, and the debugger can execute code.",
    fix="Register error handlers that render a generic page (for 500 without the "
    "exception or traceback.format_exc()), and keep debug off.",
    asvs="V16.5.1",
    kind="live",
)
def error_page_leak(ctx: CheckContext) -> CheckResult:
    """404 and 405 are provoked with requests; the 500 page is the app's own answer to an
    exception raised in a request context, so no view is run."""
    pages = [("404 page", ctx.response("not_found"))]
    bad_method = ctx.optional_response("bad_method")
    if bad_method is not None:
        pages.append(("405 page", bad_method))
    leaks = [_leak("the " + label, response) for label, response in pages]
    try:
        server_error = ctx.optional_response("server_error")
    except LiveRequestError:
        if not any(leaks):
            raise  # the 500 page could not be rendered: this check did not run in full
        server_error = None
    if server_error is not None:
        leaks.append(_leak("the page shown when a view raises", server_error, ctx.token))
    found = [leak for leak in leaks if leak]
    return "; ".join(found) + "." if found else None


def _leak(label: str, response: Response, token: str | None = None) -> str | None:
    """What in an error page shows internals; ``token`` is in the probe exception's message."""
    body = response.get_data()[:200_000].decode("utf-8", errors="replace")
    marker = h.leak_marker(body)
    if marker:
        return f"{label} (status {response.status_code}) contains {marker!r}"
    if token and token in body:
        return f"{label} (status {response.status_code}) shows the exception's message"
    return None


@check(
    "BST-E214",
    title="CORS accepts any origin",
    why="Echoing any Origin in Access-Control-Allow-Origin lets every website read "
    "responses in the user's name (with credentials: their private data).",
    fix="Allow only an explicit list of origins (flask-cors origins=[...]); never "
    "reflect the request's Origin, and never list \"null\" (any page can send it).",
    asvs="V3.4.2",
    kind="live",
)
def cors_reflection(ctx: CheckContext) -> CheckResult:
    """The probes send origins no deployment should trust: a made-up site, and ``null``,
    which any page can send from a sandboxed iframe.

    Browsers strip the whitespace around a header value before comparing the origin.
    """
    found = []
    for probe, origin in (("home", PROBE_ORIGIN), ("home_null_origin", "null")):
        headers = ctx.response(probe).headers
        allowed = headers.getlist("Access-Control-Allow-Origin")
        if len(allowed) != 1 or allowed[0].strip(" \t") != origin:
            continue
        credentials = headers.get("Access-Control-Allow-Credentials", "").lower() == "true"
        extra = " with Access-Control-Allow-Credentials: true" if credentials else ""
        found.append(f"GET / allowed the untrusted Origin {origin}{extra}.")
    return found


@check(
    "BST-W215",
    title="CORS lets every site read responses",
    why="Access-Control-Allow-Origin: * lets any website read the response; that is only "
    "safe for public data. With Access-Control-Allow-Credentials browsers refuse the "
    "answer, and the usual next step, reflecting the Origin, hands out the users' data.",
    fix="Send * only on public, non-sensitive endpoints (then silence this check); "
    "elsewhere allow an explicit list of origins (flask-cors origins=[...]).",
    asvs="V3.4.2",
    kind="live",
)
def cors_wildcard(ctx: CheckContext) -> CheckResult:
    """ASVS allows the wildcard on non-sensitive responses only, which a tool cannot judge."""
    headers = ctx.response("home").headers
    allowed = headers.getlist("Access-Control-Allow-Origin")
    if len(allowed) != 1 or allowed[0].strip(" \t") != "*":
        return None
    credentials = headers.get("Access-Control-Allow-Credentials", "").strip().lower() == "true"
    extra = " with Access-Control-Allow-Credentials: true" if credentials else ""
    return f"GET / sent Access-Control-Allow-Origin: *{extra}."


@check(
    "BST-E216",
    title="An error page writes the URL into HTML unescaped",
    why="A page that copies the requested path into HTML without escaping runs any script "
    "an attacker puts in a link (reflected XSS); 404 pages are the classic place.",
    fix="Render the path through a template ({{ request.path }} is escaped) or "
    "markupsafe.escape(), never an f-string into HTML; or leave it out of the page.",
    asvs="V1.2.1",
    kind="live",
)
def error_page_reflection(ctx: CheckContext) -> CheckResult:
    """The 404 probe's path ends in markup unique to this run; seeing it verbatim in an
    HTML answer means the path went into the page unescaped."""
    response = ctx.response("not_found")
    if response.mimetype not in h.HTML_TYPES:
        return None
    marker = reflection_marker(ctx.token)
    body = response.get_data()[:200_000].decode("utf-8", errors="replace")
    if marker not in body:
        return None
    return (
        f"The 404 page (status {response.status_code}) contains {marker!r}, markup taken "
        "verbatim from the requested path."
    )
