"""Parsers for the security headers and cookies that live checks read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from werkzeug.http import parse_date

HSTS_MIN_AGE = 31_536_000
UNSAFE_REFERRER = frozenset({"unsafe-url", "no-referrer-when-downgrade"})
KNOWN_REFERRER = frozenset(
    {
        "no-referrer",
        "no-referrer-when-downgrade",
        "origin",
        "origin-when-cross-origin",
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
        "unsafe-url",
    }
)
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml"})
SAFE_COOP = frozenset({"same-origin", "same-origin-allow-popups", "noopener-allow-popups"})
# Bodies of error pages that show internals (tracebacks, debugger, framework names).
LEAK_MARKERS = (
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r"File \"[^\"]+\", line \d+"),
    re.compile(r"__debugger__|Werkzeug Debugger|The debugger caught an exception"),
    re.compile(r"\bwerkzeug\b", re.IGNORECASE),
    re.compile(r"sqlalchemy\.exc\.|psycopg2?\.errors|sqlite3\.OperationalError"),
)
_ASCII_DIGITS = re.compile(r"[0-9]+")
# A nonce or hash source with a value (CSP3 grammar); "'nonce-'" alone is no nonce.
_NONCE_OR_HASH = re.compile(r"'(?:nonce|sha256|sha384|sha512)-[a-z0-9+/_-]+={0,2}'")
_ANY_HOST = frozenset({"*", "http:", "https:", "data:", "blob:", "http://*", "https://*"})
# A bare scheme ("https:") or "*" in frame-ancestors lets any site of that scheme frame us.
_ANY_ANCESTOR = re.compile(r"\*|[a-z][a-z0-9+.-]*:|[a-z][a-z0-9+.-]*://\*")
VERSION_LIKE = re.compile(r"\d+(\.\d+)+|werkzeug|python|gunicorn|flask|nginx|apache", re.I)


@dataclass(frozen=True)
class Hsts:
    """A parsed Strict-Transport-Security header; ``error`` says why browsers ignore it."""

    max_age: int | None
    include_subdomains: bool
    preload: bool
    error: str | None = None


def parse_hsts(value: str | None) -> Hsts | None:
    """Parse HSTS as RFC 6797 section 6.1 does; ``None`` when absent.

    A repeated directive or a max-age that is not plain ASCII digits makes browsers
    ignore the whole header, so such a header must not count as HSTS.
    """
    if not value:
        return None
    directives: dict[str, str] = {}
    error: str | None = None
    for part in value.split(";"):
        name, _, raw = part.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        if name in directives and error is None:
            error = f"repeats the {name} directive"
        directives.setdefault(name, raw.strip().removeprefix('"').removesuffix('"'))
    digits = directives.get("max-age")
    max_age = int(digits) if digits is not None and _ASCII_DIGITS.fullmatch(digits) else None
    if error is None and digits is None:
        error = "has no max-age directive"
    elif error is None and max_age is None:
        error = f"has an invalid max-age {digits!r}"
    return Hsts(max_age, "includesubdomains" in directives, "preload" in directives, error)


@dataclass
class Csp:
    """One Content-Security-Policy, as ``directive -> sources``."""

    directives: dict[str, list[str]] = field(default_factory=dict)

    def sources(self, directive: str, fallback: bool = True) -> list[str] | None:
        """Sources for ``directive``, falling back to default-src where CSP does."""
        if directive in self.directives:
            return self.directives[directive]
        if fallback and "default-src" in self.directives:
            return self.directives["default-src"]
        return None


def parse_csp(value: str) -> Csp:
    """Parse one policy; the first occurrence of a directive wins, as in browsers."""
    policy = Csp()
    for part in value.split(";"):
        words = part.split()
        if words and words[0].lower() not in policy.directives:
            policy.directives[words[0].lower()] = [w.lower() for w in words[1:]]
    return policy


def parse_csp_headers(values: list[str]) -> list[Csp]:
    """Every policy in the given header values.

    A comma separates policies (CSP3 "parse a serialized CSP list"), so one header line
    may carry several; reading it as one policy would glue a source such as
    ``'unsafe-inline',`` to the comma and miss it.
    """
    return [parse_csp(text) for value in values for text in value.split(",") if text.strip()]


def _allows_inline(sources: list[str]) -> bool:
    """'unsafe-inline' counts unless a real nonce, hash or 'strict-dynamic' disables it."""
    disabled = "'strict-dynamic'" in sources or any(_NONCE_OR_HASH.fullmatch(s) for s in sources)
    return "'unsafe-inline'" in sources and not disabled


def _script_sources(policy: Csp, directive: str) -> tuple[str, list[str]] | None:
    """The list governing ``directive`` and the name to blame, with CSP3's fallbacks."""
    if directive in policy.directives:
        return directive, policy.directives[directive]
    sources = policy.sources("script-src")
    return None if sources is None else ("script-src", sources)


