"""Configuration checks: debug tooling, secret keys, templates and logging."""

from __future__ import annotations

import math
import os
import re
from collections import Counter

from flask_deploy_check.context import CheckContext
from flask_deploy_check.registry import CheckResult, check
from flask_deploy_check.wsgi import instances_of

MIN_SECRET_BYTES = 32
MIN_SECRET_BITS = 96.0
MIN_SECRET_UNIQUE = 8

# Values copied from tutorials, books and framework docs. Normalised: lower-case, no
# punctuation or spaces, so "Change-Me" and "change me" both match "changeme".
# fmt: off
SAMPLE_SECRETS = frozenset({
    "dev", "development", "test", "testing", "secret", "secretkey", "mysecret", "mysecretkey",
    "changeme", "changethis", "changeit", "replaceme", "password", "youwillneverguess",
    "defaultsecret", "supersecret", "supersecretkey", "yoursecretkey", "yoursecretkeyhere",
    "hardtoguessstring", "key", "flask", "flasksecret", "s3cr3t", "insecure", "notsecret",
    "notasecret", "example", "dummy", "placeholder", "xxx", "todo", "thisisasecret",
    "secretkeyhere", "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf",
})
# fmt: on
# Exact sample keys with punctuation that normalisation would mangle (Flask quickstart).
SAMPLE_SECRETS_RAW = frozenset({'_5#y2L"F4Q8z\n\xec]/', "A0Zr98j/3yX R~XHH!jmN]LWX/,?RT"})
SAMPLE_MARKERS = ("changeme", "neverguess", "djangoinsecure", "replaceme", "insecure")


def _as_text(key: str | bytes) -> str:
    return key.decode("latin-1") if isinstance(key, bytes) else key


def is_sample_secret(key: str | bytes) -> bool:
    """True for secrets that appear in docs and tutorials, i.e. known to attackers."""
    text = _as_text(key)
    normalised = re.sub(r"[^a-z0-9]", "", text.lower())
    return (
        text in SAMPLE_SECRETS_RAW
        or normalised in SAMPLE_SECRETS
        or any(marker in normalised for marker in SAMPLE_MARKERS)
    )


def secret_bytes(key: str | bytes) -> int:
    """Length in bytes, as used for HMAC key strength."""
    return len(key) if isinstance(key, bytes) else len(key.encode("utf-8"))


def estimated_bits(key: str | bytes) -> float:
    """Shannon estimate of the key's entropy: catches repeated and patterned keys."""
    counts: Counter[int | str] = Counter(key)
    total = len(key)
    if not total:
        return 0.0
    per_symbol = -sum(n / total * math.log2(n / total) for n in counts.values())
    return max(0.0, per_symbol * total)  # one repeated symbol gives -0.0: "about -0 bits"


def _secret_keys(ctx: CheckContext) -> list[tuple[str, str | bytes]]:
    """``SECRET_KEY`` and each ``SECRET_KEY_FALLBACKS`` entry with a label."""
    keys: list[tuple[str, str | bytes]] = []
    key = ctx.app.config.get("SECRET_KEY")
    if isinstance(key, str | bytes) and key:
        keys.append(("SECRET_KEY", key))
    for index, fallback in enumerate(ctx.app.config.get("SECRET_KEY_FALLBACKS") or ()):
        if isinstance(fallback, str | bytes):
            keys.append((f"SECRET_KEY_FALLBACKS[{index}]", fallback))
    return keys


def _weakness(key: str | bytes) -> str | None:
    if is_sample_secret(key):
        return "is a published sample value"
    if secret_bytes(key) < MIN_SECRET_BYTES:
        return f"is {secret_bytes(key)} bytes long (need {MIN_SECRET_BYTES})"
    if len(set(key)) < MIN_SECRET_UNIQUE or estimated_bits(key) < MIN_SECRET_BITS:
        return f"has low entropy (about {estimated_bits(key):.0f} bits)"
    return None


@check(
    "BST-E001",
    title="Debug mode is on",
    why="Debug mode enables the interactive Werkzeug debugger (remote code execution for "
    "anyone who reaches an error page) and detailed error pages.",
    fix="Never set DEBUG/FLASK_DEBUG or app.run(debug=True) in production; "
    "run under gunicorn with debug off.",
    asvs="V13.4.2",
    deploy=True,
    django="security.W018",
)
def debug_mode(ctx: CheckContext) -> CheckResult:
    """Debug on in production is remote code execution waiting for an error."""
    if ctx.app.debug:
        return "app.debug is True (DEBUG in the configuration, or FLASK_DEBUG at startup)."
    flag = os.environ.get("FLASK_DEBUG", "")
    if flag and flag.lower() not in ("0", "false", "no"):
        return f"FLASK_DEBUG={flag} is set in this environment; `flask run` enables the debugger."
    return None


@check(
    "BST-E002",
    title="Werkzeug debugger wraps the application",
    why="DebuggedApplication serves an interactive Python console on every error page; "
    "whoever reaches it runs code on the server.",
    fix="Remove DebuggedApplication from app.wsgi_app; use `flask run --debug` locally only.",
    asvs="V13.4.2",
)
def debugger_middleware(ctx: CheckContext) -> CheckResult:
    """Wrapping the app by hand outlives the developer's laptop; it is always wrong."""
    found = instances_of(ctx.app, "werkzeug.debug", "DebuggedApplication")
    if found:
        evalex = any(getattr(obj, "evalex", False) for obj in found)
        console = " with the interactive console (evalex=True)" if evalex else ""
        return f"app.wsgi_app is wrapped in werkzeug.debug.DebuggedApplication{console}."
    return None


