"""Parsers for the security headers and cookies that live checks read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
SAFE_COOP = frozenset({"same-origin", "same-origin-allow-popups", "noopener-allow-popups"})
# Bodies of error pages that show internals (tracebacks, debugger, framework names).
LEAK_MARKERS = (
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r"File \"[^\"]+\", line \d+"),
    re.compile(r"__debugger__|Werkzeug Debugger|The debugger caught an exception"),
    re.compile(r"\bwerkzeug\b", re.IGNORECASE),
    re.compile(r"sqlalchemy\.exc\.|psycopg2?\.errors|sqlite3\.OperationalError"),
)
VERSION_LIKE = re.compile(r"\d+(\.\d+)+|werkzeug|python|gunicorn|flask|nginx|apache", re.I)


@dataclass(frozen=True)
class Hsts:
    """A parsed Strict-Transport-Security header."""

    max_age: int | None
    include_subdomains: bool
    preload: bool


def parse_hsts(value: str | None) -> Hsts | None:
    """Parse HSTS; ``None`` when absent."""
    if not value:
        return None
    max_age: int | None = None
    tokens = [part.strip().lower() for part in value.split(";") if part.strip()]
    for token in tokens:
        if token.startswith("max-age="):
            digits = token.split("=", 1)[1].strip().strip('"')
            max_age = int(digits) if digits.isdigit() else None
    return Hsts(max_age, "includesubdomains" in tokens, "preload" in tokens)


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


def script_problems(policy: Csp) -> list[str]:
    """Why this policy's script control is weak (empty when strict)."""
    sources = policy.sources("script-src")
    if sources is None:
        return ["no script-src or default-src"]
    problems = []
    has_nonce = any(s.startswith(("'nonce-", "'sha256-", "'sha384-", "'sha512-")) for s in sources)
    if "'unsafe-eval'" in sources:
        problems.append("script-src allows 'unsafe-eval'")
    if "'unsafe-inline'" in sources and not has_nonce:
        problems.append("script-src allows 'unsafe-inline'")
    if "'strict-dynamic'" not in sources and {"*", "http:", "https:", "data:"} & set(sources):
        problems.append("script-src allows scripts from any host")
    return problems


def policy_problems(policy: Csp) -> list[str]:
    """Everything a strict policy (ASVS V3.4.3/V3.4.6) needs and this one lacks."""
    problems = script_problems(policy)
    if policy.sources("object-src") != ["'none'"]:
        problems.append("object-src is not 'none'")
    if policy.sources("base-uri", fallback=False) not in (["'none'"], ["'self'"]):
        problems.append("base-uri is not 'none' or 'self'")
    if policy.sources("frame-ancestors", fallback=False) is None:
        problems.append("no frame-ancestors")
    return problems


def referrer_policy(value: str | None) -> str | None:
    """The effective Referrer-Policy token: the last one the browser understands."""
    if not value:
        return None
    tokens = [t.strip().lower() for t in value.split(",")]
    known = [t for t in tokens if t in KNOWN_REFERRER]
    return known[-1] if known else None


@dataclass(frozen=True)
class SetCookie:
    """The name and attributes of one Set-Cookie header."""

    name: str
    attributes: dict[str, str]

    @property
    def deleting(self) -> bool:
        """Cookies being cleared carry no value worth protecting."""
        return self.attributes.get("max-age") == "0" or "1970" in self.attributes.get("expires", "")


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