def script_findings(policy: Csp) -> dict[str, str]:
    """Each script requirement this policy fails, keyed so policies can be combined.

    script-src-elem and script-src-attr override script-src for script elements and
    event-handler attributes, so an 'unsafe-inline' there reopens inline scripts.
    """
    missing = "no script-src or default-src"
    found: dict[str, str] = {}
    base = policy.sources("script-src")
    if base is None:
        found["eval"] = missing
    elif "'unsafe-eval'" in base:
        found["eval"] = "script-src allows 'unsafe-eval'"
    for key, directive in (("inline", "script-src-elem"), ("inline-attr", "script-src-attr")):
        governing = _script_sources(policy, directive)
        if governing is None:
            found[key] = missing
        elif _allows_inline(governing[1]):
            found[key] = f"{governing[0]} allows 'unsafe-inline'"
    elements = _script_sources(policy, "script-src-elem")
    if elements is None:
        found["host"] = missing
    elif "'strict-dynamic'" not in elements[1] and _ANY_HOST & set(elements[1]):
        found["host"] = f"{elements[0]} allows scripts from any host"
    return found


def policy_findings(policy: Csp) -> dict[str, str]:
    """Every requirement of a strict policy (ASVS V3.4.3/V3.4.6) this one fails.

    Keys name the requirement: several enforced policies meet one if any of them does.
    """
    found = script_findings(policy)
    if policy.sources("object-src") not in (["'none'"], []):
        found["object"] = "object-src is not 'none'"
    if policy.sources("base-uri", fallback=False) not in (["'none'"], ["'self'"], []):
        found["base"] = "base-uri is not 'none' or 'self'"
    ancestors = policy.sources("frame-ancestors", fallback=False)
    if ancestors is None:
        found["frame"] = "no frame-ancestors"
    elif frames_anyone(ancestors):
        found["frame"] = "frame-ancestors allows any site"
    return found


def policy_problems(policy: Csp) -> list[str]:
    """The messages of :func:`policy_findings`, each once, in a stable order."""
    return list(dict.fromkeys(policy_findings(policy).values()))


def frames_anyone(sources: list[str]) -> bool:
    """Whether a frame-ancestors list lets any site (of some scheme) embed the page."""
    return any(_ANY_ANCESTOR.fullmatch(source) for source in sources)


def xfo_blocks_framing(values: list[str]) -> bool:
    """X-Frame-Options as the HTML standard reads it (only used without frame-ancestors).

    All header lines are one comma-separated list; conflicting known values block.
    """
    seen = {item.strip().lower() for value in values for item in value.split(",")}
    seen.discard("")
    if len(seen) > 1:
        return bool(seen & {"deny", "sameorigin", "allowall"})
    return bool(seen & {"deny", "sameorigin"})


def referrer_policy(value: str | None) -> str | None:
    """The effective Referrer-Policy token: the last one the browser understands.

    Pass every header line joined with commas: browsers read them as one list. Tokens
    are matched case-insensitively here; see :func:`referrer_policy_candidates`.
    """
    if not value:
        return None
    tokens = [t.strip().lower() for t in value.split(",")]
    known = [t for t in tokens if t in KNOWN_REFERRER]
    return known[-1] if known else None


def referrer_policy_candidates(value: str | None) -> set[str]:
    """The policies a browser may apply: the spec matches tokens case-sensitively,
    most engines do not, so ``unsafe-url, NO-REFERRER`` can mean either."""
    if not value:
        return set()
    exact = [t.strip() for t in value.split(",") if t.strip() in KNOWN_REFERRER]
    found = {exact[-1]} if exact else set()
    loose = referrer_policy(value)
    return found | ({loose} if loose else set())


def coop_value(values: list[str]) -> str | None:
    """The Cross-Origin-Opener-Policy a browser applies, or ``None`` for unsafe-none.

    The header is a structured-field item: parameters (``; report-to=...``) are allowed,
    the token is case-sensitive, and two header lines (a list) do not parse at all.
    """
    if len(values) != 1:
        return None
    token = values[0].split(";", 1)[0].strip(" ")
    return token or None


def nosniff_value(values: list[str]) -> str | None:
    """The first X-Content-Type-Options item, which is all Fetch looks at."""
    items = [item.strip() for value in values for item in value.split(",")]
    return items[0] if items else None


@dataclass(frozen=True)
class SetCookie:
    """The name and attributes of one Set-Cookie header."""

    name: str
    attributes: dict[str, str]

    @property
    def deleting(self) -> bool:
        """Cookies being cleared carry no value worth protecting.

        Max-Age wins over Expires (RFC 6265 section 5.3), so a past Expires next to a
        positive Max-Age still stores the cookie.
        """
        max_age = self.attributes.get("max-age")
        if max_age is not None and re.fullmatch(r"-?[0-9]+", max_age):
            return int(max_age) <= 0
        expires = parse_date(self.attributes.get("expires"))
        return expires is not None and expires <= datetime.now(UTC)

    @property
    def samesite(self) -> str | None:
        """The SameSite value in lower case, ``None`` when the attribute is absent."""
        value = self.attributes.get("samesite")
        return None if value is None else value.lower()


def parse_set_cookie(value: str) -> SetCookie:
    """Parse one Set-Cookie header value."""
    first, *rest = value.split(";")
    attributes: dict[str, str] = {}
    for item in rest:
        key, _, val = item.strip().partition("=")
        attributes[key.strip().lower()] = val.strip()
    return SetCookie(first.split("=", 1)[0].strip(), attributes)


def leak_marker(body: str) -> str | None:
    """The first sign of internals in an error page body, or ``None``."""
    for pattern in LEAK_MARKERS:
        match = pattern.search(body)
        if match:
            return match.group(0)
    return None