@check(
    "BST-E003",
    title="SECRET_KEY is not set",
    why="Without a secret key sessions, CSRF tokens and signed links cannot be protected; "
    "a deployment without one usually means the secret was not passed to the process.",
    fix="Set SECRET_KEY from the environment or a secrets file: "
    "`python -c 'import secrets; print(secrets.token_hex(32))'`.",
    asvs="V11.2.3",
    deploy=True,
    django="security.W009",
)
def secret_key_missing(ctx: CheckContext) -> CheckResult:
    """A missing key is a broken deployment, not a development convenience.

    So is a key Flask cannot use (a number, a list): every session fails, and the strength
    checks, which read only text and bytes, would otherwise say nothing at all.
    """
    key = ctx.app.config.get("SECRET_KEY")
    if not key:
        return "SECRET_KEY is empty or not set."
    if not isinstance(key, str | bytes):
        kind = type(key).__name__
        return f"SECRET_KEY is of type {kind}, not text or bytes: Flask cannot sign with it."
    return None


@check(
    "BST-E004",
    title="SECRET_KEY is a published sample value",
    why="Anyone who knows the key can forge session cookies (log in as any user) and "
    "CSRF tokens; sample keys from docs and tutorials are in every attacker's wordlist.",
    fix="Generate a random key (secrets.token_hex(32)) and load it from the environment "
    "or a secrets manager; never commit it.",
    asvs="V13.3.1",
    deploy=True,
    django="security.W009",
)
def secret_key_sample(ctx: CheckContext) -> CheckResult:
    """Known keys make signed sessions forgeable."""
    key = ctx.app.config.get("SECRET_KEY")
    if isinstance(key, str | bytes) and key and is_sample_secret(key):
        return f"SECRET_KEY is the well-known sample value {_as_text(key)[:24]!r}."
    return None


@check(
    "BST-W005",
    title="SECRET_KEY is too short",
    why="Session cookies are signed with HMAC over this key; a short key can be "
    "brute-forced offline from any cookie the app hands out.",
    fix=f"Use at least {MIN_SECRET_BYTES} random bytes, e.g. secrets.token_hex(32).",
    asvs="V11.2.3",
    deploy=True,
    django="security.W009",
)
def secret_key_short(ctx: CheckContext) -> CheckResult:
    """Length is the cheapest proxy for brute-force resistance."""
    key = ctx.app.config.get("SECRET_KEY")
    if isinstance(key, str | bytes) and key and not is_sample_secret(key):
        size = secret_bytes(key)
        if size < MIN_SECRET_BYTES:
            return f"SECRET_KEY is {size} bytes long; at least {MIN_SECRET_BYTES} are needed."
    return None


@check(
    "BST-W006",
    title="SECRET_KEY has low entropy",
    why="A long but patterned key (repeated characters, words) is far easier to guess "
    "than its length suggests.",
    fix="Generate the key with a CSPRNG: secrets.token_hex(32) or os.urandom(32).",
    asvs="V11.2.3",
    deploy=True,
    django="security.W009",
)
def secret_key_entropy(ctx: CheckContext) -> CheckResult:
    """Catch keys like 'aaaa…' or a sentence that pass the length test."""
    key = ctx.app.config.get("SECRET_KEY")
    if not isinstance(key, str | bytes) or not key or is_sample_secret(key):
        return None
    if secret_bytes(key) < MIN_SECRET_BYTES:
        return None  # reported by BST-W005
    bits = estimated_bits(key)
    if len(set(key)) < MIN_SECRET_UNIQUE or bits < MIN_SECRET_BITS:
        return (
            f"SECRET_KEY has about {bits:.0f} bits of estimated entropy "
            f"and {len(set(key))} distinct characters."
        )
    return None


@check(
    "BST-W007",
    title="A SECRET_KEY_FALLBACKS entry is weak",
    why="Fallback keys still verify old cookies: a weak or sample fallback lets attackers "
    "forge sessions exactly like a weak SECRET_KEY.",
    fix="Remove old keys from SECRET_KEY_FALLBACKS once rotation is done; "
    "keep only strong random keys there.",
    asvs="V11.2.3",
    deploy=True,
    django="security.W025",
)
def secret_key_fallbacks(ctx: CheckContext) -> CheckResult:
    """Flask 3.1 accepts signatures from every fallback key."""
    return [
        f"{label} {weakness}."
        for label, key in _secret_keys(ctx)
        if label != "SECRET_KEY" and (weakness := _weakness(key))
    ]


@check(
    "BST-W008",
    title="TESTING is on",
    why="Testing mode propagates exceptions and makes extensions relax checks (e.g. "
    "Flask-WTF, Flask-Mail and Flask-Login test shortcuts).",
    fix="Set TESTING only in the test configuration.",
    asvs="V15.2.3",
    deploy=True,
)
def testing_mode(ctx: CheckContext) -> CheckResult:
    """Test-only behaviour must not ship."""
    return "TESTING is True." if ctx.app.testing else None


@check(
    "BST-E009",
    title="LOGIN_DISABLED turns off authentication",
    why="With LOGIN_DISABLED, Flask-Login's login_required lets every anonymous request "
    "through to protected views.",
    fix="Remove LOGIN_DISABLED outside unit tests.",
    asvs="V8.2.1",
    deploy=True,
)
def login_disabled(ctx: CheckContext) -> CheckResult:
    """One flag that silently removes every @login_required."""
    return "LOGIN_DISABLED is True." if ctx.app.config.get("LOGIN_DISABLED") else None
